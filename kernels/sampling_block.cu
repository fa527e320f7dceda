// The current sampler kernels (kernels/sampling_block.cuh): one block of 1024 threads per row (a decode batch has few rows; the vocabulary is
// at most 256K, 1 MB of fp32 logits, which one block streams from L2 in a few microseconds per pass).
//
// Radix select: keys are 32-bit order keys of the logits, chosen 8 bits per level from the top. At each
// level a histogram (count, and for top-p the integer weight) of the tokens still matching the chosen
// prefix picks the next byte. Once the tokens matching the prefix are known to fit in shared memory
// (kCandidates), the next full pass also copies them there, and the remaining levels read only that
// copy: typically 2 or 3 of the 4 levels read the whole row.
// Histogram updates are warp-aggregated for the most common bin of each warp (in the first levels most
// tokens of a row share a bin, and unaggregated shared-memory atomics on one address serialize). Bin
// weights are kept as three 32-bit limb sums: shared-memory atomics are native only for 32 bits (64-bit
// ones are compare-and-swap loops: with them a top-p-only row of 128K tokens took 1.2 ms on an H200,
// with the limbs 0.27 ms).
#include "kernels/sampling_block.cuh"

#include <climits>

#include "core/error.h"

namespace fc {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 8;        // independent loads in flight per thread in a full-row pass
constexpr int kBins = 256;        // 8-bit digits; each lane of warp 0 scans 8 bins
constexpr int kTile = 1024;       // tokens per tile of the final draw: 32 per lane of one warp
constexpr int kMaxTiles = kMaxSamplingVocab / kTile;  // 256: 8 per lane of warp 0
constexpr int kCandidates = 2048;

static_assert(kBins == 32 * 8 && kMaxTiles == 32 * 8, "warp 0 scans 8 entries per lane");

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

// Calls f(index, logit, in_range) for every token of the row, kUnroll loads in flight per thread. Every
// lane of every warp makes the same number of calls (warp-collective operations inside f are safe).
template <typename F>
__device__ void for_row(const float* logits, int vocab, F&& f) {
  for (int base = 0; base < vocab; base += kUnroll * kThreads) {
    float x[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      x[j] = i < vocab ? logits[i] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int i = base + j * kThreads + static_cast<int>(threadIdx.x);
      f(i, x[j], i < vocab);
    }
  }
}

// Block-wide argmax; NaN counts as -inf. Every thread gets the result.
__device__ ArgMax block_argmax(ArgMax v, ArgMax* scratch) {
  v = warp_argmax(v);
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  ArgMax r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = better(r, scratch[w]);
  __syncthreads();  // scratch may be reused
  return r;
}

__device__ ArgMax row_argmax(const float* logits, int vocab, ArgMax* scratch) {
  ArgMax best{-INFINITY, INT_MAX};
  for_row(logits, vocab, [&](int i, float x, bool in_range) {
    if (in_range) best = better(best, ArgMax{isnan(x) ? -INFINITY : x, i});
  });
  best = block_argmax(best, scratch);
  if (best.index == INT_MAX) best.index = 0;  // unreachable for vocab >= 1; keeps the id in range
  return best;
}

struct ArgmaxParams {
  const float* logits;  // (rows, vocab)
  int32_t* ids;         // (rows)
  int vocab;
};

__global__ void __launch_bounds__(kThreads) argmax_kernel(const __grid_constant__ ArgmaxParams p) {
  __shared__ ArgMax scratch[kWarps];
  const ArgMax best = row_argmax(p.logits + static_cast<int64_t>(blockIdx.x) * p.vocab, p.vocab, scratch);
  if (threadIdx.x == 0) p.ids[blockIdx.x] = best.index;
}

// ---- sampler ----

enum class Select { kTopK, kTopP };

struct SampleShared {
  uint32_t counts[kBins];
  // Bin weight = hi * 2^22 + mid * 2^11 + lo, each limb sum a native 32-bit atomic. One add is at most
  // 32 tokens of weight <= 2^32 (< 2^37); with <= 2^18 adds per bin, lo and mid stay < 2^29 and hi,
  // <= (total weight <= 2^50) / 2^22, < 2^28: no limb overflows.
  uint32_t mass_lo[kBins];
  uint32_t mass_mid[kBins];
  uint32_t mass_hi[kBins];
  unsigned long long tile_sums[kMaxTiles];
  uint32_t cand_key[kCandidates];
  unsigned long long cand_weight[kCandidates];
  uint32_t cand_count;
  // warp 0's choice at each level, read by the whole block
  uint32_t sel_bin;
  uint32_t sel_count;            // tokens in the chosen bin
  unsigned long long sel_rest;   // top-k: rank still to skip inside the bin; top-p: weight above the bin
  unsigned long long target;     // top-p: P
  ArgMax argmax_scratch[kWarps];
};

struct RowView {
  const float* logits;
  int vocab;
  float l_max;
  float scale;  // log2(e) / temperature
  __device__ float e(float x) const { return sampling_exp2((x - l_max) * scale); }
};

static_assert(kMaxSamplingVocab <= (1 << 18), "limb sums of SampleShared would overflow");

__device__ void add_mass(SampleShared& sh, uint32_t bin, uint64_t w) {
  const uint32_t lo = static_cast<uint32_t>(w) & 0x7ffu, mid = static_cast<uint32_t>(w >> 11) & 0x7ffu;
  const uint32_t hi = static_cast<uint32_t>(w >> 22);
  if (lo != 0) atomicAdd(&sh.mass_lo[bin], lo);
  if (mid != 0) atomicAdd(&sh.mass_mid[bin], mid);
  if (hi != 0) atomicAdd(&sh.mass_hi[bin], hi);
}

__device__ uint64_t bin_mass(const SampleShared& sh, int bin) {
  return (static_cast<uint64_t>(sh.mass_hi[bin]) << 22) + (static_cast<uint64_t>(sh.mass_mid[bin]) << 11) +
         sh.mass_lo[bin];
}

// Adds (bin, w) of every lane with `valid` to the histograms: one atomic for the warp's most common bin,
// one per lane for the others.
template <bool kMass>
__device__ void hist_add(bool valid, uint32_t bin, uint64_t w, SampleShared& sh) {
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

// Warp 0: picks this level's bin from the histograms (bins scanned from the highest key down).
//   kTopK: the bin holding the rest-th largest token; sel_rest = its rank inside the bin.
//   kTopP: the lowest non-empty bin whose weight strictly above it (above + higher bins) is < target;
//          sel_rest = that weight. At level 0 the histogram holds every candidate, so its total is W_k
//          and the target P = max(1, ceil(top_p * W_k)) is fixed there.
template <Select kMode>
__device__ void select_bin(SampleShared& sh, uint64_t rest, uint64_t above, int level, float top_p) {
  const int lane = threadIdx.x & 31;
  uint32_t c[8];
  uint64_t m[8];
  uint64_t count_sum = 0, mass_sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int b = kBins - 1 - (lane * 8 + j);
    c[j] = sh.counts[b];
    m[j] = kMode == Select::kTopP ? bin_mass(sh, b) : 0;
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
    if (level == 0) {
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

// Radix select over the tokens with key >= floor_key. known_count: how many those are (enables copying
// them to shared memory in the level-0 pass when they fit), or UINT_MAX if unknown.
//   kTopK: returns the rank-th largest key.  kTopP: returns the lowest key kept by the top-p rule.
template <Select kMode>
__device__ uint32_t radix_select(const RowView& row, uint32_t floor_key, uint32_t known_count, uint64_t rank,
                                 float top_p, SampleShared& sh) {
  constexpr bool kMass = kMode == Select::kTopP;
  uint32_t prefix = 0, prefix_mask = 0;
  uint64_t rest = rank, above = 0;
  bool from_candidates = false;                // the tokens matching the prefix are in sh.cand_*
  bool fill = known_count <= kCandidates;      // copy this level's tokens to sh.cand_* during the pass
  for (int level = 0; level < 4; ++level) {
    const int shift = 24 - 8 * level;
    for (int b = threadIdx.x; b < kBins; b += kThreads) {
      sh.counts[b] = 0;
      sh.mass_lo[b] = 0;
      sh.mass_mid[b] = 0;
      sh.mass_hi[b] = 0;
    }
    if (fill && threadIdx.x == 0) sh.cand_count = 0;
    __syncthreads();
    if (from_candidates) {
      const int n = static_cast<int>(sh.cand_count);
      for (int base = 0; base < n; base += kThreads) {  // warp-uniform trip count
        const int c = base + static_cast<int>(threadIdx.x);
        const uint32_t key = c < n ? sh.cand_key[c] : 0;
        const bool valid = c < n && (key & prefix_mask) == prefix;
        hist_add<kMass>(valid, (key >> shift) & 0xffu, valid ? sh.cand_weight[c] : 0, sh);
      }
    } else {
      for_row(row.logits, row.vocab, [&](int, float x, bool in_range) {
        const uint32_t key = sampling_order_key(x);
        const bool valid = in_range && key >= floor_key && (key & prefix_mask) == prefix;
        const uint64_t w = kMass && valid ? sampling_weight(row.e(x)) : 0;
        hist_add<kMass>(valid, (key >> shift) & 0xffu, w, sh);
        if (fill && valid) {
          const uint32_t slot = atomicAdd(&sh.cand_count, 1u);  // < kCandidates: the count was known
          sh.cand_key[slot] = key;
          sh.cand_weight[slot] = w;
        }
      });
    }
    __syncthreads();
    if (threadIdx.x < 32) select_bin<kMode>(sh, rest, above, level, top_p);
    __syncthreads();
    const uint32_t bin = sh.sel_bin, bin_count = sh.sel_count;
    if (kMode == Select::kTopK) {
      rest = sh.sel_rest;
    } else {
      above = sh.sel_rest;
    }
    prefix |= bin << shift;
    prefix_mask |= 0xffu << shift;
    if (fill) {
      from_candidates = true;
      fill = false;
    } else if (!from_candidates && bin_count <= kCandidates) {
      fill = true;
    }
    __syncthreads();  // everyone has read sel_* and counts before the next level clears them
  }
  return prefix;
}

struct SampleParams {
  const float* logits;             // (rows, vocab)
  const SamplingParams* params;    // (rows)
  int32_t* ids;                    // (rows)
  int vocab;
};

__global__ void __launch_bounds__(kThreads) sample_kernel(const __grid_constant__ SampleParams p) {
  __shared__ SampleShared sh;
  const int row_index = blockIdx.x;
  const SamplingParams sp = p.params[row_index];
  const float* logits = p.logits + static_cast<int64_t>(row_index) * p.vocab;
  const int vocab = p.vocab;

  // Pass 1: argmax (the greedy answer and the max logit).
  const ArgMax best = row_argmax(logits, vocab, sh.argmax_scratch);
  const float scale = sp.temperature > 0.0f ? sampling_exp2_scale(sp.temperature) : 0.0f;
  if (!(sp.temperature > 0.0f) || !isfinite(best.value) || !isfinite(scale)) {
    if (threadIdx.x == 0) p.ids[row_index] = best.index;
    return;
  }
  const RowView row{logits, vocab, best.value, scale};

  // Threshold on keys: tokens with key >= threshold survive top-k and top-p.
  uint32_t threshold = 0;
  uint32_t survivors = UINT_MAX;  // how many tokens have key >= threshold, when known
  if (sp.top_k > 0 && sp.top_k < vocab) {
    threshold = radix_select<Select::kTopK>(row, 0, UINT_MAX, static_cast<uint64_t>(sp.top_k), 1.0f, sh);
    // After the last level: sel_count tokens equal the k-th key and k - sel_rest lie above it.
    survivors = static_cast<uint32_t>(sp.top_k - sh.sel_rest + sh.sel_count);
  }
  if (sp.top_p < 1.0f) {
    threshold = radix_select<Select::kTopP>(row, threshold, survivors, 0, sp.top_p, sh);
  }
  const bool use_min_p = sp.min_p > 0.0f;
  const float min_p = fminf(sp.min_p, 1.0f);
  auto kept_weight = [&](float x) -> uint64_t {
    if (sampling_order_key(x) < threshold) return 0;
    const float e = row.e(x);
    if (use_min_p && !(e >= min_p)) return 0;
    return sampling_weight(e);
  };

  // Final pass: kept weight per tile of kTile consecutive tokens; warp w takes tiles w, w + 32, ...
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int tiles = (vocab + kTile - 1) / kTile;
  for (int tile = warp; tile < tiles; tile += kWarps) {
    uint64_t sum = 0;
    for (int j0 = 0; j0 < 32; j0 += kUnroll) {
      float x[kUnroll];
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) {
        const int i = tile * kTile + (j0 + j) * 32 + lane;
        x[j] = i < vocab ? logits[i] : -INFINITY;
      }
#pragma unroll
      for (int j = 0; j < kUnroll; ++j) sum += kept_weight(x[j]);
    }
    sum = warp_sum(sum);
    if (lane == 0) sh.tile_sums[tile] = sum;
  }
  __syncthreads();
  if (warp != 0) return;

  // Warp 0: the tile holding the draw (lane L owns tiles 8L .. 8L+7), then the token inside it.
  uint64_t local[8], local_sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    local[j] = lane * 8 + j < tiles ? sh.tile_sums[lane * 8 + j] : 0;
    local_sum += local[j];
  }
  const uint64_t incl = warp_inclusive_scan(local_sum), excl = incl - local_sum;
  const uint64_t total = __shfl_sync(kFull, incl, 31);
  if (total == 0) {  // unreachable: the most likely token always weighs 2^32
    if (lane == 0) p.ids[row_index] = best.index;
    return;
  }
  const uint64_t t = __umul64hi(sampling_random(sp.seed, sp.step), total);
  const bool owner = excl <= t && t < incl;
  const int owner_lane = __ffs(__ballot_sync(kFull, owner)) - 1;
  int tile = 0;
  uint64_t rest = 0;
  if (owner) {
    uint64_t cum = excl;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (t >= cum && t < cum + local[j]) {
        tile = lane * 8 + j;
        rest = t - cum;
      }
      cum += local[j];
    }
  }
  tile = __shfl_sync(kFull, tile, owner_lane);
  rest = __shfl_sync(kFull, rest, owner_lane);
  // The tile's weights are recomputed exactly as summed above, so the scan finds the token.
  for (int j = 0; j < 32; ++j) {
    const int i = tile * kTile + j * 32 + lane;
    const uint64_t w = i < vocab ? kept_weight(logits[i]) : 0;
    const uint64_t run = warp_inclusive_scan(w);
    const unsigned hit = __ballot_sync(kFull, rest < run);
    if (hit != 0) {
      if (lane == 0) p.ids[row_index] = tile * kTile + j * 32 + __ffs(hit) - 1;
      return;
    }
    rest -= __shfl_sync(kFull, run, 31);
  }
}

}  // namespace

void argmax(const float* logits, int rows, int vocab, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return;
  if (vocab <= 0) fail("argmax: vocab {} must be positive", vocab);
  argmax_kernel<<<rows, kThreads, 0, stream>>>(ArgmaxParams{logits, ids, vocab});
  CUDA_CHECK_LAUNCH();
}

void sample_one_block_per_row(const float* logits, int rows, int vocab, const SamplingParams* params, int32_t* ids,
                              cudaStream_t stream) {
  if (rows == 0) return;
  if (vocab <= 0 || vocab > kMaxSamplingVocab) fail("sample: vocab {} outside [1, {}]", vocab, kMaxSamplingVocab);
  sample_kernel<<<rows, kThreads, 0, stream>>>(SampleParams{logits, params, ids, vocab});
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
