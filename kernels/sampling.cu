// The sampler kernel. A row is handled by a group of `blocks_per_row` blocks of 1024 threads, each over
// a contiguous slice of the vocabulary (at batch 1 up to one block per SM, ~1K tokens each, so every pass
// over the row costs a few microseconds however many passes there are). A group with more than one block
// meets at barriers in global memory (GroupScratch): the blocks' partial results (argmax, histograms,
// kept weight) are merged there and every block then makes the same decision from the same merged
// numbers, so all of them follow the same path. Such launches are cooperative, so every block of the grid
// is resident and the barriers cannot deadlock.
//
// Radix select: keys are 32-bit order keys of the (penalised) logits, chosen 8 bits per level from the
// top. At each level a histogram (count, and for top-p the integer weight) of the tokens still matching
// the chosen prefix picks the next byte. Histogram updates are warp-aggregated for the most common bin of
// each warp (in the first levels most tokens of a row share a bin, and unaggregated shared-memory atomics
// on one address serialize). Bin weights are kept in shared memory as three 32-bit limb sums: shared-
// memory atomics are native only for 32 bits (64-bit ones are compare-and-swap loops: with them a
// top-p-only row of 128K tokens took 1.2 ms on an H200, with the limbs 0.27 ms). All sums are of integer
// weights, so the result does not depend on how the row is split.
#include "kernels/sampling.cuh"

#include <algorithm>
#include <climits>

#include "core/error.h"

namespace fc {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;            // independent loads in flight per thread in a pass over the slice
constexpr int kBins = 256;            // 8-bit digits; each lane of warp 0 scans 8 bins
constexpr int kLevels = 8;            // histograms per row: 4 for top-k, 4 for top-p
constexpr int kMaxGroup = 256;        // blocks per row; warp 0 scans 8 partial results per lane
constexpr int kMaxGroupedRows = 64;   // rows spread over several blocks in one launch
constexpr int kMinSlice = 1024;       // tokens per block at least (smaller slices only add barriers)

static_assert(kBins == 32 * 8 && kMaxGroup == 32 * 8, "warp 0 scans 8 entries per lane");
static_assert(kMaxSamplingVocab <= (1 << 18), "the shared-memory limb sums would overflow");

// Where the blocks of one row meet. `arrive` counts barrier arrivals (barrier n completes at n x group
// size), `leave` the blocks done; the last block to leave zeroes both, so each launch finds them zero.
struct GroupScratch {
  unsigned int arrive;
  unsigned int leave;
  unsigned int pad[62];
  float max_value[kMaxGroup];
  int max_index[kMaxGroup];
  unsigned long long kept[kMaxGroup];
  unsigned int hist_count[kLevels][kBins];
  unsigned long long hist_mass[kLevels][kBins];
};

static_assert(sizeof(GroupScratch) * kMaxGroupedRows == kSampleWorkspaceBytes, "kernels/sampling.h's size");

struct ArgMax {
  float value;
  int index;
};

// The larger value; the smaller index on equal values (torch.argmax's first maximum).
__device__ ArgMax better(ArgMax a, ArgMax b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ ArgMax warp_argmax(ArgMax v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    v = better(v, ArgMax{__shfl_xor_sync(kFull, v.value, off), __shfl_xor_sync(kFull, v.index, off)});
  }
  return v;
}

__device__ uint64_t warp_sum(uint64_t v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

__device__ uint64_t warp_inclusive_scan(uint64_t v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const uint64_t t = __shfl_up_sync(kFull, v, off);
    if (lane >= off) v += t;
  }
  return v;
}

struct Shared {
  uint32_t counts[kBins];
  // Bin weight = hi * 2^22 + mid * 2^11 + lo, each limb sum a native 32-bit atomic. One add is at most
  // 32 tokens of weight <= 2^32 (< 2^37); with <= 2^18 adds per bin, lo and mid stay < 2^29 and hi,
  // <= (total weight <= 2^50) / 2^22, < 2^28: no limb overflows.
  uint32_t mass_lo[kBins];
  uint32_t mass_mid[kBins];
  uint32_t mass_hi[kBins];
  unsigned long long mass[kBins];  // the merged bin weights the selection reads
  unsigned long long warp_kept[kWarps];
  ArgMax argmax_scratch[kWarps];
  ArgMax best;
  // warp 0's choice at each level, read by the whole block
  uint32_t sel_bin;
  uint32_t sel_count;            // tokens in the chosen bin
  unsigned long long sel_rest;   // top-k: rank still to skip inside the bin; top-p: weight above the bin
  unsigned long long target;     // top-p: P
  unsigned long long block_before;  // kept weight of the row before this block's slice
  unsigned long long total;         // kept weight of the row
  int draw_warp;
  unsigned long long draw_rest;
};

// This block's part of one row, and the group it belongs to.
struct Row {
  const float* logits;
  uint32_t* history;  // non-null when the row has a penalty
  SamplingParams sp;
  int vocab;
  int begin, end;     // this block's slice [begin, end)
  int group_size;     // blocks per row; 1: no global scratch
  int block;          // index inside the group
  GroupScratch* g;
  float l_max = 0, scale = 0;  // log2(e) / temperature

