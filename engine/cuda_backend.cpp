// The CUDA backend: bf16 weights and activations, fp32 residual stream and logits, cuBLASLt GEMMs and
// our kernels (kernels/*.cu). Every launch of a forward step is listed in forward(), in order.
//
// Memory: three device allocations made once: the weights (one buffer carved into tensors, Q/K/V and
// gate/up fused at load so a layer runs 4 GEMMs), the KV cache pool (all layers' K and V blocks), and the
// activation workspace (sized for max_batch_tokens). Nothing is allocated per forward call.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "engine/backend.h"
#include "engine/batch_plan.h"
#include "engine/memory_plan.h"
#include "engine/progress.h"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_generic.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/embedding.cuh"
#include "kernels/gather.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/gemv_chain.cuh"
#include "kernels/random_fill.cuh"
#include "kernels/rmsnorm.cuh"
#include "kernels/rope.cuh"
#include "kernels/sampling.cuh"
#include "kernels/swiglu.cuh"

namespace fc {

namespace {

constexpr size_t kAlign = 256;  // every carved tensor starts 256-byte aligned (cuBLASLt, 16-byte loads)
constexpr int kMaxDecodeSplits = 32;
constexpr size_t kMaxGraphs = 64;  // cached decode graphs (batch size x split count x sampler)

size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

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

// Hands out aligned slices of one allocation, in order.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(base_ + offset_);
    offset_ += align_up(count * sizeof(T));
    return p;
  }
  size_t used() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

struct LayerWeights {
  bf16* attn_norm;  // (hidden)
  bf16* wqkv;       // (q_dim + 2 kv_dim, hidden): [wq; wk; wv]
  bf16* wo;         // (hidden, q_dim)
  bf16* mlp_norm;   // (hidden)
  bf16* w_gate_up;  // (2 intermediate, hidden): [w_gate; w_up]
  bf16* w_down;     // (hidden, intermediate)
};

class CudaBackend final : public Backend {
 public:
  // `ckpt` null: a synthetic model of `config`'s shape with random weights drawn on the GPU (seed).
  CudaBackend(const Config& config, const Checkpoint* ckpt, uint64_t seed, const BackendOptions& options)
      : config_(config), options_(options), kv_(make_kv(config, options)),
        layout_{options.kv_block_size, config.num_kv_heads, config.head_dim} {
    const Config& c = config_;
    max_seqs_ = std::max(1, options.max_sequences);
    max_tokens_ = options.max_batch_tokens > 0 ? options.max_batch_tokens : kv_.max_tokens_per_seq();
    max_tokens_ = std::max(max_tokens_, max_seqs_);
    max_logit_rows_ = std::max(max_seqs_, std::min(max_tokens_, 1024));
    fast_attention_ = c.head_dim == 64 || c.head_dim == 128;
    if (!fast_attention_) {
      spdlog::warn("head_dim {}: using the generic (slow) attention kernel; the tensor-core kernels cover 64 and 128",
                   c.head_dim);
    }
    // Refuse up front, with the numbers and a suggestion, what would not fit (never a CUDA error later).
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const bool tied = ckpt == nullptr || ckpt->tensors.lm_head == ckpt->tensors.embed;
    check_fits_gpu(plan_gpu_memory(config_, options, tied ? LmHeadStorage::SharedWithEmbedding : LmHeadStorage::Separate),
                   free_bytes, total_bytes);
    allocate_weights(tied);
    if (ckpt != nullptr) {
      upload_weights(*ckpt, options.show_progress);
    } else {
      fill_random_weights(seed);
    }
    allocate_kv_pool();
    allocate_workspace();
    const std::vector<float> inv_freq =
        rope_inv_freq(c.head_dim, c.rope_theta, c.rope_llama3 ? &*c.rope_llama3 : nullptr);
    CUDA_CHECK(cudaMemcpy(inv_freq_, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
  }

  const Config& config() const override { return config_; }
  KVCacheManager& kv_cache() override { return kv_; }
  DeviceKind device() const override { return DeviceKind::Cuda; }
  void set_decode_options(const DecodeOptions& decode) override {
    require_none_queued("set_decode_options");
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    for (auto& [key, exec] : graphs_) CUDA_CHECK(cudaGraphExecDestroy(exec));
    graphs_.clear();
    graph_seen_.clear();
    options_.decode = decode;
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_.get());  // queued calls still copy into the slots' pinned buffers
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    for (SampleSlot& slot : slots_) {
      if (slot.done != nullptr) cudaEventDestroy(slot.done);
    }
  }

  void forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    require_none_queued("forward");
    feed_rows_ = 0;
    const BatchPlan plan = plan_batch(batch, kv_, config_.vocab_size);
    const StepShape step = step_shape(batch, plan);
    const int vocab = config_.vocab_size;
    logits.resize(static_cast<size_t>(step.logit_rows) * vocab);
    cudaStream_t s = stream_.get();
    upload_plan(batch, plan, slots_[slot_head_].meta, s);  // nothing is queued: every slot is free
    run_layers(step, [&](int r0, int chunk) {
      CUDA_CHECK(cudaMemcpyAsync(logits.data() + static_cast<size_t>(r0) * vocab, logits_,
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
    require_none_queued("forward_sample");
    feed_rows_ = 0;
    const SampleSlot& slot = slots_[slot_head_];  // nothing is queued: every slot is free
    const int rows = launch_sample(batch, params, false, slot.meta, slot.params, slot.ids);
    CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    ids.assign(slot.ids.as<int32_t>(), slot.ids.as<int32_t>() + rows);
  }

  // Pipelined sampling (Backend::queue_sample): the same launches as forward_sample, from the next free
  // slot's pinned buffers, with an event after the ids' copy instead of a stream sync. generate() and
  // the bench use it when DecodeOptions::async_sample is on.
  bool pipelines_sampling() const override { return options_.decode.async_sample; }

  void queue_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                    bool feed_sampled) override {
    if (slot_count_ >= kMaxQueuedSamples) {
      fail("queue_sample: {} calls are already queued (take_sampled first)", slot_count_);
    }
    if (feed_sampled) {
      const bool one_each = std::all_of(batch.n_tokens.begin(), batch.n_tokens.end(), [](int n) { return n == 1; });
      if (feed_rows_ == 0) fail("queue_sample: no queued call before this one sampled ids to feed");
      if (!one_each || static_cast<int>(batch.seq_ids.size()) != feed_rows_) {
        fail("queue_sample: feeding {} sampled ids needs {} sequences of one token each", feed_rows_, feed_rows_);
      }
    }
    // The slot's last use was taken (its event synchronized), so its pinned buffers are free.
    SampleSlot& slot = slots_[(slot_head_ + slot_count_) % kMaxQueuedSamples];
    slot.rows = launch_sample(batch, params, feed_sampled, slot.meta, slot.params, slot.ids);
    CUDA_CHECK(cudaEventRecord(slot.done, stream_.get()));
    ++slot_count_;
    feed_rows_ = slot.rows;
  }

  void take_sampled(std::vector<int32_t>& ids) override {
    if (slot_count_ == 0) fail("take_sampled: no call is queued");
    SampleSlot& slot = slots_[slot_head_];
    CUDA_CHECK(cudaEventSynchronize(slot.done));
    ids.assign(slot.ids.as<int32_t>(), slot.ids.as<int32_t>() + slot.rows);
    slot_head_ = (slot_head_ + 1) % kMaxQueuedSamples;
    --slot_count_;
  }

 private:
  void require_none_queued(const char* what) const {
    if (slot_count_ > 0) fail("{}: {} queued sampling calls were not taken", what, slot_count_);
  }

  // Queues one sampling forward on stream_ from the given pinned staging buffers, whose previous copies
  // must be complete; the ids land in `ids_host` when the stream gets there. With `feed_sampled` the
  // step's tokens are the ids the last sampling launch left on the device. Commits the batch to the KV
  // manager. Returns the number of sampled rows.
  int launch_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params, bool feed_sampled,
                    const PinnedBuffer& meta_host, const PinnedBuffer& params_host, const PinnedBuffer& ids_host) {
    if (batch.all_logits) fail("forward_sample: all_logits is not supported (one id per sequence)");
    const BatchPlan plan = plan_batch(batch, kv_, config_.vocab_size);
    const StepShape step = step_shape(batch, plan);
    const int rows = step.logit_rows;
    if (static_cast<int>(params.size()) != rows) {
      fail("forward_sample: {} sampling params for {} sequences", params.size(), rows);
    }
    if (rows > max_logit_rows_) fail("forward_sample: {} sequences exceed {} rows", rows, max_logit_rows_);
    const int vocab = config_.vocab_size;
    if (vocab > kMaxSamplingVocab) fail("GPU sampling supports a vocabulary of at most {}", kMaxSamplingVocab);
    const bool greedy = std::all_of(params.begin(), params.end(), [](const SamplingParams& p) {
      return !(p.temperature > 0);
    });
    cudaStream_t s = stream_.get();
    upload_plan(batch, plan, meta_host, s);
    if (feed_sampled) {
      // One token per sequence in batch order, as the last launch sampled them (rows in batch order).
      CUDA_CHECK(cudaMemcpyAsync(d_tokens_, d_sample_ids_, rows * sizeof(int32_t), cudaMemcpyDeviceToDevice, s));
    }
    if (!greedy) {
      std::copy(params.begin(), params.end(), params_host.as<SamplingParams>());
      CUDA_CHECK(cudaMemcpyAsync(d_sample_params_, params_host.as<SamplingParams>(), rows * sizeof(SamplingParams),
                                 cudaMemcpyHostToDevice, s));
    }
    auto body = [&] {
      run_layers(step, [&](int, int) {
        if (greedy) {
          argmax(logits_, rows, vocab, d_sample_ids_, s);
        } else {
          sample(logits_, rows, vocab, d_sample_params_, d_sample_ids_, s);
        }
      });
    };
    if (step.decode && fast_attention_ && options_.decode.cuda_graph) {
      replay_graph({step.n_tokens, step.attn.num_splits, greedy ? 1 : 0}, body);
    } else {
      body();
    }
    CUDA_CHECK(cudaMemcpyAsync(ids_host.as<int32_t>(), d_sample_ids_, rows * sizeof(int32_t),
                               cudaMemcpyDeviceToHost, s));
    commit_batch(batch, plan, kv_);
    return rows;
  }

  // What the launches of one step depend on besides device buffers: a captured graph is valid for
  // every step with the same (n_tokens, split count, sampler), since positions, slots, lengths and
  // block tables are read from the device.
  struct StepShape {
    int n_tokens = 0, num_seqs = 0, max_blocks_per_seq = 0, logit_rows = 0;
    bool decode = false;  // one new token per sequence
    AttentionDecodePlan attn;
  };

  StepShape step_shape(const ForwardBatch& batch, const BatchPlan& plan) const {
    StepShape st;
    st.n_tokens = plan.num_tokens;
    st.num_seqs = plan.num_seqs;
    st.max_blocks_per_seq = plan.max_blocks_per_seq;
    st.logit_rows = static_cast<int>(plan.logit_rows.size());
    st.decode = std::all_of(batch.n_tokens.begin(), batch.n_tokens.end(), [](int k) { return k == 1; });
    if (plan.num_tokens > max_tokens_ || plan.num_seqs > max_seqs_) {
      fail("batch of {} tokens in {} sequences exceeds this backend's limits ({} tokens, {} sequences)",
           plan.num_tokens, plan.num_seqs, max_tokens_, max_seqs_);
    }
    if (st.decode && fast_attention_) {
      const Config& c = config_;
      const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
      // One CTA per SM for a single sequence (measured faster there); the kernel's occupancy for batches
      // (batch 8 at 4k measured 0.5-1% slower with one CTA per SM: 2 splits instead of 4).
      st.attn = attention_decode_plan(plan.seq_lens.data(), plan.num_seqs, 1, shape, kMaxDecodeSplits, 0,
                                      plan.num_seqs == 1 ? options_.decode.attn_ctas_per_sm : 0);
    }
    return st;
  }

  // Runs `body` (the step's launches on stream_) through the graph cached for `key`. The first step of
  // a key runs eagerly (it initializes cuBLASLt plans and kernel attributes outside any capture); the
  // second captures and instantiates; later ones only replay.
  template <typename Body>
  void replay_graph(const std::tuple<int, int, int>& key, Body body) {
    cudaStream_t s = stream_.get();
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      if (graph_seen_.insert(key).second) {
        body();
        return;
      }
      if (graphs_.size() >= kMaxGraphs) {
        for (auto& [k, exec] : graphs_) CUDA_CHECK(cudaGraphExecDestroy(exec));
        graphs_.clear();
      }
      cudaGraph_t graph = nullptr;
      CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      try {
        body();
      } catch (...) {
        cudaStreamEndCapture(s, &graph);
        if (graph != nullptr) cudaGraphDestroy(graph);
        throw;
      }
      CUDA_CHECK(cudaStreamEndCapture(s, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      CUDA_CHECK(status);
      it = graphs_.emplace(key, exec).first;
    }
    CUDA_CHECK(cudaGraphLaunch(it->second, s));
  }

  // y = x @ w^T for the step's rows: our GEMV for decode-sized row counts (when enabled and the shape
  // allows), cuBLASLt otherwise.
  void matmul(const bf16* x, const bf16* w, bf16* out, int rows, int in_dim, int out_dim, cudaStream_t s) {
    GemvArgs a = gemv_args(w, rows, in_dim, out_dim, GemvOutput::kBf16, out);
    a.x = x;
    if (use_gemv(rows) && gemv_supported(a)) return run_gemv(a, s);
    gemm_->matmul(x, w, out, cublas_rows(rows), in_dim, out_dim, s);
  }
  void matmul(const bf16* x, const bf16* w, float* out, int rows, int in_dim, int out_dim, cudaStream_t s) {
    GemvArgs a = gemv_args(w, rows, in_dim, out_dim, GemvOutput::kF32, out);
    a.x = x;
    if (use_gemv(rows) && gemv_supported(a)) return run_gemv(a, s);
    gemm_->matmul(x, w, out, cublas_rows(rows), in_dim, out_dim, s);
  }

  // Rows the cuBLASLt product runs over: the step's rows padded to their bucket (engine/memory_plan.h).
  // Every buffer passed to matmul() holds gemm_rows(its capacity) rows; the padding rows compute
  // values nothing reads.
  int cublas_rows(int rows) const { return options_.bucket_gemm_rows ? gemm_rows(rows) : rows; }

  // fc::gemv with the decode options' kernel for `projection` (0 qkv .. 4 lm_head; -1 unfused: registers).
  void run_gemv(const GemvArgs& a, cudaStream_t s, int projection = -1) const {
    const DecodeOptions& d = options_.decode;
    GemvTuning t;
    t.kernel = projection >= 0 ? static_cast<GemvKernel>(d.gemv_kernel_of[projection]) : GemvKernel::kRegisters;
    if (d.gemv_kernel >= 0) t.kernel = static_cast<GemvKernel>(d.gemv_kernel);
    if (!d.bulk_gemv) t.kernel = GemvKernel::kRegisters;
    if (d.gemv_slots > 0) t.slots = d.gemv_slots;
    if (d.gemv_ctas_per_sm > 0) t.ctas_per_sm = d.gemv_ctas_per_sm;
    if (d.gemv_late_trigger >= 0) t.late_trigger = d.gemv_late_trigger != 0;
    t.prewait_slots = d.gemv_prewait;
    t.carveout = d.gemv_carveout;
    gemv(a, t, s);
  }

  bool use_gemv(int rows) const {
    return options_.decode.gemv && rows <= std::min(options_.decode.gemv_max_rows, kGemvMaxRows);
  }

  GemvArgs gemv_args(const bf16* w, int rows, int in_dim, int out_dim, GemvOutput output, void* out) const {
    GemvArgs a;
    a.w = w;
    a.rows = rows;
    a.in_dim = in_dim;
    a.out_dim = out_dim;
    a.output = output;
    a.out = out;
    a.eps = config_.rms_norm_eps;
    a.pdl = options_.decode.pdl;
    return a;
  }
  GemvArgs gemv_norm_args(const bf16* w, const bf16* norm, int rows, int out_dim, GemvOutput output, void* out) const {
    GemvArgs a = gemv_args(w, rows, config_.hidden_size, out_dim, output, out);
    a.input = GemvInput::kRmsNorm;
    a.residual = residual_;
    a.norm_weight = norm;
    return a;
  }

  struct GemvArgsItem {
    GemvArgs args;
    int projection;  // run_gemv's
  };

  // Whether this step takes the fused GEMV decode path: every product of the step is a GEMV with its
  // neighbour fused (norm into the input, SwiGLU / residual add into the output).
  bool fused_decode(const StepShape& st) const {
    if (!st.decode || !options_.decode.fuse || !use_gemv(st.n_tokens) || st.logit_rows != st.n_tokens) return false;
    const Config& c = config_;
    return gemv_supported(qkv_rope_args(0, st.n_tokens)) && c.q_dim() % 8 == 0 && c.intermediate_size % 8 == 0;
  }

  // The QKV projection of `layer` with RMSNorm in front and RoPE + the K/V append behind.
  GemvArgs qkv_rope_args(size_t layer, int n) const {
    const Config& c = config_;
    GemvArgs a = gemv_norm_args(layers_[layer].wqkv, layers_[layer].attn_norm, n, c.q_dim() + 2 * c.kv_dim(),
                                GemvOutput::kRopeKV, qkv_);
    a.rope = {c.num_heads, c.num_kv_heads, c.head_dim, d_positions_, inv_freq_, d_slot_mapping_,
              kv_pool_ + (2 * layer) * pool_elems_, kv_pool_ + (2 * layer + 1) * pool_elems_, layout_};
    return a;
  }

  RopeKVParams rope_params(size_t layer, int n) const {
    const Config& c = config_;
    RopeKVParams rope;
    rope.qkv = qkv_;
    rope.row_stride = c.q_dim() + 2 * c.kv_dim();
    rope.n_tokens = n;
    rope.q_heads = c.num_heads;
    rope.kv_heads = c.num_kv_heads;
    rope.head_dim = c.head_dim;
    rope.positions = d_positions_;
    rope.inv_freq = inv_freq_;
    rope.slot_mapping = d_slot_mapping_;
    rope.k_pool = kv_pool_ + (2 * layer) * pool_elems_;
    rope.v_pool = kv_pool_ + (2 * layer + 1) * pool_elems_;
    rope.block_size = layout_.block_size;
    return rope;
  }

  // Attention of one layer over qkv_ (rotated, appended) into attn_.
  void attention(const StepShape& st, size_t layer, cudaStream_t s) {
    const Config& c = config_;
    const int qkv_dim = c.q_dim() + 2 * c.kv_dim();
    const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
    const AttentionBatch attn_batch{st.num_seqs, d_cu_seqlens_, d_seq_lens_, d_block_tables_, st.max_blocks_per_seq};
    const bf16* k_pool = kv_pool_ + (2 * layer) * pool_elems_;
    const bf16* v_pool = kv_pool_ + (2 * layer + 1) * pool_elems_;
    const int n = st.n_tokens;
    if (!fast_attention_) {
      attention_generic(attn_batch, n, shape, qkv_, qkv_dim, k_pool, v_pool, layout_, attn_, c.q_dim(), s);
    } else if (st.decode) {
      AttentionDecodePlan plan = st.attn;
      plan.pdl = options_.decode.pdl;
      attention_decode(attn_batch, n, shape, qkv_, qkv_dim, k_pool, v_pool, layout_, attn_, c.q_dim(), plan,
                       decode_ws_.get(), decode_ws_.bytes(), s);
    } else {
      attention_prefill(attn_batch, n, shape, qkv_, qkv_dim, k_pool, v_pool, layout_, attn_, c.q_dim(), s);
    }
  }

  // Every launch of one forward step, in order, reading the plan uploaded by upload_plan().
  // `on_logits(r0, chunk)` is called (on the stream) after each chunk of logit rows lands in logits_
  // (chunk, vocab). The caller synchronizes and commits.
  template <typename OnLogits>
  void run_layers(const StepShape& st, OnLogits on_logits) {
    if (fused_decode(st)) return run_fused_decode(st, on_logits);
    const Config& c = config_;
    cudaStream_t s = stream_.get();
    const int n = st.n_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    const int qkv_dim = c.q_dim() + 2 * c.kv_dim();

    embedding(d_tokens_, n, embed_, c.vocab_size, hidden, residual_, s);
    rmsnorm(residual_, layers_[0].attn_norm, n, hidden, c.rms_norm_eps, normed_, s);
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerWeights& L = layers_[li];
      matmul(normed_, L.wqkv, qkv_, n, hidden, qkv_dim, s);
      rope_kv_append(rope_params(li, n), s);
      attention(st, li, s);
      matmul(attn_, L.wo, proj_, n, c.q_dim(), hidden, s);
      add_rmsnorm(residual_, proj_, L.mlp_norm, n, hidden, c.rms_norm_eps, normed_, s);
      matmul(normed_, L.w_gate_up, gate_up_, n, hidden, 2 * inter, s);
      swiglu(gate_up_, n, inter, act_, s);
      matmul(act_, L.w_down, proj_, n, inter, hidden, s);
      const bf16* next_norm = li + 1 < layers_.size() ? layers_[li + 1].attn_norm : final_norm_;
      add_rmsnorm(residual_, proj_, next_norm, n, hidden, c.rms_norm_eps, normed_, s);
    }
    // lm_head over the rows whose logits are wanted, in chunks of max_logit_rows_.
    const int rows = st.logit_rows;
    for (int r0 = 0; r0 < rows; r0 += max_logit_rows_) {
      const int chunk = std::min(max_logit_rows_, rows - r0);
      gather_rows(normed_, d_logit_rows_ + r0, chunk, hidden, selected_, s);
      matmul(selected_, lm_head_, logits_, chunk, hidden, c.vocab_size, s);
      on_logits(r0, chunk);
    }
  }

  // Decode of GEMV-sized steps: 4 GEMVs and the attention a layer, each GEMV reading its weights once,
  // with RMSNorm computed in the GEMV's prologue from the fp32 residual, RoPE + the K/V append in the
  // QKV GEMV's epilogue, SwiGLU in the gate/up GEMV's and the residual adds in the o_proj / down GEMVs'
  // (fp32, no bf16 rounding of the projection).
  template <typename OnLogits>
  void run_fused_decode(const StepShape& st, OnLogits on_logits) {
    const Config& c = config_;
    cudaStream_t s = stream_.get();
    const int n = st.n_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    embedding(d_tokens_, n, embed_, c.vocab_size, hidden, residual_, s);
    if (options_.decode.gemv_chain) {
      run_chained_decode(st, s);
      return on_logits(0, n);
    }
    // The step's GEMVs in order (projection 0 qkv .. 4 lm_head), each prefetching the next one's first
    // weights into L2; the last prefetches layer 0's qkv, the next step's first.
    std::vector<GemvArgsItem>& items = decode_items_;
    items.clear();
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerWeights& L = layers_[li];
      items.push_back({qkv_rope_args(li, n), 0});
      GemvArgs o = gemv_args(L.wo, n, c.q_dim(), hidden, GemvOutput::kAddF32, residual_);
      o.x = attn_;
      items.push_back({o, 1});
      items.push_back({gemv_norm_args(L.w_gate_up, L.mlp_norm, n, 2 * inter, GemvOutput::kSwiglu, act_), 2});
      GemvArgs down = gemv_args(L.w_down, n, inter, hidden, GemvOutput::kAddF32, residual_);
      down.x = act_;
      items.push_back({down, 3});
    }
    items.push_back({gemv_norm_args(lm_head_, final_norm_, n, c.vocab_size, GemvOutput::kF32, logits_), 4});
    const size_t cap = size_t(std::max(options_.decode.gemv_prefetch_mb, 0)) << 20;
    for (size_t i = 0; i < items.size() && cap > 0; ++i) {
      const GemvArgs& next = items[(i + 1) % items.size()].args;
      items[i].args.prefetch = next.w;
      items[i].args.prefetch_bytes = std::min(cap, size_t(next.out_dim) * next.in_dim * sizeof(bf16));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      run_gemv(items[i].args, s, items[i].projection);
      if (items[i].projection == 0) attention(st, i / 4, s);
    }
    on_logits(0, n);
  }

  // run_fused_decode with each layer's o_proj, gate/up, down and the next qkv (or lm_head) as one
  // persistent kernel (kernels/gemv_chain.cuh); after the embedding.
  void run_chained_decode(const StepShape& st, cudaStream_t s) {
    const Config& c = config_;
    const int n = st.n_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    run_gemv(qkv_rope_args(0, n), s, 0);
    for (size_t li = 0; li < layers_.size(); ++li) {
      const LayerWeights& L = layers_[li];
      attention(st, li, s);
      // o_proj, gate/up, down, then the next layer's qkv (the last layer: lm_head), projections 1..4 / 0.
      GemvChainArgs chain;
      chain.count = 4;
      chain.barrier = chain_barrier_.as<uint32_t>();
      if (options_.decode.gemv_slots > 0) chain.slots = options_.decode.gemv_slots;
      GemvArgs& o = chain.phases[0];
      o = gemv_args(L.wo, n, c.q_dim(), hidden, GemvOutput::kAddF32, residual_);
      o.x = attn_;
      chain.phases[1] = gemv_norm_args(L.w_gate_up, L.mlp_norm, n, 2 * inter, GemvOutput::kSwiglu, act_);
      GemvArgs& down = chain.phases[2];
      down = gemv_args(L.w_down, n, inter, hidden, GemvOutput::kAddF32, residual_);
      down.x = act_;
      const bool last = li + 1 == layers_.size();
      chain.phases[3] = last ? gemv_norm_args(lm_head_, final_norm_, n, c.vocab_size, GemvOutput::kF32, logits_)
                             : qkv_rope_args(li + 1, n);
      if (gemv_chain_supported(chain)) {
        gemv_chain(chain, s);
      } else {
        const int projections[4] = {1, 2, 3, last ? 4 : 0};
        for (int i = 0; i < 4; ++i) run_gemv(chain.phases[i], s, projections[i]);
      }
    }
  }

  static KVCacheManager make_kv(const Config& c, const BackendOptions& o) {
    if (cuda_device_count() == 0) fail("--device cuda: no CUDA GPU found (use --device cpu)");
    const int context = o.max_context > 0 ? o.max_context : c.max_position_embeddings;
    const int blocks_per_seq = (context + o.kv_block_size - 1) / o.kv_block_size;
    const int blocks = o.kv_blocks > 0 ? o.kv_blocks : blocks_per_seq * std::max(1, o.max_sequences);
    return KVCacheManager(blocks, o.kv_block_size, blocks_per_seq);
  }

  // Copies `t` (any float dtype) into `dst` as bf16, in chunks, through a host staging buffer.
  void upload_tensor(const TensorInfo& t, bf16* dst, std::vector<uint16_t>& staging, ProgressBar& progress) {
    const size_t count = static_cast<size_t>(t.numel());
    constexpr size_t kChunk = size_t{16} << 20;  // elements
    for (size_t begin = 0; begin < count; begin += kChunk) {
      const size_t len = std::min(kChunk, count - begin);
      const void* src = t.data + begin * dtype_size(t.dtype);
      if (t.dtype == DType::BF16) {
        CUDA_CHECK(cudaMemcpy(dst + begin, src, len * 2, cudaMemcpyHostToDevice));
      } else {
        staging.resize(len);
        convert_to_bf16(t.dtype, src, len, staging.data());
        CUDA_CHECK(cudaMemcpy(dst + begin, staging.data(), len * 2, cudaMemcpyHostToDevice));
      }
      progress.advance(len * dtype_size(t.dtype));
    }
  }

  // One allocation for every weight, carved in a fixed order; Q/K/V and gate/up are fused.
  void allocate_weights(bool tied) {
    const Config& c = config_;
    const size_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
    const size_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
    const size_t per_layer = align_up(hidden * 2) * 2 + align_up(qkv_rows * hidden * 2) +
                             align_up(hidden * c.q_dim() * 2) + align_up(2 * inter * hidden * 2) +
                             align_up(hidden * inter * 2);
    const size_t total = align_up(vocab * hidden * 2) * (tied ? 1 : 2) + align_up(hidden * 2) + per_layer * c.num_layers;
    weights_ = DeviceBuffer(total, "the model weights (bf16)");
    Carver carve(weights_.get());
    embed_ = carve.take<bf16>(vocab * hidden);
    lm_head_ = tied ? embed_ : carve.take<bf16>(vocab * hidden);
    final_norm_ = carve.take<bf16>(hidden);
    for (int l = 0; l < c.num_layers; ++l) {
      LayerWeights w;
      w.attn_norm = carve.take<bf16>(hidden);
      w.wqkv = carve.take<bf16>(qkv_rows * hidden);
      w.wo = carve.take<bf16>(hidden * c.q_dim());
      w.mlp_norm = carve.take<bf16>(hidden);
      w.w_gate_up = carve.take<bf16>(2 * inter * hidden);
      w.w_down = carve.take<bf16>(hidden * inter);
      layers_.push_back(w);
    }
  }

  void upload_weights(const Checkpoint& ckpt, bool show_progress) {
    const LlamaTensors& t = ckpt.tensors;
    size_t source_bytes = 0;
    for (const auto& name : ckpt.store.names()) source_bytes += ckpt.store.find(name)->nbytes;
    ProgressBar progress("loading weights", source_bytes, show_progress);
    std::vector<uint16_t> staging;
    auto load = [&](bf16* dst, std::initializer_list<const TensorInfo*> parts) {
      for (const TensorInfo* p : parts) {
        upload_tensor(*p, dst, staging, progress);
        dst += p->numel();
      }
    };
    load(embed_, {t.embed});
    if (lm_head_ != embed_) load(lm_head_, {t.lm_head});
    load(final_norm_, {t.final_norm});
    for (size_t i = 0; i < layers_.size(); ++i) {
      const LlamaLayerTensors& l = t.layers[i];
      const LayerWeights& w = layers_[i];
      load(w.attn_norm, {l.attn_norm});
      load(w.wqkv, {l.wq, l.wk, l.wv});
      load(w.wo, {l.wo});
      load(w.mlp_norm, {l.mlp_norm});
      load(w.w_gate_up, {l.w_gate, l.w_up});
      load(w.w_down, {l.w_down});
    }
    progress.finish();
    spdlog::info("weights: {:.2f} GB bf16 on the GPU in {:.1f} s", weights_.bytes() / 1e9, progress.seconds());
  }

  // Synthetic model: HF's initialization scale (std 0.02) for matrices, norms near 1.
  void fill_random_weights(uint64_t seed) {
    const Config& c = config_;
    const size_t hidden = c.hidden_size, inter = c.intermediate_size;
    const size_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
    cudaStream_t s = stream_.get();
    uint64_t tensor = seed * 1000;
    auto matrix = [&](bf16* p, size_t count) { fill_random_bf16(p, count, ++tensor, 0.f, 0.02f, s); };
    auto norm = [&](bf16* p) { fill_random_bf16(p, hidden, ++tensor, 1.f, 0.1f, s); };
    matrix(embed_, size_t(c.vocab_size) * hidden);
    if (lm_head_ != embed_) matrix(lm_head_, size_t(c.vocab_size) * hidden);
    norm(final_norm_);
    for (const LayerWeights& w : layers_) {
      norm(w.attn_norm);
      matrix(w.wqkv, qkv_rows * hidden);
      matrix(w.wo, hidden * c.q_dim());
      norm(w.mlp_norm);
      matrix(w.w_gate_up, 2 * inter * hidden);
      matrix(w.w_down, hidden * inter);
    }
    CUDA_CHECK(cudaStreamSynchronize(s));
    spdlog::info("weights: {:.2f} GB of random bf16 drawn on the GPU (synthetic model)", weights_.bytes() / 1e9);
  }

  void allocate_kv_pool() {
    pool_elems_ = static_cast<size_t>(kv_.num_blocks()) * layout_.block_stride();
    const size_t bytes = pool_elems_ * 2 * 2 * config_.num_layers;
    const std::string what = fmt::format("the KV cache ({} blocks of {} tokens; use a shorter --max-context or "
                                         "fewer KV blocks to fit)", kv_.num_blocks(), kv_.block_size());
    kv_buf_ = DeviceBuffer(bytes, what.c_str());
    kv_pool_ = kv_buf_.as<bf16>();
    // Zeroed once so that a benchmark which sets sequence lengths without prefilling (synthetic
    // context) reads finite K/V rather than whatever the allocation held (NaN bit patterns included).
    CUDA_CHECK(cudaMemset(kv_pool_, 0, bytes));
  }

  void allocate_workspace() {
    const Config& c = config_;
    const size_t T = max_tokens_, H = c.hidden_size, I = c.intermediate_size;
    // Activations and logits hold gemm_rows() rows (TR, LR >= T, L): the bucketed cuBLASLt row count.
    const size_t TR = gemm_rows(max_tokens_), LR = gemm_rows(max_logit_rows_);
    const size_t qkv_dim = c.q_dim() + 2 * c.kv_dim();
    const size_t meta = 4 * T + 2 * (max_seqs_ + 1) + size_t(max_seqs_) * kv_.max_blocks_per_seq();
    const size_t bytes = align_up(TR * H * 4) + align_up(TR * H * 2) * 2 + align_up(TR * qkv_dim * 2) +
                         align_up(TR * c.q_dim() * 2) + align_up(TR * 2 * I * 2) + align_up(TR * I * 2) +
                         align_up(LR * H * 2) + align_up(LR * c.vocab_size * 4) + align_up(meta * 4) * 2 +
                         align_up(c.head_dim / 2 * 4);
    workspace_ = DeviceBuffer(bytes, "activation workspace (use a smaller batch / --max-batch-tokens to fit)");
    // Zeroed once: the padding rows of a bucketed product read rows no kernel has written yet.
    CUDA_CHECK(cudaMemset(workspace_.get(), 0, bytes));
    Carver carve(workspace_.get());
    residual_ = carve.take<float>(TR * H);      // (TR, hidden) fp32
    normed_ = carve.take<bf16>(TR * H);         // (TR, hidden)
    proj_ = carve.take<bf16>(TR * H);           // (TR, hidden)
    qkv_ = carve.take<bf16>(TR * qkv_dim);      // (TR, q_dim + 2 kv_dim)
    attn_ = carve.take<bf16>(TR * c.q_dim());   // (TR, q_dim)
    gate_up_ = carve.take<bf16>(TR * 2 * I);    // (TR, 2 intermediate)
    act_ = carve.take<bf16>(TR * I);            // (TR, intermediate)
    selected_ = carve.take<bf16>(LR * H);          // (LR, hidden)
    logits_ = carve.take<float>(LR * c.vocab_size);  // (LR, vocab) fp32
    inv_freq_ = carve.take<float>(c.head_dim / 2);
    // Per-call metadata, uploaded in one copy: tokens, positions, slots, logit rows (T each),
    // cu_seqlens (S+1), seq_lens (S), block tables (S, max_blocks_per_seq).
    meta_ = carve.take<int32_t>(meta);
    d_tokens_ = meta_;
    d_positions_ = d_tokens_ + T;
    d_slot_mapping_ = d_positions_ + T;
    d_logit_rows_ = d_slot_mapping_ + T;
    d_cu_seqlens_ = d_logit_rows_ + T;
    d_seq_lens_ = d_cu_seqlens_ + max_seqs_ + 1;
    d_block_tables_ = d_seq_lens_ + max_seqs_ + 1;
    for (SampleSlot& slot : slots_) {
      slot.meta = PinnedBuffer(meta * sizeof(int32_t));
      slot.params = PinnedBuffer(size_t(max_logit_rows_) * sizeof(SamplingParams));
      slot.ids = PinnedBuffer(size_t(max_logit_rows_) * sizeof(int32_t));
      CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
    }
    sample_buf_ = DeviceBuffer(align_up(size_t(max_logit_rows_) * sizeof(SamplingParams)) +
                                   align_up(size_t(max_logit_rows_) * sizeof(int32_t)),
                               "sampling params and ids");
    Carver carve_sample(sample_buf_.get());
    d_sample_params_ = carve_sample.take<SamplingParams>(max_logit_rows_);  // (L)
    d_sample_ids_ = carve_sample.take<int32_t>(max_logit_rows_);           // (L)
    if (fast_attention_) {
      const size_t ws = attention_decode_workspace_bytes(max_seqs_, c.num_heads, c.head_dim, kMaxDecodeSplits);
      decode_ws_ = DeviceBuffer(ws, "decode attention workspace");
    }
    chain_barrier_ = DeviceBuffer(kGemvChainBarrierBytes, "GEMV chain barrier");
    CUDA_CHECK(cudaMemset(chain_barrier_.get(), 0, kGemvChainBarrierBytes));
    gemm_ = std::make_unique<Gemm>();
  }

  void upload_plan(const ForwardBatch& batch, const BatchPlan& plan, const PinnedBuffer& meta_host, cudaStream_t s) {
    const size_t T = max_tokens_;
    int32_t* h = meta_host.as<int32_t>();
    std::copy(batch.tokens.begin(), batch.tokens.end(), h);
    std::copy(plan.positions.begin(), plan.positions.end(), h + T);
    std::copy(plan.slot_mapping.begin(), plan.slot_mapping.end(), h + 2 * T);
    std::copy(plan.logit_rows.begin(), plan.logit_rows.end(), h + 3 * T);
    int32_t* cu = h + 4 * T;
    std::copy(plan.cu_seqlens_q.begin(), plan.cu_seqlens_q.end(), cu);
    std::copy(plan.seq_lens.begin(), plan.seq_lens.end(), cu + max_seqs_ + 1);
    std::copy(plan.block_tables.begin(), plan.block_tables.end(), cu + 2 * (max_seqs_ + 1));
    const size_t count = 4 * T + 2 * (max_seqs_ + 1) + plan.block_tables.size();
    CUDA_CHECK(cudaMemcpyAsync(meta_, h, count * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  }

  Config config_;
  BackendOptions options_;
  KVCacheManager kv_;
  PagedKVLayout layout_;
  Stream stream_;
  int max_seqs_ = 1, max_tokens_ = 1, max_logit_rows_ = 1;
  bool fast_attention_ = true;

  DeviceBuffer weights_;
  bf16 *embed_ = nullptr, *lm_head_ = nullptr, *final_norm_ = nullptr;
  std::vector<LayerWeights> layers_;

  DeviceBuffer kv_buf_;
  bf16* kv_pool_ = nullptr;  // layer l: K at 2l * pool_elems_, V at (2l + 1) * pool_elems_
  size_t pool_elems_ = 0;

  DeviceBuffer workspace_, decode_ws_, sample_buf_, chain_barrier_;
  std::vector<GemvArgsItem> decode_items_;  // run_fused_decode's GEMVs (kept: no allocation per step)
  SamplingParams* d_sample_params_ = nullptr;
  int32_t* d_sample_ids_ = nullptr;
  float *residual_ = nullptr, *logits_ = nullptr, *inv_freq_ = nullptr;
  bf16 *normed_ = nullptr, *proj_ = nullptr, *qkv_ = nullptr, *attn_ = nullptr, *gate_up_ = nullptr,
       *act_ = nullptr, *selected_ = nullptr;
  int32_t *meta_ = nullptr, *d_tokens_ = nullptr, *d_positions_ = nullptr, *d_slot_mapping_ = nullptr,
          *d_logit_rows_ = nullptr, *d_cu_seqlens_ = nullptr, *d_seq_lens_ = nullptr, *d_block_tables_ = nullptr;
  // Pinned staging of each call's plan, params and ids. queue_sample's calls, oldest at slot_head_, each
  // have their own, so the host can stage call n + 1 while call n's copies still wait in the stream;
  // `done` follows the ids' copy. forward() and forward_sample() (nothing queued) use slot_head_'s.
  struct SampleSlot {
    PinnedBuffer meta, params, ids;
    cudaEvent_t done = nullptr;
    int rows = 0;
  };
  SampleSlot slots_[kMaxQueuedSamples];
  int slot_head_ = 0, slot_count_ = 0;
  int feed_rows_ = 0;  // rows of the last launch when it was a queued one (what feed_sampled may read)
  std::unique_ptr<Gemm> gemm_;
  std::map<std::tuple<int, int, int>, cudaGraphExec_t> graphs_;
  std::set<std::tuple<int, int, int>> graph_seen_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const Checkpoint& checkpoint, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(checkpoint.config, &checkpoint, 0, options);
}

std::unique_ptr<Backend> make_synthetic_cuda_backend(const Config& config, uint64_t seed, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(config, nullptr, seed, options);
}

}  // namespace fc
