// The CUDA backend allocates exactly what engine/device_layout.h lays out, so the up-front fit check
// (engine/memory_plan.h, which sums the same layout) cannot disagree with it; and the memory it holds
// matches what cudaMemGetInfo sees it take, within the plan's reserve for lazily loaded kernels.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/device_layout.h"
#include "engine/memory_plan.h"
#include "kernels/cuda_utils.cuh"
#include "model/config.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {

TEST_CASE("a CUDA backend holds exactly the device layout's allocations", "[gpu][backend][memory]") {
  const std::string path = std::string(FC_SOURCE_DIR) + "/configs/llama-3.2-1b.json";
  std::ifstream in(path);
  REQUIRE(in.good());
  Config c = parse_config(nlohmann::json::parse(in), path);
  c.num_layers = 2;  // the shapes of the 1B, fewer layers: quick to draw
  for (const auto& [context, seqs, batch_tokens] : {std::tuple{512, 1, 0}, std::tuple{1000, 5, 300}}) {
    INFO("context " << context << " sequences " << seqs << " batch tokens " << batch_tokens);
    BackendOptions o;
    o.max_context = context;
    o.max_sequences = seqs;
    o.max_batch_tokens = batch_tokens;
    o.show_progress = false;
    const DeviceLayout d = device_layout(c, o, /*tied_lm_head=*/true);  // a synthetic model shares one table
    size_t laid_out = 0;
    for (const DeviceLayout::Allocation& a : d.allocations()) laid_out += a.bytes;
    size_t free_before = 0, free_after = 0, total = 0;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
    {
      std::unique_ptr<Backend> b = make_synthetic_cuda_backend(c, 3, o);
      CHECK(b->device_memory_bytes() == laid_out);
      CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
      const GpuMemoryPlan plan = plan_gpu_memory(c, o, LmHeadStorage::SharedWithEmbedding);
      const size_t taken = free_before - free_after;
      CHECK(taken >= laid_out);
      CHECK(taken <= plan.total);  // the plan's rounding and reserve cover what else the backend took
    }
  }
}

}  // namespace fc::test