  __device__ float load(int i) const {
    const float x = logits[i];
    return history != nullptr ? sampling_penalize(x, history[i], sp) : x;
  }
  __device__ float e(float x) const { return sampling_exp2((x - l_max) * scale); }
  __device__ bool grouped() const { return group_size > 1; }
};

__device__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Barrier of the row's group; `generation` counts the barriers passed (the same in every block).
__device__ void group_barrier(const Row& row, unsigned& generation) {
  ++generation;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(&row.g->arrive, 1u);
    const unsigned target = generation * static_cast<unsigned>(row.group_size);
    while (load_acquire(&row.g->arrive) < target) __nanosleep(32);
    __threadfence();
  }
  __syncthreads();
}

// Calls f(index, logit, in_range) for every token of the block's slice, kUnroll loads in flight per
// thread. Every lane of every warp makes the same number of calls (warp-collective operations inside f
// are safe).
template <typename F>
__device__ void for_slice(const Row& row, F&& f) {
  for (int base = row.begin; base < row.end; base += kUnroll * kThreads) {
    float x[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      x[j] = i < row.end ? row.load(i) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      f(i, x[j], i < row.end);
    }
  }
}

// Block-wide argmax; NaN counts as -inf. Every thread gets the result.
__device__ ArgMax block_argmax(ArgMax v, Shared& sh) {
  v = warp_argmax(v);
  if ((threadIdx.x & 31) == 0) sh.argmax_scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  ArgMax r = sh.argmax_scratch[0];
  for (int w = 1; w < kWarps; ++w) r = better(r, sh.argmax_scratch[w]);
  __syncthreads();  // the scratch may be reused
  return r;
}

// The row's argmax (penalised logits), the same in every block of the group.
__device__ ArgMax row_argmax(const Row& row, Shared& sh, unsigned& generation) {
  ArgMax best{-INFINITY, INT_MAX};
  for_slice(row, [&](int i, float x, bool in_range) {
    if (in_range) best = better(best, ArgMax{isnan(x) ? -INFINITY : x, i});
  });
  best = block_argmax(best, sh);
  if (row.grouped()) {
    if (threadIdx.x == 0) {
      row.g->max_value[row.block] = best.value;
      row.g->max_index[row.block] = best.index;
    }
    group_barrier(row, generation);
    ArgMax part{-INFINITY, INT_MAX};
    if (static_cast<int>(threadIdx.x) < row.group_size) {
      part = ArgMax{__ldcg(&row.g->max_value[threadIdx.x]), __ldcg(&row.g->max_index[threadIdx.x])};
    }
    best = block_argmax(part, sh);
  }
  if (best.index == INT_MAX) best.index = 0;  // unreachable for vocab >= 1; keeps the id in range
  return best;
}

// ---- radix select ----

enum class Select { kTopK, kTopP };

