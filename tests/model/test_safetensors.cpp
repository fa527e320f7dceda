#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "kernels/rope.h"
#include "model/llama_weights.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

using namespace fc;
using fc::test::data_path;

TEST_CASE("write_safetensors round-trips and reads back through the validating reader", "[safetensors]") {
  const std::string path = std::string(FC_BINARY_DIR) + "/roundtrip.safetensors";
  const std::vector<float> a{1.5f, -2.f, 3.25f, 0.f, 7.f, 1e-3f};
  const std::vector<int64_t> ids{5, 0, 9};
  write_safetensors(path, {{"a", DType::F32, {2, 3}, a.data()}, {"ids", DType::I64, {3}, ids.data()}});
  const TensorStore store = TensorStore::open_file(path);
  REQUIRE(store.find("a") != nullptr);
  CHECK(store.find("a")->shape == std::vector<int64_t>{2, 3});
  CHECK(tensor_to_f32(*store.find("a")) == a);
  CHECK(tensor_to_i64(*store.find("ids")) == ids);
  CHECK(store.find("missing") == nullptr);
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));
}

TEST_CASE("fixtures open: single file, fp32 tied, fp16 sharded with index", "[safetensors]") {
  for (const char* name : {"tiny-llama3-gqa", "tiny-llama32-tied", "tiny-llama2-mha-sharded"}) {
    INFO(name);
    const Checkpoint ckpt = open_checkpoint(data_path(std::string("models/") + name));
    CHECK(ckpt.tensors.layers.size() == static_cast<size_t>(ckpt.config.num_layers));
    CHECK(ckpt.tensors.embed->shape == std::vector<int64_t>{ckpt.config.vocab_size, ckpt.config.hidden_size});
  }
  const Checkpoint tied = open_checkpoint(data_path("models/tiny-llama32-tied"));
  CHECK(tied.tensors.lm_head == tied.tensors.embed);
  CHECK(tied.config.head_dim == 24);
  CHECK(tied.config.q_dim() != tied.config.hidden_size);
  const Checkpoint sharded = open_checkpoint(data_path("models/tiny-llama2-mha-sharded"));
  CHECK(sharded.tensors.embed->dtype == DType::F16);
  CHECK(sharded.config.num_kv_heads == sharded.config.num_heads);
}

TEST_CASE("RoPE inverse frequencies equal transformers' (plain and llama3-scaled)", "[rope]") {
  for (const char* name : {"tiny-llama3-gqa", "tiny-llama32-tied", "tiny-llama2-mha-sharded"}) {
    INFO(name);
    const std::string dir = data_path(std::string("models/") + name);
    const Config c = load_config(dir);
    const TensorStore ref = TensorStore::open_file(dir + "/reference.safetensors");
    const std::vector<float> expected = tensor_to_f32(*ref.find("inv_freq"));
    const std::vector<float> got = rope_inv_freq(c.head_dim, c.rope_theta, c.rope_llama3 ? &*c.rope_llama3 : nullptr);
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      INFO("i=" << i);
      CHECK(std::fabs(got[i] - expected[i]) <= 2e-7f * std::fabs(expected[i]));
    }
  }
}
