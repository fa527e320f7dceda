// The tensor-name map of the LLaMA family (HF names) and its validation against the config: every
// tensor the config needs, present, floating point, with exactly the expected shape.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace fc {

struct LlamaLayerTensors {
  const TensorInfo* attn_norm;  // input_layernorm (hidden)
  const TensorInfo* wq;         // q_proj (q_dim, hidden)
  const TensorInfo* wk;         // k_proj (kv_dim, hidden)
  const TensorInfo* wv;         // v_proj (kv_dim, hidden)
  const TensorInfo* wo;         // o_proj (hidden, q_dim)
  const TensorInfo* mlp_norm;   // post_attention_layernorm (hidden)
  const TensorInfo* w_gate;     // gate_proj (intermediate, hidden)
  const TensorInfo* w_up;       // up_proj (intermediate, hidden)
  const TensorInfo* w_down;     // down_proj (hidden, intermediate)
};

struct LlamaTensors {
  const TensorInfo* embed;       // embed_tokens (vocab, hidden)
  const TensorInfo* final_norm;  // norm (hidden)
  const TensorInfo* lm_head;     // lm_head (vocab, hidden); == embed when the embeddings are tied
  std::vector<LlamaLayerTensors> layers;
};

// Throws fc::Error naming the file, the tensor, the expected and the actual shape. Warns (spdlog) about
// tensors it does not use.
LlamaTensors map_llama_tensors(const Config& config, const TensorStore& store, const std::string& model_dir);

// A checkpoint directory opened and validated: config, generation config, mapped tensors.
struct Checkpoint {
  std::string dir;
  Config config;
  GenerationConfig generation;
  TensorStore store;
  LlamaTensors tensors;
};
Checkpoint open_checkpoint(const std::string& model_dir);

// `--check-weights`: reads every floating-point tensor of the checkpoint (F32/F16/BF16, straight from the
// mapping, no copy) and throws fc::Error "<file>: tensor '<name>' has NaN at index I of shape [..]" (or
// +Inf / -Inf) for the first non-finite element. Costs one pass over the weights' bytes, so it is opt-in.
void check_weights_finite(const Checkpoint& checkpoint);
// The same scan for one tensor (integer tensors are skipped).
void check_tensor_finite(const TensorInfo& tensor);

}  // namespace fc
