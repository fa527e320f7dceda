// fc_bench_gemv: fc::gemv (kernels/gemv.cuh) against cuBLASLt (fc::Gemm) at the LLaMA 3.1 8B decode
// shapes, in % of the copy bandwidth measured in the same run:
//   (a) per shape, one row: cuBLASLt, the register kernel and the bulk-copy kernel (sm_90);
//   (b) the weight part of one decode step (32 x [qkv, o, gate_up, down] + lm_head over 15 GB of distinct
//       weights, no attention) captured as one CUDA graph: cuBLASLt + separate norm/SwiGLU/add kernels,
//       the GEMV unfused, and the GEMV fused with the decode step's kernel table (engine/cuda_forward.cpp),
//       with and without PDL, against the floor (bytes / copy rate).
// fc_bench_gemv [qkv|o_proj|gate_up|down|lm_head]: (a) for that shape only (a short run to profile, e.g.
// ncu -k regex:gemv); fc_bench_gemv graph: (b) only.
// Timing: CUDA events, warm-up first, median of many batches; weights rotate over >= 1 GiB (never L2).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/bench/bench_util.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/rmsnorm.cuh"
#include "kernels/swiglu.cuh"

namespace fc {
namespace {

using bench::median;
using bench::copy_bandwidth_gbs;
using bench::random_bf16;
using bench::time_ms;

// Median replay time (ms) of the graph `record` captures on `s`.
double time_graph(cudaStream_t s, const std::function<void()>& record, int samples) {
  record();  // eager warm-up: plans, kernel attributes
  CUDA_CHECK(cudaStreamSynchronize(s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  record();
  CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 2; ++i) CUDA_CHECK(cudaGraphLaunch(exec, s));
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> t;
  for (int i = 0; i < samples; ++i) {
    CUDA_CHECK(cudaEventRecord(start, s));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaEventRecord(stop, s));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    t.push_back(ms);
  }
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return median(t);
}

struct Shape {
  const char* name;
  int in_dim, out_dim;
  GemvOutput out;
};

const char* kernel_label(GemvKernel k) { return k == GemvKernel::kRegisters ? "registers" : "bulk copy"; }

// (a) One shape, one row: % of the copy bandwidth of cuBLASLt and each GEMV kernel.
void bench_shape(const Shape& s, Gemm& gemm, double copy_gbs, const std::vector<GemvKernel>& kernels) {
  const size_t w_count = static_cast<size_t>(s.in_dim) * s.out_dim;
  const size_t w_bytes = w_count * 2;
  const int copies = static_cast<int>(std::max<size_t>(2, ((size_t{1} << 30) + w_bytes - 1) / w_bytes));
  std::vector<DeviceBuffer> weights;
  for (int c = 0; c < copies; ++c) weights.push_back(random_bf16(w_count, 100 + c, "weight copy"));
  DeviceBuffer x = random_bf16(static_cast<size_t>(s.in_dim), 7, "x");
  DeviceBuffer out(static_cast<size_t>(s.out_dim) * 4, "out");
  const double bytes = double(w_bytes) + 2.0 * s.in_dim + (s.out == GemvOutput::kF32 ? 4.0 : 2.0) * s.out_dim;
  auto pct = [&](double ms) { return 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs; };
  auto cublas = [&](int c) {
    const bf16* w = weights[c % copies].as<bf16>();
    if (s.out == GemvOutput::kF32) {
      gemm.matmul(x.as<bf16>(), w, out.as<float>(), 1, s.in_dim, s.out_dim, nullptr);
    } else {
      gemm.matmul(x.as<bf16>(), w, out.as<bf16>(), 1, s.in_dim, s.out_dim, nullptr);
    }
  };
  for (int c = 0; c < copies; ++c) cublas(c);
  std::printf("%-22s | %8.1f%%", s.name, pct(time_ms(20, std::max(copies, 10), cublas)));
  for (GemvKernel k : kernels) {
    auto call = [&](int c) {
      GemvArgs a;
      a.w = weights[c % copies].as<bf16>();
      a.in_dim = s.in_dim;
      a.out_dim = s.out_dim;
      a.x = x.as<bf16>();
      a.output = s.out;
      a.out = out.get();
      a.kernel = k;
      a.pdl = true;
      gemv(a, nullptr);
    };
    for (int c = 0; c < copies; ++c) call(c);
    std::printf(" | %8.1f%%", pct(time_ms(20, std::max(copies, 10), call)));
  }
  std::printf("\n");
  std::fflush(stdout);
}

// (b) The weight part of one decode step as one graph.
void bench_step_weights(Gemm& gemm, double copy_gbs, bool bulk) {
  const int layers = 32, hidden = 4096, inter = 14336, qkv = 6144, vocab = 128256;
  struct Layer {
    DeviceBuffer qkv, o, gate_up, down, norm1, norm2;
  };
  std::vector<Layer> L(layers);
  for (int l = 0; l < layers; ++l) {
    L[l].qkv = random_bf16(size_t(qkv) * hidden, 1000 + 10 * l, "qkv", 0.02f);
    L[l].o = random_bf16(size_t(hidden) * hidden, 1001 + 10 * l, "o", 0.02f);
    L[l].gate_up = random_bf16(size_t(2 * inter) * hidden, 1002 + 10 * l, "gate_up", 0.02f);
    L[l].down = random_bf16(size_t(hidden) * inter, 1003 + 10 * l, "down", 0.02f);
    L[l].norm1 = random_bf16(hidden, 1004 + 10 * l, "norm");
    L[l].norm2 = random_bf16(hidden, 1005 + 10 * l, "norm");
  }
  DeviceBuffer lm_head = random_bf16(size_t(vocab) * hidden, 9, "lm_head", 0.02f);
  DeviceBuffer final_norm = random_bf16(hidden, 10, "norm");
  DeviceBuffer residual(size_t(hidden) * 4, "residual"), normed(size_t(hidden) * 2, "normed"),
      qkv_out(size_t(qkv) * 2, "qkv out"), attn = random_bf16(size_t(hidden), 11, "attn"),
      proj(size_t(hidden) * 2, "proj"), gate_up_out(size_t(2 * inter) * 2, "gate_up out"),
      act(size_t(inter) * 2, "act"), logits(size_t(vocab) * 4, "logits");
  CUDA_CHECK(cudaMemset(residual.get(), 0, residual.bytes()));
  const double weight_bytes =
      double(layers) * 2 * (double(qkv) * hidden + double(hidden) * hidden + 3.0 * inter * hidden) +
      2.0 * vocab * hidden;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const double floor_ms = weight_bytes / (copy_gbs * 1e9) * 1e3;
  std::printf("\none step's weights (%.2f GB, no attention) as one CUDA graph; floor %.3f ms\n", weight_bytes / 1e9,
              floor_ms);
  std::printf("%-44s %9s %9s\n", "variant", "ms", "% floor");

  auto args = [&](const DeviceBuffer& w, int in, int outd, GemvOutput o, void* dst, GemvKernel k, bool pdl) {
    GemvArgs a;
    a.w = w.as<bf16>();
    a.in_dim = in;
    a.out_dim = outd;
    a.output = o;
    a.out = dst;
    a.kernel = k;
    a.pdl = pdl;
    return a;
  };
  auto norm_args = [&](const DeviceBuffer& w, const DeviceBuffer& norm, int outd, GemvOutput o, void* dst,
                       GemvKernel k, bool pdl) {
    GemvArgs a = args(w, hidden, outd, o, dst, k, pdl);
    a.input = GemvInput::kRmsNorm;
    a.residual = residual.as<float>();
    a.norm_weight = norm.as<bf16>();
    return a;
  };
  auto x_args = [&](const DeviceBuffer& w, int in, int outd, GemvOutput o, void* dst, const DeviceBuffer& x,
                    GemvKernel k, bool pdl) {
    GemvArgs a = args(w, in, outd, o, dst, k, pdl);
    a.x = x.as<bf16>();
    return a;
  };
  using K = GemvKernel;
  auto unfused = [&](bool use_gemv) {
    return [&, use_gemv] {
      auto mm = [&](const DeviceBuffer& x, const DeviceBuffer& w, int in, int outd, void* dst, bool f32) {
        if (use_gemv) {
          gemv(x_args(w, in, outd, f32 ? GemvOutput::kF32 : GemvOutput::kBf16, dst, x, K::kRegisters, true), s);
        } else if (f32) {
          gemm.matmul(x.as<bf16>(), w.as<bf16>(), static_cast<float*>(dst), 1, in, outd, s);
        } else {
          gemm.matmul(x.as<bf16>(), w.as<bf16>(), static_cast<bf16*>(dst), 1, in, outd, s);
        }
      };
      rmsnorm(residual.as<float>(), L[0].norm1.as<bf16>(), 1, hidden, 1e-5f, normed.as<bf16>(), s);
      for (int l = 0; l < layers; ++l) {
        mm(normed, L[l].qkv, hidden, qkv, qkv_out.get(), false);
        mm(attn, L[l].o, hidden, hidden, proj.get(), false);
        add_rmsnorm(residual.as<float>(), proj.as<bf16>(), L[l].norm2.as<bf16>(), 1, hidden, 1e-5f, normed.as<bf16>(), s);
        mm(normed, L[l].gate_up, hidden, 2 * inter, gate_up_out.get(), false);
        swiglu(gate_up_out.as<bf16>(), 1, inter, act.as<bf16>(), s);
        mm(act, L[l].down, inter, hidden, proj.get(), false);
        const DeviceBuffer& next = l + 1 < layers ? L[l + 1].norm1 : final_norm;
        add_rmsnorm(residual.as<float>(), proj.as<bf16>(), next.as<bf16>(), 1, hidden, 1e-5f, normed.as<bf16>(), s);
      }
      mm(normed, lm_head, hidden, vocab, logits.get(), true);
    };
  };
  // The fused step's GEMVs (the qkv's RoPE epilogue left out: no KV pool here), kernels per projection.
  auto fused = [&](K k_qkv, K k_gate_up, bool pdl) {
    return [&, k_qkv, k_gate_up, pdl] {
      for (int l = 0; l < layers; ++l) {
        gemv(norm_args(L[l].qkv, L[l].norm1, qkv, GemvOutput::kBf16, qkv_out.get(), k_qkv, pdl), s);
        gemv(x_args(L[l].o, hidden, hidden, GemvOutput::kAddF32, residual.get(), attn, K::kRegisters, pdl), s);
        gemv(norm_args(L[l].gate_up, L[l].norm2, 2 * inter, GemvOutput::kSwiglu, act.get(), k_gate_up, pdl), s);
        gemv(x_args(L[l].down, inter, hidden, GemvOutput::kAddF32, residual.get(), act, K::kRegisters, pdl), s);
      }
      gemv(norm_args(lm_head, final_norm, vocab, GemvOutput::kF32, logits.get(), K::kRegisters, pdl), s);
    };
  };
  auto row = [&](const char* name, const std::function<void()>& record) {
    const double ms = time_graph(s, record, 20);
    std::printf("%-44s %9.3f %8.1f%%\n", name, ms, 100.0 * floor_ms / ms);
    std::fflush(stdout);
  };
  row("cuBLASLt + separate norm/SwiGLU/add kernels", unfused(false));
  row("GEMV (registers) + separate kernels", unfused(true));
  row("GEMV fused, registers only, PDL", fused(K::kRegisters, K::kRegisters, true));
  if (bulk) {
    row("GEMV fused, decode table, no PDL", fused(K::kBulkCopy, K::kBulkCopy, false));
    row("GEMV fused, decode table, PDL (the step's)", fused(K::kBulkCopy, K::kBulkCopy, true));
  }
  CUDA_CHECK(cudaStreamDestroy(s));
}

}  // namespace
}  // namespace fc