__device__ void add_mass(Shared& sh, uint32_t bin, uint64_t w) {
  const uint32_t lo = static_cast<uint32_t>(w) & 0x7ffu, mid = static_cast<uint32_t>(w >> 11) & 0x7ffu;
  const uint32_t hi = static_cast<uint32_t>(w >> 22);
  if (lo != 0) atomicAdd(&sh.mass_lo[bin], lo);
  if (mid != 0) atomicAdd(&sh.mass_mid[bin], mid);
  if (hi != 0) atomicAdd(&sh.mass_hi[bin], hi);
}

// Adds (bin, w) of every lane with `valid` to the histograms: one atomic for the warp's most common bin,
// one per lane for the others.
template <bool kMass>
__device__ void hist_add(bool valid, uint32_t bin, uint64_t w, Shared& sh) {
  const unsigned valid_mask = __ballot_sync(kFull, valid);
  if (valid_mask == 0) return;  // warp-uniform
  const int lane = threadIdx.x & 31;
  const int leader = __ffs(valid_mask) - 1;
  const uint32_t dominant = __shfl_sync(kFull, bin, leader);
  const bool in_dominant = valid && bin == dominant;
  const unsigned dominant_mask = __ballot_sync(kFull, in_dominant);
  uint64_t dominant_weight = 0;
  if constexpr (kMass) dominant_weight = warp_sum(in_dominant ? w : 0);
  if (lane == leader) {
    atomicAdd(&sh.counts[dominant], static_cast<uint32_t>(__popc(dominant_mask)));
    if (kMass && dominant_weight != 0) add_mass(sh, dominant, dominant_weight);
  }
  if (valid && !in_dominant) {
    atomicAdd(&sh.counts[bin], 1u);
    if (kMass && w != 0) add_mass(sh, bin, w);
  }
}

// The block's histograms (sh.counts, limbs) become the row's (sh.counts, sh.mass): in a group, each
// block adds its non-empty bins to the level's global histogram and reads the sum after a barrier.
__device__ void merge_histogram(const Row& row, int level, Shared& sh, unsigned& generation) {
  __syncthreads();
  for (int b = threadIdx.x; b < kBins; b += kThreads) {
    const uint64_t m = (static_cast<uint64_t>(sh.mass_hi[b]) << 22) + (static_cast<uint64_t>(sh.mass_mid[b]) << 11) +
                       sh.mass_lo[b];
    sh.mass[b] = m;
    if (row.grouped()) {
      if (sh.counts[b] != 0) atomicAdd(&row.g->hist_count[level][b], sh.counts[b]);
      if (m != 0) atomicAdd(&row.g->hist_mass[level][b], static_cast<unsigned long long>(m));
    }
  }
  if (!row.grouped()) {
    __syncthreads();
    return;
  }
  group_barrier(row, generation);
  for (int b = threadIdx.x; b < kBins; b += kThreads) {
    sh.counts[b] = __ldcg(&row.g->hist_count[level][b]);
    sh.mass[b] = __ldcg(&row.g->hist_mass[level][b]);
  }
  __syncthreads();
}

