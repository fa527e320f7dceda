#include "engine/memory_plan.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "engine/device_layout.h"

namespace fc {

namespace {

// cudaMalloc hands out whole 2 MiB pages for large allocations; counting them keeps the plan from
// undershooting by up to 2 MiB per buffer.
constexpr size_t kAllocGranularity = size_t{2} << 20;
size_t round_to_granularity(size_t bytes) {
  return (bytes + kAllocGranularity - 1) / kAllocGranularity * kAllocGranularity;
}

// Device memory used by the process that no buffer of ours accounts for: kernel modules (ours, cuBLASLt's)
// loaded lazily on first launch and the cuBLASLt handle. An estimate, on the safe side of what fc_soak
// measures (tools/soak_main.cpp prints planned vs measured).
constexpr size_t kRuntimeReserveBytes = size_t{256} << 20;

double gb(size_t bytes) { return static_cast<double>(bytes) / 1e9; }

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
  // The allocations themselves come from the layout the backend carves (engine/device_layout.h).
  const DeviceLayout d = device_layout(c, o, lm_head == LmHeadStorage::SharedWithEmbedding);
  p.max_context = d.kv.max_context;
  p.kv_blocks = d.kv.num_blocks;
  p.max_sequences = d.max_sequences;
  p.max_batch_tokens = d.max_batch_tokens;
  p.kv_bytes_per_token = static_cast<size_t>(c.kv_dim()) * 2 * 2 * c.num_layers;
  p.weights = round_to_granularity(d.weights.bytes);
  p.kv_pool = round_to_granularity(d.kv_pool_bytes);
  p.workspace = round_to_granularity(d.workspace.bytes) + round_to_granularity(d.decode_attention_bytes) +
                round_to_granularity(d.cublas_workspace_bytes);
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