int main(int argc, char** argv) {
  using namespace fc;
  const std::string only = argc > 1 ? argv[1] : "";
  if (only == "--help" || only == "-h") {
    std::printf("usage: fc_bench_gemv [qkv|o_proj|gate_up|down|lm_head|graph]\n");
    return 0;
  }
  if (cuda_device_count() == 0) {
    std::printf("SKIPPED: fc_bench_gemv needs an NVIDIA GPU\n");
    return 77;
  }
  try {
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double copy_gbs = copy_bandwidth_gbs();
    std::printf("== fc_bench_gemv: %s, %d SMs, copy %.0f GB/s (read + write) ==\n", prop.name,
                prop.multiProcessorCount, copy_gbs);
    const bool bulk = gemv_bulk_copy_available();
    std::vector<GemvKernel> kernels = {GemvKernel::kRegisters};
    if (bulk) kernels.push_back(GemvKernel::kBulkCopy);
    Gemm gemm;
    if (only != "graph") {
      const Shape shapes[] = {{"qkv     4096->6144", 4096, 6144, GemvOutput::kBf16},
                              {"o_proj  4096->4096", 4096, 4096, GemvOutput::kBf16},
                              {"gate_up 4096->28672", 4096, 28672, GemvOutput::kBf16},
                              {"down   14336->4096", 14336, 4096, GemvOutput::kBf16},
                              {"lm_head 4096->128256", 4096, 128256, GemvOutput::kF32}};
      std::printf("%-22s | %9s", "shape (one row)", "cuBLASLt");
      for (GemvKernel k : kernels) std::printf(" | %9s", kernel_label(k));
      std::printf("   (%% of copy bandwidth)\n");
      for (const Shape& s : shapes) {
        if (!only.empty() && std::string(s.name).rfind(only + " ", 0) != 0) continue;
        bench_shape(s, gemm, copy_gbs, kernels);
      }
      if (!only.empty()) return 0;
    }
    bench_step_weights(gemm, copy_gbs, bulk);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fc_bench_gemv: %s\n", e.what());
    return 1;
  }
  return 0;
}
