// The tensor-name map of the LLaMA family (HF names) and its validation against the config: every
// tensor the config needs, present, floating point, with exactly the expected shape.
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace fc {

// The scales of a projection stored F8_E4M3 (compressed-tensors, see Fp8Scheme in model/config.h); every
// member null for a projection stored F32/F16/BF16. Scales are F32, BF16 or F16, each value checked finite
// and > 0 at load. model/quantization.h turns them into per-output-channel fp32 scales.
struct Fp8ScaleTensors {
  const TensorInfo* weight = nullptr;  // weight_scale: [] or [1] (per tensor), [out, 1] (per channel)
  const TensorInfo* input = nullptr;   // input_scale: [] or [1]; only with static per-tensor activations
  Fp8Scheme scheme;                    // meaningful when `weight` is set
  bool fp8() const { return weight != nullptr; }
};

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
  // FP8 checkpoints: the scales of each projection above (all null where it is stored unquantized).
  // Fused partners (Q/K/V, gate/up) are either all FP8 or all unquantized, with the same input scheme.
  Fp8ScaleTensors wq_scale, wk_scale, wv_scale, wo_scale, w_gate_scale, w_up_scale, w_down_scale;
};

struct LlamaTensors {
  const TensorInfo* embed;       // embed_tokens (vocab, hidden)
  const TensorInfo* final_norm;  // norm (hidden)
  const TensorInfo* lm_head;     // lm_head (vocab, hidden); == embed when the embeddings are tied
  std::vector<LlamaLayerTensors> layers;
  bool fp8 = false;  // some projection is stored F8_E4M3 (embeddings, norms and lm_head never are)
};

// Throws fc::Error naming the file, the tensor, the expected and the actual shape. Warns (spdlog) about
// tensors it does not use. FP8 projections (config.quantization) need their scale tensors, of the shape the
// scheme says and with every value finite and > 0; an F8_E4M3 tensor the config does not quantize (ignored,
// no target, not a projection, or no quantization_config at all) is refused.
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

// `--check-weights`: reads every floating-point tensor of the checkpoint (F32/F16/BF16/F8_E4M3, straight from the
// mapping, no copy) and throws fc::Error "<file>: tensor '<name>' has NaN at index I of shape [..]" (or
// +Inf / -Inf) for the first non-finite element. Costs one pass over the weights' bytes, so it is opt-in.
void check_weights_finite(const Checkpoint& checkpoint);
// The same scan for one tensor (integer tensors are skipped).
void check_tensor_finite(const TensorInfo& tensor);

}  // namespace fc
