// fc_bench_attention: prefill and decode attention at LLaMA 3.1 8B shapes (32 query heads, 8 kv heads,
// head_dim 128, block_size 16, shuffled block tables), against the two ceilings measured here:
//   - device-to-device copy bandwidth (bytes read + written) for decode,
//   - cuBLAS bf16 GEMM (8192^3) for prefill.
// Conventions (same in scripts/bench_attention_torch.py):
//   prefill FLOPs  = 4 * S * S / 2 * head_dim * q_heads   (causal: half of QK^T and PV, 2 FLOPs per FMA)
//   decode bytes   = batch * kv_len * kv_heads * head_dim * 2 (K and V) * 2 bytes   (the K/V read)
// Timing: CUDA events, warm-up first, median of the runs. Prefill: events around each launch. Decode:
// per call inside a CUDA graph of consecutive calls (launch overhead excluded, as in the engine's
// graph-captured decode step); the eager per-launch median is in the note. Decode rotates among enough
// copies of the cache that the bytes touched exceed 4x the L2 size (no L2-resident timings).
//   fc_bench_attention [--csv PATH] [--runs N] [--quick]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/attention_decode.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/cuda_utils.cuh"

namespace {

using fc::bf16;
using fc::DeviceBuffer;

constexpr int kQHeads = 32, kKVHeads = 8, kHeadDim = 128, kBlockSize = 16;

__global__ void fill_random_bf16(bf16* data, size_t count, uint32_t seed, float amplitude) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32) * 0x9E3779B9u;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    data[i] = __float2bfloat16(amplitude * (static_cast<float>(x) * 2.3283064e-10f * 2.f - 1.f));
  }
}

void fill(DeviceBuffer& buffer, uint32_t seed, float amplitude) {
  fill_random_bf16<<<1024, 256>>>(buffer.as<bf16>(), buffer.bytes() / 2, seed, amplitude);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cudaDeviceSynchronize());  // the benches run on their own non-blocking stream
}

DeviceBuffer upload(const std::vector<int32_t>& v) {
  DeviceBuffer b(v.size() * 4, "bench ints");
  CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return b;
}

// Median milliseconds of `runs` timed calls of fn(i, stream) after `warmup` untimed ones.
template <class Fn>
double median_ms(cudaStream_t stream, int warmup, int runs, Fn&& fn) {
  for (int i = 0; i < warmup; ++i) fn(i, stream);
  std::vector<cudaEvent_t> events(2 * runs);
  for (auto& e : events) CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(events[2 * i], stream));
    fn(warmup + i, stream);
    CUDA_CHECK(cudaEventRecord(events[2 * i + 1], stream));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> ms(runs);
  for (int i = 0; i < runs; ++i) {
    float t = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&t, events[2 * i], events[2 * i + 1]));
    ms[i] = t;
  }
  for (auto& e : events) CUDA_CHECK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  return ms[runs / 2];
}

// Milliseconds per call with launch overhead removed: `calls` consecutive calls captured in one CUDA
// graph (as the engine will run decode), median over `runs` replays, divided by `calls`.
template <class Fn>
double graph_ms_per_call(cudaStream_t stream, int calls, int runs, Fn&& fn) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) fn(i, stream);
  CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double ms = median_ms(stream, 2, runs, [&](int, cudaStream_t s) { CUDA_CHECK(cudaGraphLaunch(exec, s)); });
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return ms / calls;
}

struct Row {
  std::string kind, config;
  double us, value, ceiling;
  const char* unit;
  std::string note;
};

double measure_copy_gbs(cudaStream_t stream, int runs) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer a(bytes, "copy src"), b(bytes, "copy dst");
  fill(a, 1, 1.f);
  const double ms = median_ms(stream, 3, runs, [&](int, cudaStream_t s) {
    CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s));
  });
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

