// Inputs fuzz/fuzz_tokenizer_json found (fuzz/regressions/tokenizer_json/): each must be refused with an
// fc::Error naming the file, never undefined behaviour or a multi-gigabyte allocation. Every file in that
// folder is replayed, so saving a new finding there is enough to make it a test.
#include <catch2/catch.hpp>

#include <filesystem>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

using namespace fc;
using Catch::Matchers::Contains;

TEST_CASE("tokenizer.json fuzz findings are refused with a clear error", "[tokenizer][fuzz]") {
  const std::filesystem::path dir = std::filesystem::path(FC_SOURCE_DIR) / "fuzz/regressions/tokenizer_json";
  int replayed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string path = entry.path().string();
    INFO(path);
    CHECK_THROWS_AS(load_tokenizer(path), Error);
    ++replayed;
  }
  CHECK(replayed >= 3);
}

TEST_CASE("token ids in tokenizer.json must be integers in range", "[tokenizer][fuzz]") {
  const std::string dir = std::string(FC_SOURCE_DIR) + "/fuzz/regressions/tokenizer_json/";
  CHECK_THROWS_WITH(load_tokenizer(dir + "float-vocab-id.json"),
                    Contains("float-vocab-id.json") && Contains("token id 2.78889e+96 is not an integer in [0, 16777216)"));
  CHECK_THROWS_WITH(load_tokenizer(dir + "huge-vocab-id.json"), Contains("token id 2147483647 is not an integer"));
  CHECK_THROWS_WITH(load_tokenizer(dir + "float-added-id.json"), Contains("token id 1.5 is not an integer"));
}