// Warp 0: picks this level's bin from the merged histograms (bins scanned from the highest key down).
//   kTopK: the bin holding the rest-th largest token; sel_rest = its rank inside the bin.
//   kTopP: the lowest non-empty bin whose weight strictly above it (above + higher bins) is < target;
//          sel_rest = that weight. At level 0 the histogram holds every candidate, so its total is W_k
//          and the target P = max(1, ceil(top_p * W_k)) is fixed there.
template <Select kMode>
__device__ void select_bin(Shared& sh, uint64_t rest, uint64_t above, bool first_level, float top_p) {
  const int lane = threadIdx.x & 31;
  uint32_t c[8];
  uint64_t m[8];
  uint64_t count_sum = 0, mass_sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int b = kBins - 1 - (lane * 8 + j);
    c[j] = sh.counts[b];
    m[j] = kMode == Select::kTopP ? sh.mass[b] : 0;
    count_sum += c[j];
    mass_sum += m[j];
  }
  if constexpr (kMode == Select::kTopK) {
    const uint64_t incl = warp_inclusive_scan(count_sum), excl = incl - count_sum;
    if (excl < rest && rest <= incl) {  // exactly one lane
      uint64_t cum = excl;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (rest > cum && rest <= cum + c[j]) {
          sh.sel_bin = kBins - 1 - (lane * 8 + j);
          sh.sel_count = c[j];
          sh.sel_rest = rest - cum;
        }
        cum += c[j];
      }
    }
  } else {
    const uint64_t incl = warp_inclusive_scan(mass_sum), excl = incl - mass_sum;
    uint64_t target = sh.target;
    if (first_level) {
      const double p_weight = ceil(static_cast<double>(top_p) * static_cast<double>(__shfl_sync(kFull, incl, 31)));
      target = p_weight < 1.0 ? 1 : static_cast<uint64_t>(p_weight);
    }
    uint64_t run = above + excl, cand_above = 0;
    int cand = -1;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (c[j] > 0 && run < target) {
        cand = j;
        cand_above = run;
      }
      run += m[j];
    }
    // The kept bins form a top run; the answer is the lowest candidate, held by the highest lane with one.
    // (The top non-empty bin always qualifies: its weight above is the previous level's, < target.)
    const unsigned lanes = __ballot_sync(kFull, cand >= 0);
    if (lane == 31 - __clz(lanes)) {
      sh.sel_bin = kBins - 1 - (lane * 8 + cand);
      sh.sel_count = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (j == cand) sh.sel_count = c[j];
      }
      sh.sel_rest = cand_above;
      sh.target = target;
    }
  }
}

// Radix select over the row's tokens with key >= floor_key, on histograms first_level .. first_level + 3
// of the group scratch. kTopK: returns the rank-th largest key. kTopP: returns the lowest key the top-p
// rule keeps.
template <Select kMode>
__device__ uint32_t radix_select(const Row& row, int first_level, uint32_t floor_key, uint64_t rank, Shared& sh,
                                 unsigned& generation) {
  constexpr bool kMass = kMode == Select::kTopP;
  uint32_t prefix = 0, prefix_mask = 0;
  uint64_t rest = rank, above = 0;
  for (int level = 0; level < 4; ++level) {
    const int shift = 24 - 8 * level;
    for (int b = threadIdx.x; b < kBins; b += kThreads) {
      sh.counts[b] = 0;
      sh.mass_lo[b] = 0;
      sh.mass_mid[b] = 0;
      sh.mass_hi[b] = 0;
    }
    __syncthreads();
    for_slice(row, [&](int, float x, bool in_range) {
      const uint32_t key = sampling_order_key(x);
      const bool valid = in_range && key >= floor_key && (key & prefix_mask) == prefix;
      const uint64_t w = kMass && valid ? sampling_weight(row.e(x)) : 0;
      hist_add<kMass>(valid, (key >> shift) & 0xffu, w, sh);
    });
    merge_histogram(row, first_level + level, sh, generation);
    if (threadIdx.x < 32) select_bin<kMode>(sh, rest, above, level == 0, row.sp.top_p);
    __syncthreads();
    if (kMode == Select::kTopK) {
      rest = sh.sel_rest;
    } else {
      above = sh.sel_rest;
    }
    prefix |= sh.sel_bin << shift;
    prefix_mask |= 0xffu << shift;
    __syncthreads();  // everyone has read sel_* and counts before the next level clears them
  }
  return prefix;
}

// ---- the draw ----

struct SampleArgs {
  const float* logits;           // (rows, vocab)
  const SamplingParams* params;  // (rows)
  SamplingHistory history;
  GroupScratch* scratch;         // (kMaxGroupedRows) when group_size > 1
  int32_t* ids;                  // (rows)
  int vocab;
  int group_size;                // blocks per row
  int slice;                     // tokens per block (a multiple of 32)
};

// The row's id: written once, by one thread of one block, which also adds it to the row's history.
__device__ void emit(const Row& row, int32_t* out, int id) {
  *out = id;
  if (row.history != nullptr) row.history[id] = sampling_history_add(row.history[id]);
}

