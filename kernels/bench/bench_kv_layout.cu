// fc_bench_kv_layout: the measurement behind the paged KV layout (kernels/attention.h). A decode step
// streams every K and V row of a sequence once, so the layout that streams fastest wins. Two candidates,
// same blocks and block tables (shuffled), LLaMA 3.1 8B shape (8 kv heads, head_dim 128), bf16:
//   head-major  [block][kv_head][slot][dim]: one head's block is one contiguous block_size*256 B run
//   token-major [block][slot][kv_head][dim]: one head's rows are 256 B pieces, kv_heads*256 B apart
// The kernel is a decode-shaped reader: a CTA per (kv head, split), 16-byte loads, 4 rows in flight per
// warp, the values summed so nothing is optimized away. GB/s = K+V bytes / median time (CUDA events),
// rotating cache copies so the bytes touched exceed the L2.
//   fc_bench_kv_layout
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda_utils.cuh"

namespace {

using fc::bf16;
using fc::DeviceBuffer;

constexpr int kKVHeads = 8, kHeadDim = 128, kRowChunks = kHeadDim * 2 / 16;  // 16 x 16-byte chunks per row

template <bool kHeadMajor>
__global__ void stream_kv(const uint4* k, const uint4* v, const int32_t* table, int seq_len, int block_size,
                          int keys_per_split, float* sink) {
  const int head = blockIdx.x, split = blockIdx.y;
  const int begin = split * keys_per_split, end = min(seq_len, begin + keys_per_split);
  const int lane_row = threadIdx.x / kRowChunks, chunk = threadIdx.x % kRowChunks;
  const int rows_per_pass = blockDim.x / kRowChunks;
  float acc = 0.f;
  for (int t0 = begin; t0 < end; t0 += rows_per_pass * 4) {
    uint4 kv[8];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int t = t0 + u * rows_per_pass + lane_row;
      if (t < end) {
        const int64_t block = table[t / block_size], slot = t % block_size;
        const int64_t row = kHeadMajor ? (block * kKVHeads + head) * block_size + slot
                                       : (block * block_size + slot) * kKVHeads + head;
        kv[2 * u] = k[row * kRowChunks + chunk];
        kv[2 * u + 1] = v[row * kRowChunks + chunk];
      } else {
        kv[2 * u] = kv[2 * u + 1] = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < 8; ++u) acc += __uint_as_float(kv[u].x ^ kv[u].y ^ kv[u].z ^ kv[u].w);
  }
  if (acc == 12345.f) sink[blockIdx.x] = acc;  // practically never true; keeps the loads alive
}

}  // namespace

int main() {
  int sms = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  std::printf("%-10s %-7s %-6s %12s %12s %8s\n", "context", "block", "splits", "head-major", "token-major", "ratio");
  for (int block_size : {16, 64}) {
    for (int seq_len : {8192, 32768, 131072}) {
      const int blocks = seq_len / block_size;
      const size_t pool_bytes = size_t(blocks) * block_size * kKVHeads * kHeadDim * 2;
      const int copies = std::max<int>(2, int((size_t(512) << 20) / (2 * pool_bytes)) + 1);
      std::vector<DeviceBuffer> k, v;
      for (int c = 0; c < copies; ++c) {
        k.emplace_back(pool_bytes, "bench K");
        v.emplace_back(pool_bytes, "bench V");
        CUDA_CHECK(cudaMemset(k.back().get(), c + 1, pool_bytes));
        CUDA_CHECK(cudaMemset(v.back().get(), c + 2, pool_bytes));
      }
      std::vector<int32_t> table(blocks);
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), std::mt19937(1));
      DeviceBuffer d_table(table.size() * 4, "table"), sink(kKVHeads * 4, "sink");
      CUDA_CHECK(cudaMemcpy(d_table.get(), table.data(), table.size() * 4, cudaMemcpyHostToDevice));
      const int splits = std::max(1, std::min(seq_len / 256, 2 * sms / kKVHeads));
      const int keys_per_split = (seq_len + splits - 1) / splits;
      double gbps[2];
      for (int layout = 0; layout < 2; ++layout) {
        cudaEvent_t start, stop;
        CUDA_CHECK(cudaEventCreate(&start));
        CUDA_CHECK(cudaEventCreate(&stop));
        std::vector<float> ms;
        for (int run = 0; run < 40; ++run) {
          const int c = run % copies;
          CUDA_CHECK(cudaEventRecord(start));
          if (layout == 0) {
            stream_kv<true><<<dim3(kKVHeads, splits), 128>>>(k[c].as<uint4>(), v[c].as<uint4>(), d_table.as<int32_t>(),
                                                             seq_len, block_size, keys_per_split, sink.as<float>());
          } else {
            stream_kv<false><<<dim3(kKVHeads, splits), 128>>>(k[c].as<uint4>(), v[c].as<uint4>(), d_table.as<int32_t>(),
                                                              seq_len, block_size, keys_per_split, sink.as<float>());
          }
          CUDA_CHECK_LAUNCH();
          CUDA_CHECK(cudaEventRecord(stop));
          CUDA_CHECK(cudaEventSynchronize(stop));
          float t = 0;
          CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
          if (run >= 5) ms.push_back(t);
        }
        std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
        gbps[layout] = 2.0 * pool_bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
        CUDA_CHECK(cudaEventDestroy(start));
        CUDA_CHECK(cudaEventDestroy(stop));
      }
      std::printf("%-10d %-7d %-6d %9.0f GB/s %9.0f GB/s %7.2fx\n", seq_len, block_size, splits, gbps[0], gbps[1],
                  gbps[0] / gbps[1]);
    }
  }
  return 0;
}
