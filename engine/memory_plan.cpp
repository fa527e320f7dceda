#include "engine/memory_plan.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "kernels/sampling.h"

namespace fc {

namespace {

// As engine/cuda_backend.cpp: every carved tensor starts 256-byte aligned.
constexpr size_t kAlign = 256;
size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// cudaMalloc hands out whole 2 MiB pages for large allocations; counting them keeps the plan from
// undershooting by up to 2 MiB per buffer.
constexpr size_t kAllocGranularity = size_t{2} << 20;
size_t round_to_granularity(size_t bytes) {
  return (bytes + kAllocGranularity - 1) / kAllocGranularity * kAllocGranularity;
}

// Gemm::kDefaultWorkspaceBytes (kernels/gemm.cuh), the one cuBLASLt workspace of the backend.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
// cuda_backend.cpp's kMaxDecodeSplits: the decode attention workspace holds this many partial results.
constexpr int kMaxDecodeSplits = 32;
// Device memory used by the process that no buffer of ours accounts for: kernel modules (ours, cuBLASLt's)
// loaded lazily on first launch and the cuBLASLt handle. An estimate, on the safe side of what fc_soak
// measures (tools/soak_main.cpp prints planned vs measured).
constexpr size_t kRuntimeReserveBytes = size_t{256} << 20;

double gb(size_t bytes) { return static_cast<double>(bytes) / 1e9; }

// attention_decode_workspace_bytes (kernels/attention_decode.cu): per query row, head and split, an fp32
// partial output (head_dim) and its log-sum-exp. Re-stated here because that header needs CUDA.
size_t decode_workspace_bytes(int total_q, int q_heads, int head_dim, int num_splits) {
  if (num_splits <= 1 || total_q <= 0) return 0;
  const size_t items = static_cast<size_t>(total_q) * q_heads * num_splits;
  return items * head_dim * sizeof(float) + items * sizeof(float);
}

}  // namespace

int gemm_rows(int rows) {
  if (rows <= 16) return rows;
  int granularity = 16;
  while (rows / 32 >= granularity) granularity *= 2;  // granularity = max(16, 2^(floor(log2 rows) - 4))
  return (rows + granularity - 1) / granularity * granularity;
}

GpuMemoryPlan plan_gpu_memory(const Config& c, const BackendOptions& o, LmHeadStorage lm_head) {
  GpuMemoryPlan p;
  p.config = c;
  p.options = o;
  p.lm_head = lm_head;

  // Geometry: CudaBackend::make_kv and the constructor.
  const int block_size = std::max(1, o.kv_block_size);
  const int context = o.max_context > 0 ? o.max_context : c.max_position_embeddings;
  const int blocks_per_seq = (context + block_size - 1) / block_size;
  const int seqs = std::max(1, o.max_sequences);
  p.kv_blocks = o.kv_blocks > 0 ? o.kv_blocks : blocks_per_seq * seqs;
  p.max_context = blocks_per_seq * block_size;
  p.max_sequences = seqs;
  p.max_batch_tokens = std::max(o.max_batch_tokens > 0 ? o.max_batch_tokens : p.max_context, seqs);
  const size_t max_logit_rows = std::max(seqs, std::min(p.max_batch_tokens, 1024));

  // allocate_weights.
  const size_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const size_t q_dim = c.q_dim(), qkv_rows = q_dim + 2 * static_cast<size_t>(c.kv_dim());
  const size_t per_layer = align_up(hidden * 2) * 2 + align_up(qkv_rows * hidden * 2) + align_up(hidden * q_dim * 2) +
                           align_up(2 * inter * hidden * 2) + align_up(hidden * inter * 2);
  const size_t tables = lm_head == LmHeadStorage::SharedWithEmbedding ? 1 : 2;
  p.weights = round_to_granularity(align_up(vocab * hidden * 2) * tables + align_up(hidden * 2) +
                                   per_layer * static_cast<size_t>(c.num_layers));

  // allocate_kv_pool: K and V, bf16, per layer.
  const size_t block_elems = static_cast<size_t>(c.num_kv_heads) * block_size * c.head_dim;
  p.kv_bytes_per_token = static_cast<size_t>(c.kv_dim()) * 2 * 2 * c.num_layers;
  p.kv_pool = round_to_granularity(static_cast<size_t>(p.kv_blocks) * block_elems * 2 * 2 * c.num_layers);

  // allocate_workspace: activations for T tokens, logits rows, per-call metadata (uploaded twice over:
  // the carve takes align_up(meta * 4) * 2), inverse RoPE frequencies; then the sampling buffer, the
  // decode attention partials (tensor-core kernels only: head_dim 64 or 128) and the cuBLASLt workspace.
  // Activation and logits buffers hold gemm_rows() rows: the bucketed cuBLASLt row count.
  const size_t T = p.max_batch_tokens, L = max_logit_rows;
  const size_t TR = gemm_rows(p.max_batch_tokens), LR = gemm_rows(static_cast<int>(L));
  const size_t meta = 4 * T + 2 * (static_cast<size_t>(seqs) + 1) + static_cast<size_t>(seqs) * blocks_per_seq;
  const size_t activations = align_up(TR * hidden * 4) + align_up(TR * hidden * 2) * 2 + align_up(TR * qkv_rows * 2) +
                             align_up(TR * q_dim * 2) + align_up(TR * 2 * inter * 2) + align_up(TR * inter * 2) +
                             align_up(LR * hidden * 2) + align_up(LR * vocab * 4) + align_up(meta * 4) * 2 +
                             align_up(static_cast<size_t>(c.head_dim) / 2 * 4);
  const size_t sampling = align_up(L * sizeof(SamplingParams)) + align_up(L * sizeof(int32_t));
  const bool fast_attention = c.head_dim == 64 || c.head_dim == 128;
  const size_t decode = fast_attention ? decode_workspace_bytes(seqs, c.num_heads, c.head_dim, kMaxDecodeSplits) : 0;
  p.workspace = round_to_granularity(activations) + round_to_granularity(sampling) + round_to_granularity(decode) +
                round_to_granularity(kCublasWorkspaceBytes);

  p.reserve = kRuntimeReserveBytes;
  p.total = p.weights + p.kv_pool + p.workspace + p.reserve;
  return p;
}

GpuMemoryPlan plan_gpu_memory(const Config& config, const BackendOptions& options) {
  return plan_gpu_memory(config, options,
                         config.tie_word_embeddings ? LmHeadStorage::SharedWithEmbedding : LmHeadStorage::Separate);
}

int largest_fitting_context(const Config& config, const BackendOptions& options, LmHeadStorage lm_head,
                            size_t free_bytes) {
  const GpuMemoryPlan asked = plan_gpu_memory(config, options, lm_head);
  const int block_size = std::max(1, options.kv_block_size);
  auto fits = [&](int blocks) {
    BackendOptions o = options;
    o.max_context = blocks * block_size;
    return plan_gpu_memory(config, o, lm_head).total <= free_bytes;
  };
  // The plan only grows with the context (KV blocks, workspace rows, block tables): bisect on blocks.
  int lo = 0, hi = asked.max_context / block_size;
  if (fits(hi)) return hi * block_size;
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo * block_size;
}

void check_fits_gpu(const GpuMemoryPlan& plan, size_t free_bytes, size_t total_bytes) {
  if (plan.total <= free_bytes) return;
  const double weights_gb = gb(plan.weights);
  if (plan.weights + plan.reserve > free_bytes) {
    if (plan.weights + plan.reserve > total_bytes) {
      fail("not enough GPU memory: the model needs {:.2f} GB of weights (bf16) but the GPU has {:.2f} GB; use a GPU "
           "with more memory or a smaller model",
           weights_gb, gb(total_bytes));
    }
    fail("not enough GPU memory: the model needs {:.2f} GB of weights (bf16) but only {:.2f} GB of the GPU's {:.2f} GB "
         "are free (other processes hold the rest); free the GPU or use a smaller model",
         weights_gb, gb(free_bytes), gb(total_bytes));
  }

  const std::string needed = fmt::format(
      "{} sequence{} x {} tokens of KV cache need {:.2f} GB and the workspace {:.2f} GB on top of {:.2f} GB of weights "
      "({:.2f} GB in all) but the GPU has {:.2f} GB free of {:.2f} GB",
      plan.max_sequences, plan.max_sequences == 1 ? "" : "s", plan.max_context, gb(plan.kv_pool), gb(plan.workspace),
      weights_gb, gb(plan.total), gb(free_bytes), gb(total_bytes));

  if (plan.options.kv_blocks > 0) {
    // An explicit pool does not shrink with the context: say how many blocks would fit instead.
    const size_t others = plan.total - plan.kv_pool;
    const size_t block_bytes = plan.kv_bytes_per_token * std::max(1, plan.options.kv_block_size);
    size_t blocks = free_bytes > others ? (free_bytes - others) / block_bytes : 0;
    // The pool is rounded up to the allocation granularity: step down until the rounded plan fits.
    auto fits = [&](size_t n) {
      BackendOptions o = plan.options;
      o.kv_blocks = static_cast<int>(std::min<size_t>(n, INT32_MAX));
      return plan_gpu_memory(plan.config, o, plan.lm_head).total <= free_bytes;
    };
    while (blocks > 0 && !fits(blocks)) --blocks;
    if (blocks > 0) fail("not enough GPU memory: {}; use fewer KV blocks (largest that fits: {})", needed, blocks);
  } else {
    const int context = largest_fitting_context(plan.config, plan.options, plan.lm_head, free_bytes);
    if (context > 0) {
      std::string fewer;  // one sequence: nothing to take away
      if (plan.max_sequences > 1) {
        fewer = " or fewer sequences";
        // Sequences that fit at the asked context: the plan grows with their number, bisect.
        auto fits = [&](int seqs) {
          BackendOptions o = plan.options;
          o.max_sequences = seqs;
          return plan_gpu_memory(plan.config, o, plan.lm_head).total <= free_bytes;
        };
        int lo = 0, hi = plan.max_sequences;
        while (hi - lo > 1) {
          const int mid = lo + (hi - lo) / 2;
          (fits(mid) ? lo : hi) = mid;
        }
        if (lo > 0) fewer = fmt::format(" or fewer sequences (at most {} at {} tokens)", lo, plan.max_context);
      }
      fail("not enough GPU memory: {}; use a smaller --max-context (largest that fits: {} tokens){}", needed, context,
           fewer);
    }
  }
  fail("not enough GPU memory: {}; even the smallest KV cache does not fit beside the weights and workspace: use a "
       "GPU with more memory or a smaller model",
       needed);
}

}  // namespace fc