// The kept weight of a token (0 when a filter removes it).
struct Kept {
  const Row& row;
  uint32_t threshold;
  bool use_min_p;
  float min_p;
  __device__ uint64_t operator()(float x) const {
    if (sampling_order_key(x) < threshold) return 0;
    const float e = row.e(x);
    if (use_min_p && !(e >= min_p)) return 0;
    return sampling_weight(e);
  }
};

// Step 6 for this block: each warp sums the kept weight of its chunk of the slice (chunks in vocabulary
// order), the group's block sums give each block the weight before it and the total, and the block whose
// range holds the draw t finds the warp, then the token.
__device__ void draw(const Row& row, const Kept& kept, int32_t* out, Shared& sh, unsigned& generation) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int len = row.end - row.begin;
  const int chunk = ((len + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int c0 = row.begin + warp * chunk, c1 = min(c0 + chunk, row.end);
  uint64_t sum = 0;
  for (int i = c0 + lane; i < c1; i += 32) sum += kept(row.load(i));
  sum = warp_sum(sum);
  if (lane == 0) sh.warp_kept[warp] = sum;
  __syncthreads();
  uint64_t mine = 0;  // this block's kept weight
  for (int w = 0; w < kWarps; ++w) mine += sh.warp_kept[w];
  uint64_t before = 0, total = mine;
  if (row.grouped()) {
    if (threadIdx.x == 0) row.g->kept[row.block] = mine;
    group_barrier(row, generation);
    if (warp == 0) {  // lane L holds blocks 8L .. 8L+7
      uint64_t local_sum = 0, before_me = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int b = lane * 8 + j;
        const uint64_t v = b < row.group_size ? __ldcg(&row.g->kept[b]) : 0;
        if (b < row.block) before_me += v;
        local_sum += v;
      }
      const uint64_t all = warp_sum(local_sum), below = warp_sum(before_me);
      if (lane == 0) {
        sh.block_before = below;
        sh.total = all;
      }
    }
    __syncthreads();
    before = sh.block_before;
    total = sh.total;
  }
  if (total == 0) {  // unreachable: the most likely token always weighs 2^32
    if (row.block == 0 && threadIdx.x == 0) emit(row, out, sh.best.index);
    return;
  }
  const uint64_t t = __umul64hi(sampling_random(row.sp.seed, row.sp.step), total);
  if (!(before <= t && t - before < mine)) return;  // the draw is in another block (block-uniform)
  if (warp == 0) {
    const uint64_t v = sh.warp_kept[lane];
    const uint64_t incl = warp_inclusive_scan(v), excl = incl - v;
    const uint64_t rest = t - before;
    if (excl <= rest && rest < incl) {
      sh.draw_warp = lane;
      sh.draw_rest = rest - excl;
    }
  }
  __syncthreads();
  if (warp != sh.draw_warp) return;
  uint64_t rest = sh.draw_rest;
  for (int i0 = c0; i0 < c1; i0 += 32) {
    const int i = i0 + lane;
    const uint64_t w = i < c1 ? kept(row.load(i)) : 0;
    const uint64_t run = warp_inclusive_scan(w);
    const unsigned hit = __ballot_sync(kFull, rest < run);
    if (hit != 0) {
      if (lane == __ffs(hit) - 1) emit(row, out, i);
      return;
    }
    rest -= __shfl_sync(kFull, run, 31);
  }
}

