// The CUDA backend: bf16 weights and activations, fp32 residual stream and logits, cuBLASLt GEMMs and
// our kernels (kernels/*.cu). A call is planned on the host (engine/batch_plan.h), uploaded in one copy,
// run as the launches of engine/cuda_forward.cpp (a decode step: one CUDA graph replay) and committed to
// the KV manager. Device memory: the allocations of engine/device_layout.h, made once; nothing is
// allocated per call.
#include <algorithm>
#include <cmath>
#include <memory>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "engine/backend.h"
#include "engine/batch_plan.h"
#include "engine/cuda_parts.h"
#include "engine/memory_plan.h"
#include "engine/nvtx.h"
#include "kernels/attention_prefill.cuh"
#include "kernels/sampling.cuh"

namespace fc {

namespace {

using namespace cuda;

class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(stream_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

const char* kernel_name(GemvKernel k) { return k == GemvKernel::kBulkCopy ? "bulk copy" : "registers"; }

class CudaBackend final : public Backend {
 public:
  // `ckpt` null: a synthetic model of `config`'s shape with random weights drawn on the GPU (seed).
  CudaBackend(const Config& config, const Checkpoint* ckpt, uint64_t seed, const BackendOptions& options)
      : config_(config), options_(options), kv_(checked_kv_cache(config, options)),
        layout_(device_layout(config, options, ckpt == nullptr || ckpt->tensors.lm_head == ckpt->tensors.embed)) {
    if (!uses_fast_attention(config_)) {
      spdlog::warn("head_dim {}: using the generic (slow) attention kernel; the tensor-core kernels cover 64 and 128",
                   config_.head_dim);
    }
    // Refuse up front, with the numbers and a suggestion, what would not fit (never a CUDA error later).
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    check_fits_gpu(plan_gpu_memory(config_, options, layout_.tied_lm_head ? LmHeadStorage::SharedWithEmbedding
                                                                           : LmHeadStorage::Separate),
                   free_bytes, total_bytes);
    weights_ = allocate_weights(layout_);
    if (ckpt != nullptr) {
      upload_weights(weights_, *ckpt, options.show_progress);
    } else {
      fill_random_weights(weights_, config_, seed, stream_.get());
    }
    ws_ = allocate_workspace(layout_, config_);
    gemm_ = std::make_unique<Gemm>(layout_.cublas_workspace_bytes);
    choose_decode_path();
    if (nvtx_enabled()) spdlog::info("FC_NVTX: NVTX ranges on; decode steps launch eagerly (no CUDA graph)");
  }

  const Config& config() const override { return config_; }
  KVCacheManager& kv_cache() override { return kv_; }
  DeviceKind device() const override { return DeviceKind::Cuda; }
  size_t device_memory_bytes() const override {
    return weights_.buffer.bytes() + ws_.buffer.bytes() + ws_.kv_buffer.bytes() + ws_.decode_attention.bytes() +
           gemm_->workspace_bytes();
  }

  void set_decode_options(const DecodeOptions& decode) override {
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    graphs_.clear();
    options_.decode = decode;
    choose_decode_path();
  }

  ~CudaBackend() override { cudaStreamSynchronize(stream_.get()); }

  void forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    const BatchPlan plan = plan_batch(batch, kv_, config_.vocab_size);
    const StepShape step = step_shape(batch, plan);
    const int vocab = config_.vocab_size;
    logits.resize(static_cast<size_t>(step.logit_rows) * vocab);
    cudaStream_t s = stream_.get();
    upload_plan(batch, plan, s);
    run_step(context(), step, [&](int r0, int chunk) {
      CUDA_CHECK(cudaMemcpyAsync(logits.data() + static_cast<size_t>(r0) * vocab, ws_.logits,
                                 static_cast<size_t>(chunk) * vocab * sizeof(float), cudaMemcpyDeviceToHost, s));
    });
    CUDA_CHECK(cudaStreamSynchronize(s));
    commit_batch(batch, plan, kv_);
  }

  // The sampler runs on the GPU over the logits in device memory; one copy of the params up, one of
  // the ids down. Greedy rows (all of them: the common case) take the argmax kernel (13 us vs 44+).
  // A decode step (one token per sequence) is a CUDA graph replay: the plan and params are copied into
  // the fixed device buffers the graph reads, the graph runs, the ids come back; one sync per step.
  void forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                      std::vector<int32_t>& ids) override {
    if (batch.all_logits) fail("forward_sample: all_logits is not supported (one id per sequence)");
    const BatchPlan plan = plan_batch(batch, kv_, config_.vocab_size);
    const StepShape step = step_shape(batch, plan);
    const int rows = step.logit_rows;
    if (static_cast<int>(params.size()) != rows) {
      fail("forward_sample: {} sampling params for {} sequences", params.size(), rows);
    }
    if (rows > layout_.max_logit_rows) fail("forward_sample: {} sequences exceed {} rows", rows, layout_.max_logit_rows);
    const int vocab = config_.vocab_size;
    if (vocab > kMaxSamplingVocab) fail("GPU sampling supports a vocabulary of at most {}", kMaxSamplingVocab);
    const bool greedy = std::all_of(params.begin(), params.end(), [](const SamplingParams& p) {
      return !(p.temperature > 0);
    });
    cudaStream_t s = stream_.get();
    upload_plan(batch, plan, s);
    if (!greedy) {
      std::copy(params.begin(), params.end(), ws_.host_params.as<SamplingParams>());
      CUDA_CHECK(cudaMemcpyAsync(ws_.sample_params, ws_.host_params.as<SamplingParams>(),
                                 rows * sizeof(SamplingParams), cudaMemcpyHostToDevice, s));
    }
    const StepContext ctx = context();
    auto launches = [&] {
      run_step(ctx, step, [&](int, int) {
        if (greedy) {
          argmax(ws_.logits, rows, vocab, ws_.sample_ids, s);
        } else {
          sample(ws_.logits, rows, vocab, ws_.sample_params, ws_.sample_ids, s);
        }
      });
    };
    // With NVTX ranges on (FC_NVTX=1), eager launches: a graph replay carries no host-side ranges.
    if (step.decode && ctx.fast_attention && options_.decode.cuda_graph && !nvtx_enabled()) {
      const GraphCache::Key key{step.n_tokens, step.attn.num_splits, greedy ? 1 : 0};
      if (!graphs_.replay(key, s)) graphs_.run(key, s, launches);
    } else {
      launches();
    }
    int32_t* host_ids = ws_.host_ids.as<int32_t>();
    CUDA_CHECK(cudaMemcpyAsync(host_ids, ws_.sample_ids, rows * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    commit_batch(batch, plan, kv_);
    ids.assign(host_ids, host_ids + rows);
  }

 private:
  static KVCacheManager checked_kv_cache(const Config& c, const BackendOptions& o) {
    if (cuda_device_count() == 0) fail("--device cuda: no CUDA GPU found (use --device cpu)");
    return make_kv_cache(c, o);
  }

  // The decode kernel table for the options on this GPU and build, and whether this model's one-row
  // steps can take the fused path with it: decided once, said once, never switched per call.
  void choose_decode_path() {
    kernels_ = decode_kernels(options_.decode);
    gemv_rows_ = options_.decode.gemv && gemv_takes_model(config_);
    std::string why;
    fused_ = gemv_rows_ && fused_decode_supported(config_, weights_, ws_, kernels_, &why);
    if (fused_) {
      spdlog::debug("decode: fused GEMV step (qkv {}, o_proj {}, gate_up {}, down {}, lm_head {})",
                    kernel_name(kernels_.qkv), kernel_name(kernels_.o_proj), kernel_name(kernels_.gate_up),
                    kernel_name(kernels_.down), kernel_name(kernels_.lm_head));
    } else if (options_.decode.gemv && options_.decode.fuse) {
      spdlog::debug("decode: unfused step ({})", gemv_rows_ ? why : "the model's shapes are not multiples of 8");
    }
  }

  StepContext context() {
    return StepContext{config_, options_.decode, weights_, ws_, gemm_.get(), stream_.get(), uses_fast_attention(config_),
                       options_.bucket_gemm_rows, layout_.max_logit_rows, gemv_rows_, fused_, kernels_};
  }

  StepShape step_shape(const ForwardBatch& batch, const BatchPlan& plan) const {
    StepShape st;
    st.n_tokens = plan.num_tokens;
    st.num_seqs = plan.num_seqs;
    st.max_blocks_per_seq = plan.max_blocks_per_seq;
    st.logit_rows = static_cast<int>(plan.logit_rows.size());
    st.decode = std::all_of(batch.n_tokens.begin(), batch.n_tokens.end(), [](int k) { return k == 1; });
    if (plan.num_tokens > layout_.max_batch_tokens || plan.num_seqs > layout_.max_sequences) {
      fail("batch of {} tokens in {} sequences exceeds this backend's limits ({} tokens, {} sequences)",
           plan.num_tokens, plan.num_seqs, layout_.max_batch_tokens, layout_.max_sequences);
    }
    if (st.decode && uses_fast_attention(config_)) {
      const Config& c = config_;
      const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
      const int ctas_per_sm = plan.num_seqs == 1 && options_.decode.attn_one_cta_per_sm ? 1 : 0;
      st.attn = attention_decode_plan(plan.seq_lens.data(), plan.num_seqs, 1, shape, layout_.max_decode_splits, 0,
                                      ctas_per_sm);
    }
    return st;
  }

  // The call's metadata, in WorkspaceOffsets::meta's order, in one copy.
  void upload_plan(const ForwardBatch& batch, const BatchPlan& plan, cudaStream_t s) {
    const size_t T = layout_.max_batch_tokens, S = layout_.max_sequences;
    int32_t* h = ws_.host_meta.as<int32_t>();
    std::copy(batch.tokens.begin(), batch.tokens.end(), h);
    std::copy(plan.positions.begin(), plan.positions.end(), h + T);
    std::copy(plan.slot_mapping.begin(), plan.slot_mapping.end(), h + 2 * T);
    std::copy(plan.logit_rows.begin(), plan.logit_rows.end(), h + 3 * T);
    int32_t* cu = h + 4 * T;
    std::copy(plan.cu_seqlens_q.begin(), plan.cu_seqlens_q.end(), cu);
    std::copy(plan.seq_lens.begin(), plan.seq_lens.end(), cu + S + 1);
    std::copy(plan.block_tables.begin(), plan.block_tables.end(), cu + 2 * (S + 1));
    const size_t count = 4 * T + 2 * (S + 1) + plan.block_tables.size();
    CUDA_CHECK(cudaMemcpyAsync(ws_.meta, h, count * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  }

  Config config_;
  BackendOptions options_;
  KVCacheManager kv_;
  DeviceLayout layout_;
  Stream stream_;
  DeviceWeights weights_;
  Workspace ws_;
  std::unique_ptr<Gemm> gemm_;
  GraphCache graphs_;
  DecodeKernels kernels_{};
  bool gemv_rows_ = false, fused_ = false;
};

}  // namespace

std::string cuda_build_info() {
  return fmt::format("CUDA {}.{}, GPU code: {}", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10,
                     cuda_build_targets());
}

std::string cuda_kernel_paths() {
  if (cuda_device_count() == 0) return "";
  const DeviceLimits& d = current_device_limits();
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return fmt::format("{} (sm_{}{}): prefill attention {}, decode GEMV {}, {}", prop.name, d.cc_major, d.cc_minor,
                     attention_prefill_wgmma_available(128) ? "wgmma" : "mma.sync",
                     gemv_bulk_copy_available() ? "bulk copy + registers" : "registers",
                     d.pdl ? "programmatic dependent launch" : "no programmatic dependent launch");
}

std::unique_ptr<Backend> make_cuda_backend(const Checkpoint& checkpoint, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(checkpoint.config, &checkpoint, 0, options);
}

std::unique_ptr<Backend> make_synthetic_cuda_backend(const Config& config, uint64_t seed, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(config, nullptr, seed, options);
}

}  // namespace fc