double measure_gemm_tflops(cudaStream_t stream, int runs) {
  const int n = 8192;
  DeviceBuffer a(size_t{2} * n * n, "gemm A"), b(size_t{2} * n * n, "gemm B"), c(size_t{2} * n * n, "gemm C");
  fill(a, 2, 1.f);
  fill(b, 3, 1.f);
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, stream));
  const float alpha = 1.f, beta = 0.f;
  const double ms = median_ms(stream, 3, runs, [&](int, cudaStream_t) {
    CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a.get(), CUDA_R_16BF, n, b.get(),
                              CUDA_R_16BF, n, &beta, c.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  CUBLAS_CHECK(cublasDestroy(handle));
  return 2.0 * n * n * n / (ms * 1e-3) / 1e12;
}

// A paged cache holding `copies` disjoint sets of `seqs` sequences of `len` tokens; block tables
// shuffled. Returns per-copy device block tables.
struct PagedCache {
  DeviceBuffer k, v;
  std::vector<DeviceBuffer> tables;
  int max_blocks = 0;
};

PagedCache make_cache(int seqs, int len, int copies, std::mt19937& rng) {
  PagedCache cache;
  cache.max_blocks = (len + kBlockSize - 1) / kBlockSize;
  const int64_t blocks = static_cast<int64_t>(copies) * seqs * cache.max_blocks;
  const size_t elems = static_cast<size_t>(blocks) * kKVHeads * kBlockSize * kHeadDim;
  cache.k = DeviceBuffer(elems * 2, "bench K pool");
  cache.v = DeviceBuffer(elems * 2, "bench V pool");
  fill(cache.k, 11, 1.f);
  fill(cache.v, 12, 1.f);
  std::vector<int32_t> physical(blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  for (int c = 0; c < copies; ++c) {
    std::vector<int32_t> table(physical.begin() + static_cast<int64_t>(c) * seqs * cache.max_blocks,
                               physical.begin() + static_cast<int64_t>(c + 1) * seqs * cache.max_blocks);
    cache.tables.push_back(upload(table));
  }
  return cache;
}

fc::PagedKVLayout bench_layout() {
  fc::PagedKVLayout layout;
  layout.block_size = kBlockSize;
  layout.kv_heads = kKVHeads;
  layout.head_dim = kHeadDim;
  return layout;
}

const fc::AttentionShape kShape{kQHeads, kKVHeads, kHeadDim, 0.08838834764831845f};
constexpr int64_t kQkvStride = static_cast<int64_t>(kQHeads + 2 * kKVHeads) * kHeadDim;

Row bench_prefill(cudaStream_t stream, int seq_len, int runs, double gemm_tflops, std::mt19937& rng,
                  fc::AttentionPrefillKernel kernel) {
  PagedCache cache = make_cache(1, seq_len, 1, rng);
  DeviceBuffer qkv(static_cast<size_t>(seq_len) * kQkvStride * 2, "bench qkv");
  fill(qkv, 21, 2.f);
  DeviceBuffer out(static_cast<size_t>(seq_len) * kQHeads * kHeadDim * 2, "bench out");
  DeviceBuffer cu = upload({0, seq_len}), lens = upload({seq_len});
  const fc::AttentionBatch batch{1, cu.as<int32_t>(), lens.as<int32_t>(), cache.tables[0].as<int32_t>(),
                                 cache.max_blocks};
  const double ms = median_ms(stream, 3, runs, [&](int, cudaStream_t s) {
    fc::attention_prefill(batch, seq_len, kShape, qkv.as<bf16>(), kQkvStride, cache.k.as<bf16>(), cache.v.as<bf16>(),
                          bench_layout(), out.as<bf16>(), static_cast<int64_t>(kQHeads) * kHeadDim, s, kernel);
  });
  const double flops = 4.0 * seq_len * seq_len / 2 * kHeadDim * kQHeads;
  const char* kind = "prefill";
  std::string note = fc::attention_prefill_wgmma_available(kHeadDim) ? "auto: wgmma, 128 rows/CTA" : "auto: mma.sync";
  if (kernel == fc::AttentionPrefillKernel::MmaSync) {
    kind = "pf-mma";
    note = "mma.sync kernel (the sm_80 path)";
  }
  return Row{kind, "B=1 S=" + std::to_string(seq_len), ms * 1e3, flops / (ms * 1e-3) / 1e12, gemm_tflops, "TFLOP/s",
             note};
}

Row bench_decode(cudaStream_t stream, int batch_size, int kv_len, int runs, double copy_gbs, size_t l2_bytes,
                 std::mt19937& rng, int forced_splits = 0) {
  const double bytes = static_cast<double>(batch_size) * kv_len * kKVHeads * kHeadDim * 2 * 2;
  const int copies = static_cast<int>(std::max(1.0, std::ceil(4.0 * l2_bytes / bytes)));
  PagedCache cache = make_cache(batch_size, kv_len, copies, rng);
  DeviceBuffer qkv(static_cast<size_t>(batch_size) * kQkvStride * 2, "bench qkv");
  fill(qkv, 31, 2.f);
  DeviceBuffer out(static_cast<size_t>(batch_size) * kQHeads * kHeadDim * 2, "bench out");
  std::vector<int32_t> cu(batch_size + 1), lens(batch_size, kv_len);
  std::iota(cu.begin(), cu.end(), 0);
  DeviceBuffer d_cu = upload(cu), d_lens = upload(lens);
  fc::AttentionDecodePlan plan = fc::attention_decode_plan(lens.data(), batch_size, 1, kShape, 64, 0, 1);  // as the engine plans
  if (forced_splits > 0) plan.num_splits = forced_splits;
  const size_t ws_bytes = fc::attention_decode_workspace_bytes(batch_size, kQHeads, kHeadDim, plan.num_splits);
  DeviceBuffer workspace(std::max<size_t>(ws_bytes, 16), "bench decode workspace");
  auto call = [&](int i, cudaStream_t s) {
    const fc::AttentionBatch batch{batch_size, d_cu.as<int32_t>(), d_lens.as<int32_t>(),
                                   cache.tables[i % copies].as<int32_t>(), cache.max_blocks};
    fc::attention_decode(batch, batch_size, kShape, qkv.as<bf16>(), kQkvStride, cache.k.as<bf16>(),
                         cache.v.as<bf16>(), bench_layout(), out.as<bf16>(), static_cast<int64_t>(kQHeads) * kHeadDim,
                         plan, workspace.get(), ws_bytes, s);
  };
  const double eager_ms = median_ms(stream, 5, runs, call);
  const double ms = graph_ms_per_call(stream, std::max(copies, 20), std::max(5, runs / 3), call);
  const std::string kv = kv_len % 1024 == 0 ? std::to_string(kv_len / 1024) + "k" : std::to_string(kv_len);
  char note[96];
  std::snprintf(note, sizeof note, "splits=%d, eager %.1f us = %.0f GB/s", plan.num_splits, eager_ms * 1e3,
                bytes / (eager_ms * 1e-3) / 1e9);
  return Row{"decode", "B=" + std::to_string(batch_size) + " KV=" + kv, ms * 1e3, bytes / (ms * 1e-3) / 1e9,
             copy_gbs, "GB/s", note};
}

int run(int argc, char** argv) {
  const char* csv_path = nullptr;
  int runs = 30;
  bool quick = false;
  std::vector<int> sweep;  // --decode-splits: batch-1 decode only, at each of these split counts
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--decode-splits") && i + 1 < argc) {
      for (const char* at = argv[++i]; *at != 0;) {
        sweep.push_back(std::max(1, std::atoi(at)));
        while (*at != 0 && *at != ',') ++at;
        if (*at == ',') ++at;
      }
      continue;
    }
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) {
      csv_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else {
      std::printf("usage: fc_bench_attention [--csv PATH] [--runs N] [--quick] [--decode-splits S,S,...]\n");
      return std::strcmp(argv[i], "--help") ? 2 : 0;
    }
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %.0f MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6);
  std::mt19937 rng(1234);
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double copy_gbs = measure_copy_gbs(stream, runs);
  const double gemm_tflops = measure_gemm_tflops(stream, std::min(runs, 10));
  std::printf("ceilings: device copy %.0f GB/s (read + write), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n", copy_gbs,
              gemm_tflops);

  std::vector<Row> rows;
  if (!sweep.empty()) {
    for (int len : {1024, 4096, 8192, 32768}) {
      for (int splits : sweep) rows.push_back(bench_decode(stream, 1, len, runs, copy_gbs, prop.l2CacheSize, rng, splits));
      rows.push_back(bench_decode(stream, 1, len, runs, copy_gbs, prop.l2CacheSize, rng));
    }
    quick = true;
  }
  const std::vector<int> prefill_lens = !sweep.empty() ? std::vector<int>{} : quick ? std::vector<int>{2048} : std::vector<int>{512, 2048, 8192};
  for (int s : prefill_lens) {
    rows.push_back(bench_prefill(stream, s, runs, gemm_tflops, rng, fc::AttentionPrefillKernel::Auto));
    rows.push_back(bench_prefill(stream, s, runs, gemm_tflops, rng, fc::AttentionPrefillKernel::MmaSync));
  }
  const std::vector<int> decode_lens = !sweep.empty() ? std::vector<int>{}
                                      : quick         ? std::vector<int>{32768}
                                                      : std::vector<int>{1024, 8192, 32768, 131072};
  for (int len : decode_lens) rows.push_back(bench_decode(stream, 1, len, runs, copy_gbs, prop.l2CacheSize, rng));
  if (sweep.empty()) rows.push_back(bench_decode(stream, 32, 4096, runs, copy_gbs, prop.l2CacheSize, rng));

  std::printf("\n%-8s %-16s %10s %16s %8s  %s\n", "kernel", "config", "time_us", "rate", "of_ceil", "note");
  for (const Row& r : rows) {
    std::printf("%-8s %-16s %10.1f %8.1f %-7s %7.1f%%  %s\n", r.kind.c_str(), r.config.c_str(), r.us, r.value, r.unit,
                100.0 * r.value / r.ceiling, r.note.c_str());
  }
  if (csv_path != nullptr) {
    FILE* f = std::fopen(csv_path, "w");
    if (f == nullptr) fc::fail("cannot write {}", csv_path);
    std::fprintf(f, "kernel,config,time_us,rate,unit,ceiling,note\n");
    std::fprintf(f, "ceiling,copy,0,%.1f,GB/s,0,\nceiling,gemm,0,%.1f,TFLOP/s,0,\n", copy_gbs, gemm_tflops);
    for (const Row& r : rows) {
      std::fprintf(f, "%s,%s,%.2f,%.2f,%s,%.1f,%s\n", r.kind.c_str(), r.config.c_str(), r.us, r.value, r.unit,
                   r.ceiling, r.note.c_str());
    }
    std::fclose(f);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fc_bench_attention: %s\n", e.what());
    return 1;
  }
}