// One row's sampler in this block (the part that meets the group at barriers).
__device__ void sample_row(Row& row, int32_t* out, Shared& sh) {
  unsigned generation = 0;
  if (row.grouped()) {  // zero this launch's histograms; the first barrier publishes the zeros
    unsigned int* counts = &row.g->hist_count[0][0];
    unsigned long long* mass = &row.g->hist_mass[0][0];
    for (int i = row.block * kThreads + threadIdx.x; i < kLevels * kBins; i += row.group_size * kThreads) {
      counts[i] = 0;
      mass[i] = 0;
    }
  }
  const ArgMax best = row_argmax(row, sh, generation);
  if (threadIdx.x == 0) sh.best = best;
  const SamplingParams& sp = row.sp;
  const float scale = sp.temperature > 0.0f ? sampling_exp2_scale(sp.temperature) : 0.0f;
  if (!(sp.temperature > 0.0f) || !isfinite(best.value) || !isfinite(scale)) {  // greedy
    if (row.block == 0 && threadIdx.x == 0) emit(row, out, best.index);
    return;
  }
  row.l_max = best.value;
  row.scale = scale;
  uint32_t threshold = 0;  // tokens with key >= threshold survive top-k and top-p
  if (sp.top_k > 0 && sp.top_k < row.vocab) {
    threshold = radix_select<Select::kTopK>(row, 0, 0, static_cast<uint64_t>(sp.top_k), sh, generation);
  }
  if (sp.top_p < 1.0f) threshold = radix_select<Select::kTopP>(row, 4, threshold, 0, sh, generation);
  const Kept kept{row, threshold, sp.min_p > 0.0f, fminf(sp.min_p, 1.0f)};
  draw(row, kept, out, sh, generation);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const __grid_constant__ SampleArgs a) {
  __shared__ Shared sh;
  const int row_index = blockIdx.x / a.group_size;
  const int block = blockIdx.x % a.group_size;
  const SamplingParams sp = a.params[row_index];
  const int32_t slot = a.history.rows != nullptr ? a.history.rows[row_index] : -1;
  Row row{a.logits + static_cast<int64_t>(row_index) * a.vocab,
          sampling_has_penalty(sp) && slot >= 0 ? a.history.words + static_cast<int64_t>(slot) * a.vocab : nullptr,
          sp,
          a.vocab,
          min(block * a.slice, a.vocab),
          min((block + 1) * a.slice, a.vocab),
          a.group_size,
          block,
          a.group_size > 1 ? a.scratch + row_index : nullptr};
  sample_row(row, a.ids + row_index, sh);
  if (row.grouped()) {  // every block passed every barrier of this launch: the last one out resets them
    __syncthreads();
    if (threadIdx.x == 0 && atomicAdd(&row.g->leave, 1u) == static_cast<unsigned>(a.group_size - 1)) {
      row.g->arrive = 0;
      row.g->leave = 0;
    }
  }
}

// Blocks of sample_kernel one SM holds (cached per device).
int blocks_per_sm() {
  static int cached[64] = {};
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= 64) fail("sample: CUDA device {} out of range", device);
  if (cached[device] == 0) {
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, sample_kernel, kThreads, 0));
    cached[device] = std::max(n, 1);
  }
  return cached[device];
}

}  // namespace

void sample(const float* logits, int rows, int vocab, const SamplingParams* params, SamplingHistory history,
            void* workspace, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return;
  if (vocab <= 0 || vocab > kMaxSamplingVocab) fail("sample: vocab {} outside [1, {}]", vocab, kMaxSamplingVocab);
  // Blocks per row: all resident at once (the barriers need that), no more than one per kMinSlice
  // tokens; a single block when the rows alone fill the GPU.
  const int resident = current_device_limits().sms * blocks_per_sm();
  int group = 1;
  if (rows <= kMaxGroupedRows && workspace != nullptr) {
    group = std::min({resident / rows, (vocab + kMinSlice - 1) / kMinSlice, kMaxGroup});
    group = std::max(group, 1);
  }
  const int slice = ((vocab + group - 1) / group + 31) / 32 * 32;
  const SampleArgs args{logits, params, history, static_cast<GroupScratch*>(workspace), ids, vocab, group, slice};
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(rows * group));
  config.blockDim = dim3(kThreads);
  config.stream = stream;
  cudaLaunchAttribute cooperative{};
  cooperative.id = cudaLaunchAttributeCooperative;
  cooperative.val.cooperative = 1;
  config.attrs = &cooperative;
  config.numAttrs = group > 1 ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&config, sample_kernel, args));
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
