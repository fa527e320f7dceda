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
#include "engine/fp8_support.h"
#include "engine/gpu_pending.h"
#include "engine/memory_plan.h"
#include "engine/nvtx.h"
#include "kernels/attention_prefill.cuh"
#include "kernels/sampling.cuh"
#include "kernels/sampling_block.cuh"

namespace fc {

namespace {

// The one-launch sampler (kernels/sampling.cuh: rows over many blocks, penalties on the device, inside the
// decode graph) is written and its GPU tests compiled, but it has not run on a GPU yet; until it has
// (tests/gpu/test_sampling.cpp, test_backend_sampling.cpp; bench --temperature), steps take the verified
// kernels of kernels/sampling_block.cuh and penalties the host sampler, unless FC_GPU_PENDING=1
// (engine/gpu_pending.h). Then it becomes the only path and the other goes.

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
    require_cuda_fp8_support(ckpt, options);  // until the FP8 path has run on a GPU (issue 16)
    if (layout_.weights.fp8) check_fp8_runs_here(ckpt);
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
      upload_weights(weights_, layout_, *ckpt, options.show_progress);
    } else {
      fill_random_weights(weights_, layout_, config_, seed, stream_.get());
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

  // The sampler runs on the GPU over the logits in device memory: one copy of the params (and history
  // slots) up, one of the ids down. A decode step (one token per sequence) is a CUDA graph replay: the
  // plan and params are copied into the fixed device buffers the graph reads, the graph runs (the
  // sampler is its last kernel), the ids come back; one sync per step.
  //
  // Two samplers, until the new one has run on a GPU (one_launch_sampler_, FC_GPU_PENDING; docs/PERFORMANCE.md,
  // "Sampling"): today greedy rows take argmax and sampled rows one block per row
  // (kernels/sampling_block.cuh), and a step with a penalty reads its logits back and samples on the
  // host (Backend::forward_sample); the one-launch sampler (kernels/sampling.cuh) spreads each row over
  // many blocks and applies the penalties from the device-resident histories, inside the graph.
  void forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                      std::vector<int32_t>& ids) override {
    if (batch.all_logits) fail("forward_sample: all_logits is not supported (one id per sequence)");
    const bool any_penalty = std::any_of(params.begin(), params.end(), sampling_has_penalty);
    if (!one_launch_sampler_ && any_penalty) {
      Backend::forward_sample(batch, params, ids);
      return;
    }
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
      return !(p.temperature > 0) && !sampling_has_penalty(p);
    });
    SamplingParams* host_params = ws_.host_params.as<SamplingParams>();
    int32_t* host_slots = reinterpret_cast<int32_t*>(host_params + rows);
    for (int r = 0; r < rows; ++r) {
      host_params[r] = params[r];
      host_slots[r] = sampling_has_penalty(params[r]) ? history_slot(batch.seq_ids[r]) : -1;
    }
    cudaStream_t s = stream_.get();
    upload_plan(batch, plan, s);
    if (one_launch_sampler_ || !greedy) {
      CUDA_CHECK(cudaMemcpyAsync(ws_.sample_params, host_params, rows * (sizeof(SamplingParams) + sizeof(int32_t)),
                                 cudaMemcpyHostToDevice, s));
    }
    const StepContext ctx = context();
    auto launches = [&] {
      run_step(ctx, step, [&](int, int) {
        if (one_launch_sampler_) {
          sample(ws_.logits, rows, vocab, ws_.sample_params,
                 SamplingHistory{ws_.sample_history, ws_.sample_slots(rows)}, ws_.sample_scratch, ws_.sample_ids, s);
        } else if (greedy) {
          argmax(ws_.logits, rows, vocab, ws_.sample_ids, s);
        } else {
          sample_one_block_per_row(ws_.logits, rows, vocab, ws_.sample_params, ws_.sample_ids, s);
        }
      });
    };
    // With NVTX ranges on (FC_NVTX=1), eager launches: a graph replay carries no host-side ranges.
    if (step.decode && ctx.fast_attention && options_.decode.cuda_graph && !nvtx_enabled()) {
      // One graph per sampler kernel: the one-launch sampler serves greedy and sampled rows alike.
      const GraphCache::Key key{step.n_tokens, step.attn.num_splits, !one_launch_sampler_ && greedy ? 1 : 0};
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

  // The history lives on the device (layout: one row of vocab words per sequence id < max_sequences);
  // written once per request, outside the decode loop.
  void set_sampling_history(int seq_id, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& generated) override {
    if (!one_launch_sampler_) {  // penalised steps sample on the host
      Backend::set_sampling_history(seq_id, context, generated);
      return;
    }
    const size_t slot = static_cast<size_t>(history_slot(seq_id, /*must_be_set=*/false));
    const std::vector<uint32_t> words = sampling_history_ref(context, config_.vocab_size, generated);
    cudaStream_t s = stream_.get();
    CUDA_CHECK(cudaMemcpyAsync(ws_.sample_history + slot * config_.vocab_size, words.data(),
                               words.size() * sizeof(uint32_t), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));  // `words` is pageable and goes out of scope
    history_set_[slot] = true;
  }

 private:
  // The history row of a sequence with a penalty.
  int history_slot(int seq_id, bool must_be_set = true) const {
    if (seq_id < 0 || seq_id >= layout_.max_sequences) {
      fail("sampling penalties: sequence {} is outside the {} this backend was sized for", seq_id,
           layout_.max_sequences);
    }
    if (must_be_set && !history_set_[seq_id]) {
      fail("forward_sample: sequence {} has a penalty but no history (set_sampling_history first)", seq_id);
    }
    return seq_id;
  }

  // FP8 projections need FP8 arithmetic (sm_89+: the GEMV's e4m3 conversion, cuBLASLt's FP8 products; older
  // GPUs are refused rather than given a slow software path), in_dims that are whole 16-byte loads of e4m3,
  // and, without --quantize fp8, every projection of the checkpoint stored FP8: the CPU reference keeps
  // unquantized projections as they are, and so must we (with --quantize fp8 both quantize them alike).
  void check_fp8_runs_here(const Checkpoint* ckpt) const {
    const DeviceLimits& d = current_device_limits();
    if (d.cc_major * 10 + d.cc_minor < 89) {
      fail("FP8 weights need a GPU with FP8 arithmetic (sm_89 or newer: Ada, Hopper); this one is sm_{}{}: drop "
           "--quantize fp8, or run FP8 checkpoints with --device cpu", d.cc_major, d.cc_minor);
    }
    const Config& c = config_;
    if (c.hidden_size % 16 != 0 || c.q_dim() % 16 != 0 || c.intermediate_size % 16 != 0) {
      fail("FP8 weights on the GPU need hidden_size, heads x head_dim and intermediate_size to be multiples of 16 "
           "(got {}, {}, {})", c.hidden_size, c.q_dim(), c.intermediate_size);
    }
    if (ckpt == nullptr || options_.weights == WeightFormat::kFp8) return;
    for (size_t i = 0; i < ckpt->tensors.layers.size(); ++i) {
      const LlamaLayerTensors& l = ckpt->tensors.layers[i];
      for (const auto& [tensor, scale] : {std::pair{l.wq, &l.wq_scale}, std::pair{l.wo, &l.wo_scale},
                                          std::pair{l.w_gate, &l.w_gate_scale}, std::pair{l.w_down, &l.w_down_scale}}) {
        if (!scale->fp8()) {
          fail("{}: tensor '{}' is {} while the checkpoint's other projections are FP8; the CUDA backend holds all "
               "projections in one format: add --quantize fp8 (quantizes the unquantized ones on load) or use "
               "--device cpu", tensor->file, tensor->name, dtype_name(tensor->dtype));
        }
      }
    }
  }

  static KVCacheManager checked_kv_cache(const Config& c, const BackendOptions& o) {
    if (cuda_device_count() == 0) fail("--device cuda: no CUDA GPU found (use --device cpu)");
    return make_kv_cache(c, o);
  }

  // The decode kernel table for the options on this GPU and build, and whether this model's one-row
  // steps can take the fused path with it: decided once, said once, never switched per call.
  void choose_decode_path() {
    kernels_ = decode_kernels(options_.decode, weights_.fp8);
    gemv_rows_ = options_.decode.gemv && gemv_takes_model(config_, weights_.fp8);
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
  const bool one_launch_sampler_ = gpu_pending_paths_enabled();
  std::vector<bool> history_set_ = std::vector<bool>(layout_.max_sequences, false);  // per sequence id
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
