// The CUDA backend's sampling end to end: generate() with penalties runs them on the GPU, inside the
// captured decode graph (every step after the second is a replay), with each request's history set on
// the device. Checked by properties bf16 rounding cannot change: a presence penalty of -100 makes the
// first generated id win every later step; +100 makes every generated id new; a request's history is
// its own (a second request on the same sequence slot starts from its own context).
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"
#include "model/llama_weights.h"
#include "tests/test_util.h"

namespace fc::test {
namespace {

std::vector<int32_t> generate_ids(Backend& backend, int seq, const std::vector<int32_t>& prompt,
                                  const GenerationParams& params) {
  return generate(backend, seq, prompt, params, [](int32_t) { return true; }).ids;
}

}  // namespace

TEST_CASE("CUDA backend: penalties run on the GPU inside the decode graph, one history per request",
          "[gpu][backend][penalty]") {
  // head_dim 128: the fused decode path and its CUDA graph.
  const Checkpoint ckpt = open_checkpoint(data_path("models/tiny-llama3-hd128"));
  BackendOptions options;
  options.max_context = 128;
  options.max_sequences = 2;
  options.show_progress = false;
  auto cuda = make_cuda_backend(ckpt, options);
  const std::vector<int32_t> prompt = {1, 17, 42, 99, 7, 250, 31};
  for (float temperature : {0.0f, 0.8f}) {
    CAPTURE(temperature);
    GenerationParams base;
    base.max_new_tokens = 24;
    base.sampling.temperature = temperature;
    base.sampling.seed = 5;
    {  // presence -100: the first generated id wins every later step
      GenerationParams p = base;
      p.sampling.presence_penalty = -100.0f;
      const int seq = cuda->kv_cache().create_sequence();
      const std::vector<int32_t> ids = generate_ids(*cuda, seq, prompt, p);
      cuda->kv_cache().release_sequence(seq);
      REQUIRE(ids.size() == 24);
      CHECK(std::count(ids.begin(), ids.end(), ids[0]) == 24);
    }
    // presence +100: every generated id is new; a second request on the same slot starts a fresh history
    for (int request = 0; request < 2; ++request) {
      GenerationParams p = base;
      p.sampling.presence_penalty = 100.0f;
      const int seq = cuda->kv_cache().create_sequence();
      const std::vector<int32_t> ids = generate_ids(*cuda, seq, prompt, p);
      cuda->kv_cache().release_sequence(seq);
      REQUIRE(ids.size() == 24);
      CHECK(std::set<int32_t>(ids.begin(), ids.end()).size() == 24);
    }
    // The repetition penalty reaches the prompt's ids: 1e6 keeps them out of greedy output. A positive
    // logit divided by 1e6 is ~0 and a negative one multiplied is far below every other: greedy can still
    // pick a prompt id only if every other token's logit is below ~0, which a random model's logits
    // (centred near 0, 352 of them) never are. (Sampled, a ~0 logit can be drawn: greedy only.)
    if (temperature == 0.0f) {
      GenerationParams p = base;
      p.sampling.repetition_penalty = 1e6f;
      const int seq = cuda->kv_cache().create_sequence();
      const std::vector<int32_t> ids = generate_ids(*cuda, seq, prompt, p);
      cuda->kv_cache().release_sequence(seq);
      for (int32_t id : ids) {
        CAPTURE(id);
        CHECK(std::find(prompt.begin(), prompt.end(), id) == prompt.end());
      }
    }
  }
}

}  // namespace fc::test
