// The CUDA backend's buffers besides the weights, at engine/device_layout.h's sizes: the KV pool, the
// activation workspace (with the per-call metadata, the sampler's params, ids, histories and scratch), the decode
// attention's split partials, and the page-locked staging of each call.
#include <fmt/format.h>

#include "engine/cuda_parts.h"
#include "kernels/rope.h"

namespace fc::cuda {

Workspace allocate_workspace(const DeviceLayout& d, const Config& c) {
  Workspace ws;
  ws.kv_layout = PagedKVLayout{d.kv.block_size, c.num_kv_heads, c.head_dim};
  ws.kv_layer_elems = d.kv_layer_elems;
  const std::string kv_what = fmt::format("the KV cache ({} blocks of {} tokens; use a shorter --max-context or "
                                          "fewer KV blocks to fit)", d.kv.num_blocks, d.kv.block_size);
  ws.kv_buffer = DeviceBuffer(d.kv_pool_bytes, kv_what.c_str());
  ws.kv_pool = ws.kv_buffer.as<bf16>();
  CUDA_CHECK(cudaMemset(ws.kv_pool, 0, d.kv_pool_bytes));

  const WorkspaceOffsets& o = d.workspace;
  ws.buffer = DeviceBuffer(o.bytes, "activation workspace (use a smaller batch / --max-batch-tokens to fit)");
  CUDA_CHECK(cudaMemset(ws.buffer.get(), 0, o.bytes));
  char* base = ws.buffer.as<char>();
  auto at = [&](size_t offset) { return static_cast<void*>(base + offset); };
  ws.residual = static_cast<float*>(at(o.residual));
  ws.normed = static_cast<bf16*>(at(o.normed));
  ws.proj = static_cast<bf16*>(at(o.proj));
  ws.qkv = static_cast<bf16*>(at(o.qkv));
  ws.attn = static_cast<bf16*>(at(o.attn));
  ws.gate_up = static_cast<bf16*>(at(o.gate_up));
  ws.act = static_cast<bf16*>(at(o.act));
  ws.selected = static_cast<bf16*>(at(o.selected));
  ws.logits = static_cast<float*>(at(o.logits));
  ws.inv_freq = static_cast<float*>(at(o.inv_freq));
  if (d.weights.fp8) {
    ws.x_fp8 = static_cast<uint8_t*>(at(o.x_fp8));
    ws.x_scales = static_cast<float*>(at(o.x_scales));
  }
  ws.sample_params = static_cast<SamplingParams*>(at(o.sample_params));
  ws.sample_ids = static_cast<int32_t*>(at(o.sample_ids));
  ws.sample_history = static_cast<uint32_t*>(at(o.sample_history));  // zeroed with the rest
  ws.sample_scratch = at(o.sample_scratch);                           // zeroed: sample() requires it
  const size_t T = d.max_batch_tokens, S = d.max_sequences;
  ws.meta = static_cast<int32_t*>(at(o.meta));
  ws.tokens = ws.meta;
  ws.positions = ws.tokens + T;
  ws.slot_mapping = ws.positions + T;
  ws.logit_rows = ws.slot_mapping + T;
  ws.cu_seqlens = ws.logit_rows + T;
  ws.seq_lens = ws.cu_seqlens + S + 1;
  ws.block_tables = ws.seq_lens + S + 1;

  if (d.decode_attention_bytes > 0) {
    ws.decode_attention = DeviceBuffer(d.decode_attention_bytes, "decode attention workspace");
  }
  ws.host_meta = PinnedBuffer(o.meta_count * sizeof(int32_t));
  ws.host_params = PinnedBuffer(size_t(d.max_logit_rows) * (sizeof(SamplingParams) + sizeof(int32_t)));
  ws.host_ids = PinnedBuffer(size_t(d.max_logit_rows) * sizeof(int32_t));

  const std::vector<float> inv_freq = rope_inv_freq(c.head_dim, c.rope_theta, c.rope_llama3 ? &*c.rope_llama3 : nullptr);
  CUDA_CHECK(cudaMemcpy(ws.inv_freq, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
  return ws;
}

}  // namespace fc::cuda
