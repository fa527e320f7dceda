// fc_bench_gemv: fc::gemv (kernels/gemv.cuh) against cuBLASLt (fc::Gemm) at the LLaMA 3.1 8B decode
// shapes, in GB/s of bytes moved and % of the copy bandwidth measured in the same run:
//   (a) per shape and M = 1, 2, 4, 8: cuBLASLt, and gemv's register kernel and bulk-copy kernel at several
//       ring depths and CTAs per SM;
//   (b) the weight part of one decode step (32 x [qkv, o, gate_up, down] + lm_head over 15 GB of distinct
//       weights, no attention) captured as one CUDA graph, M = 1: cuBLASLt + separate norm/SwiGLU/add
//       kernels, gemv unfused, gemv fused with the same launch shapes as (a), against the floor (bytes /
//       copy rate).
// Timing: CUDA events, warm-up first, median of many batches; weights rotate over >= 1 GiB (never L2).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/bench/bench_util.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/gemv_chain.cuh"
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

}  // namespace
}  // namespace fc

int main(int argc, char** argv) {
  using namespace fc;
  // fc_bench_gemv [SHAPE]: with a shape name (qkv, o_proj, gate_up, down, lm_head) only that shape at
  // M = 1 with the default tuning (printed in the first GEMV column), and no part (b): a short run to
  // profile (ncu -k regex:gemv_kernel).
  // fc_bench_gemv graph: part (b) only.
  // fc_bench_gemv timeline: part (b) for the decode step's kernel mix and variants of it, then each one's
  // per-kernel timeline from %globaltimer stamps (GemvArgs::trace).
  const std::string only = argc > 1 ? argv[1] : "";
  const bool timeline_only = only == "timeline";
  const bool graph_only = only == "graph" || timeline_only;
  if (cuda_device_count() == 0) {
    std::printf("SKIPPED: fc_bench_gemv needs an NVIDIA GPU\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_gbs = copy_bandwidth_gbs();
  std::printf("== fc_bench_gemv: %s, %d SMs, copy %.0f GB/s (read + write) ==\n", prop.name, prop.multiProcessorCount,
              copy_gbs);

  // (a) per shape.
  const Shape shapes[] = {{"qkv     4096->6144", 4096, 6144, GemvOutput::kBf16},
                          {"o_proj  4096->4096", 4096, 4096, GemvOutput::kBf16},
                          {"gate_up 4096->28672", 4096, 28672, GemvOutput::kBf16},
                          {"down   14336->4096", 14336, 4096, GemvOutput::kBf16},
                          {"lm_head 4096->128256", 4096, 128256, GemvOutput::kF32}};
  Gemm gemm;
  // The GEMV launch shapes compared: the register kernel (GemvKernel::kRegisters) at 2 CTAs/SM, then the
  // per-warp (kBulkWarp) and CTA-cooperative (kBulkCta) bulk-copy kernels at several ring depths and CTAs
  // per SM. Rows per task: each kernel's default.
  struct Tuned {
    const char* label;
    GemvTuning tuning;
  };
  using K = GemvKernel;
  auto make = [](GemvKernel k, int slots, int ctas, bool late = false) {
    GemvTuning t;
    t.late_trigger = late;
    t.kernel = k;
    t.slots = slots;
    t.ctas_per_sm = ctas;
    return t;
  };
  const Tuned tunings[] = {{"reg c2", make(K::kRegisters, 3, 2)}, {"warp s4c1", make(K::kBulkWarp, 4, 1)},
                           {"warp s3c2", make(K::kBulkWarp, 3, 2)}, {"cta s3c1", make(K::kBulkCta, 3, 1)},
                           {"cta s3c2", make(K::kBulkCta, 3, 2)}, {"cta s4c1", make(K::kBulkCta, 4, 1)},
                           {"cta s6c1", make(K::kBulkCta, 6, 1)}, {"cta s2c2", make(K::kBulkCta, 2, 2)},
                           {"cta s3c2L", make(K::kBulkCta, 3, 2, true)}, {"cta s3c1L", make(K::kBulkCta, 3, 1, true)}};
  const int n_tunings = static_cast<int>(std::size(tunings));
  std::printf("%-22s %2s | %9s |", "shape", "M", "cuBLASLt");
  for (const Tuned& t : tunings) std::printf(" %9s", only.empty() ? t.label : "default");
  std::printf("  (%% of copy bandwidth; reg/warp/cta = kernel, sS = ring slots, cC = CTAs per SM)\n");
  for (const Shape& s : shapes) {
    if (graph_only || (!only.empty() && std::string(s.name).rfind(only + " ", 0) != 0)) continue;
    const size_t w_count = static_cast<size_t>(s.in_dim) * s.out_dim;
    const size_t w_bytes = w_count * 2;
    const int copies = static_cast<int>(std::max<size_t>(2, ((size_t{1} << 30) + w_bytes - 1) / w_bytes));
    std::vector<DeviceBuffer> weights;
    for (int c = 0; c < copies; ++c) weights.push_back(random_bf16(w_count, 100 + c, "weight copy"));
    DeviceBuffer x = random_bf16(static_cast<size_t>(8) * s.in_dim, 7, "x");
    DeviceBuffer out(static_cast<size_t>(8) * s.out_dim * 4, "out");
    for (int m : {1, 2, 4, 8}) {
      if (!only.empty() && m > 1) break;
      const double bytes = double(w_bytes) + 2.0 * m * s.in_dim + (s.out == GemvOutput::kF32 ? 4.0 : 2.0) * m * s.out_dim;
      auto pct = [&](double ms) { return 100.0 * bytes / (ms * 1e-3) / 1e9 / copy_gbs; };
      auto cublas = [&](int c) {
        const bf16* w = weights[c % copies].as<bf16>();
        if (s.out == GemvOutput::kF32) {
          gemm.matmul(x.as<bf16>(), w, out.as<float>(), m, s.in_dim, s.out_dim, nullptr);
        } else {
          gemm.matmul(x.as<bf16>(), w, out.as<bf16>(), m, s.in_dim, s.out_dim, nullptr);
        }
      };
      for (int c = 0; c < copies; ++c) cublas(c);
      const double t_cublas = time_ms(20, std::max(copies, 10), cublas);
      std::vector<double> t(n_tunings, 0.0);
      for (int v = 0; v < (only.empty() ? n_tunings : 1); ++v) {
        const GemvTuning tuning = only.empty() ? tunings[v].tuning : GemvTuning{};  // one shape: the default
        auto call = [&](int c) {
          GemvArgs a;
          a.w = weights[c % copies].as<bf16>();
          a.rows = m;
          a.in_dim = s.in_dim;
          a.out_dim = s.out_dim;
          a.x = x.as<bf16>();
          a.output = s.out;
          a.out = out.get();
          a.pdl = true;
          gemv(a, tuning, nullptr);
        };
        for (int c = 0; c < copies; ++c) call(c);
        t[v] = time_ms(20, std::max(copies, 10), call);
      }
      std::printf("%-22s %2d | %8.1f%% |", s.name, m, pct(t_cublas));
      for (int v = 0; v < (only.empty() ? n_tunings : 1); ++v) std::printf(" %8.1f%%", pct(t[v]));
      std::printf("\n");
      std::fflush(stdout);
    }
  }

  if (!only.empty() && !graph_only) return 0;
  // (b) the weight part of one decode step, M = 1.
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
  DeviceBuffer residual(size_t(8) * hidden * 4, "residual"), normed(size_t(8) * hidden * 2, "normed"),
      qkv_out(size_t(8) * qkv * 2, "qkv out"), attn = random_bf16(size_t(8) * hidden, 11, "attn"),
      proj(size_t(8) * hidden * 2, "proj"), gate_up_out(size_t(8) * 2 * inter * 2, "gate_up out"),
      act(size_t(8) * inter * 2, "act"), logits(size_t(8) * vocab * 4, "logits");
  CUDA_CHECK(cudaMemset(residual.get(), 0, residual.bytes()));
  DeviceBuffer chain_barrier(kGemvChainBarrierBytes, "chain barrier"), qkv_f32(size_t(qkv) * 4, "qkv f32");
  const size_t trace_per_chain = size_t(current_device_limits().sms) * 4 * 4 * 2;
  DeviceBuffer trace(size_t(layers) * trace_per_chain * 8, "chain trace");
  CUDA_CHECK(cudaMemset(chain_barrier.get(), 0, kGemvChainBarrierBytes));
  const double weight_bytes =
      double(layers) * 2 * (double(qkv) * hidden + double(hidden) * hidden + 3.0 * inter * hidden) +
      2.0 * vocab * hidden;
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("\none step's weights (%.2f GB, no attention) as one CUDA graph; floor %.3f ms\n", weight_bytes / 1e9,
              weight_bytes / (copy_gbs * 1e9) * 1e3);
  std::printf("%-40s %2s %9s %9s\n", "variant", "M", "ms", "% floor");
  for (int m : {1}) {
    auto args = [&](const DeviceBuffer& w, int in, int outd, GemvOutput o, void* dst, bool pdl) {
      GemvArgs a;
      a.w = w.as<bf16>();
      a.rows = m;
      a.in_dim = in;
      a.out_dim = outd;
      a.output = o;
      a.out = dst;
      a.pdl = pdl;
      return a;
    };
    auto norm_args = [&](const DeviceBuffer& w, const DeviceBuffer& norm, int outd, GemvOutput o, void* dst, bool pdl) {
      GemvArgs a = args(w, hidden, outd, o, dst, pdl);
      a.input = GemvInput::kRmsNorm;
      a.residual = residual.as<float>();
      a.norm_weight = norm.as<bf16>();
      return a;
    };
    auto bf_args = [&](const DeviceBuffer& w, int in, int outd, GemvOutput o, void* dst, const DeviceBuffer& x,
                       bool pdl) {
      GemvArgs a = args(w, in, outd, o, dst, pdl);
      a.x = x.as<bf16>();
      return a;
    };
    auto unfused = [&](bool use_gemv, bool pdl) {
      return [&, use_gemv, pdl] {
        auto mm = [&](const DeviceBuffer& x, const DeviceBuffer& w, int in, int outd, void* dst, bool f32) {
          if (use_gemv) {
            gemv(bf_args(w, in, outd, f32 ? GemvOutput::kF32 : GemvOutput::kBf16, dst, x, pdl), s);
          } else if (f32) {
            gemm.matmul(x.as<bf16>(), w.as<bf16>(), static_cast<float*>(dst), m, in, outd, s);
          } else {
            gemm.matmul(x.as<bf16>(), w.as<bf16>(), static_cast<bf16*>(dst), m, in, outd, s);
          }
        };
        rmsnorm(residual.as<float>(), L[0].norm1.as<bf16>(), m, hidden, 1e-5f, normed.as<bf16>(), s);
        for (int l = 0; l < layers; ++l) {
          mm(normed, L[l].qkv, hidden, qkv, qkv_out.get(), false);
          mm(attn, L[l].o, hidden, hidden, proj.get(), false);
          add_rmsnorm(residual.as<float>(), proj.as<bf16>(), L[l].norm2.as<bf16>(), m, hidden, 1e-5f, normed.as<bf16>(), s);
          mm(normed, L[l].gate_up, hidden, 2 * inter, gate_up_out.get(), false);
          swiglu(gate_up_out.as<bf16>(), m, inter, act.as<bf16>(), s);
          mm(act, L[l].down, inter, hidden, proj.get(), false);
          const DeviceBuffer& next = l + 1 < layers ? L[l + 1].norm1 : final_norm;
          add_rmsnorm(residual.as<float>(), proj.as<bf16>(), next.as<bf16>(), m, hidden, 1e-5f, normed.as<bf16>(), s);
        }
        mm(normed, lm_head, hidden, vocab, logits.get(), true);
      };
    };
    // One tuning for every projection, or `other` for all but projection `only_proj` (0 qkv, 1 o_proj,
    // 2 gate_up, 3 down, 4 lm_head), which gets `t`: what each fused projection contributes.
    auto fused_mix = [&](bool pdl, GemvTuning t, int only_proj, GemvTuning other) {
      return [&, pdl, t, only_proj, other] {
        auto pick = [&](int proj) { return only_proj < 0 || only_proj == proj ? t : other; };
        for (int l = 0; l < layers; ++l) {
          gemv(norm_args(L[l].qkv, L[l].norm1, qkv, GemvOutput::kBf16, qkv_out.get(), pdl), pick(0), s);
          gemv(bf_args(L[l].o, hidden, hidden, GemvOutput::kAddF32, residual.get(), attn, pdl), pick(1), s);
          gemv(norm_args(L[l].gate_up, L[l].norm2, 2 * inter, GemvOutput::kSwiglu, act.get(), pdl), pick(2), s);
          gemv(bf_args(L[l].down, inter, hidden, GemvOutput::kAddF32, residual.get(), act, pdl), pick(3), s);
        }
        gemv(norm_args(lm_head, final_norm, vocab, GemvOutput::kF32, logits.get(), pdl), pick(4), s);
      };
    };
    auto fused = [&](bool pdl, GemvTuning t) { return fused_mix(pdl, t, -1, t); };
    // The decode step's kernels (qkv, gate_up: per-warp bulk s3c2; o_proj, down, lm_head: registers), each
    // GEMV prefetching the first `mb` MB of the next one's weights into L2 (GemvArgs::prefetch).
    auto prefetched = [&](int mb) {
      return [&, mb] {
        std::vector<std::pair<GemvArgs, GemvTuning>> items;
        const GemvTuning warp = make(K::kBulkWarp, 3, 2), reg = GemvTuning{};
        for (int l = 0; l < layers; ++l) {
          items.push_back({norm_args(L[l].qkv, L[l].norm1, qkv, GemvOutput::kBf16, qkv_out.get(), true), warp});
          items.push_back({bf_args(L[l].o, hidden, hidden, GemvOutput::kAddF32, residual.get(), attn, true), reg});
          items.push_back({norm_args(L[l].gate_up, L[l].norm2, 2 * inter, GemvOutput::kSwiglu, act.get(), true), warp});
          items.push_back({bf_args(L[l].down, inter, hidden, GemvOutput::kAddF32, residual.get(), act, true), reg});
        }
        items.push_back({norm_args(lm_head, final_norm, vocab, GemvOutput::kF32, logits.get(), true), reg});
        for (size_t i = 0; i < items.size(); ++i) {
          const GemvArgs& next = items[(i + 1) % items.size()].first;
          if (mb > 0) {
            items[i].first.prefetch = next.w;
            items[i].first.prefetch_bytes = std::min(size_t(mb) << 20, size_t(next.out_dim) * next.in_dim * 2);
          }
          gemv(items[i].first, items[i].second, s);
        }
      };
    };
    // The decode step's layout with kernels/gemv_chain.cuh: qkv of layer 0 alone, then per layer one chain
    // o_proj -> gate_up -> down -> next qkv (fp32 out here: the bench has no RoPE) or lm_head.
    auto chained = [&](int slots, int barrier_thread = 1, bool fences = true, uint64_t* trace = nullptr) {
      return [&, slots, barrier_thread, fences, trace] {
        gemv(norm_args(L[0].qkv, L[0].norm1, qkv, GemvOutput::kBf16, qkv_out.get(), true), make(K::kBulkWarp, 3, 2), s);
        for (int l = 0; l < layers; ++l) {
          GemvChainArgs c;
          c.count = 4;
          c.slots = slots;
          c.barrier = chain_barrier.as<uint32_t>();
          c.barrier_thread = barrier_thread;
          c.fences = fences;
          c.trace = trace == nullptr ? nullptr : trace + size_t(l) * trace_per_chain;
          c.phases[0] = bf_args(L[l].o, hidden, hidden, GemvOutput::kAddF32, residual.get(), attn, true);
          c.phases[1] = norm_args(L[l].gate_up, L[l].norm2, 2 * inter, GemvOutput::kSwiglu, act.get(), true);
          c.phases[2] = bf_args(L[l].down, inter, hidden, GemvOutput::kAddF32, residual.get(), act, true);
          c.phases[3] = l + 1 < layers ? norm_args(L[l + 1].qkv, L[l + 1].norm1, qkv, GemvOutput::kF32, qkv_f32.get(), true)
                                       : norm_args(lm_head, final_norm, vocab, GemvOutput::kF32, logits.get(), true);
          gemv_chain(c, s);
        }
      };
    };
    if (timeline_only) {
      // The step's GEMVs as (args, tuning) items: kernel k[proj] per projection (0 reg, 1 warp, 2 cta), the
      // per-warp ones filling `pre[proj]` ring slots before griddepcontrol.wait (0 = all).
      struct Item {
        GemvArgs a;
        GemvTuning t;
        int proj;
      };
      const int count = 4 * layers + 1;
      const int sms = current_device_limits().sms;
      const size_t trace_stride = size_t(sms) * 4 * 4;
      DeviceBuffer tl(size_t(count) * trace_stride * 8, "gemv timeline");
      auto items_of = [&](std::array<int, 5> k, std::array<int, 5> pre = {0, 0, 0, 0, 0}, int carveout = -1) {
        std::vector<Item> items;
        auto tune = [&](int proj) {
          GemvTuning t = make(static_cast<GemvKernel>(k[proj]), 3, 2);
          t.prewait_slots = pre[proj];
          t.carveout = carveout;
          return t;
        };
        for (int l = 0; l < layers; ++l) {
          items.push_back({norm_args(L[l].qkv, L[l].norm1, qkv, GemvOutput::kBf16, qkv_out.get(), true), tune(0), 0});
          items.push_back({bf_args(L[l].o, hidden, hidden, GemvOutput::kAddF32, residual.get(), attn, true), tune(1), 1});
          items.push_back({norm_args(L[l].gate_up, L[l].norm2, 2 * inter, GemvOutput::kSwiglu, act.get(), true), tune(2), 2});
          items.push_back({bf_args(L[l].down, inter, hidden, GemvOutput::kAddF32, residual.get(), act, true), tune(3), 3});
        }
        items.push_back({norm_args(lm_head, final_norm, vocab, GemvOutput::kF32, logits.get(), true), tune(4), 4});
        return items;
      };
      auto record_of = [&](std::vector<Item> items, bool traced) {
        return [&, items, traced] {
          for (int i = 0; i < count; ++i) {
            GemvArgs a = items[i].a;
            if (traced) a.trace = tl.as<uint64_t>() + size_t(i) * trace_stride;
            gemv(a, items[i].t, s);
          }
        };
      };
      const std::array<int, 5> mix = {1, 0, 1, 0, 0}, warp = {1, 1, 1, 1, 1}, cta_down = {1, 1, 1, 2, 1},
                               reg_gate_up = {1, 0, 0, 0, 0};
      const struct {
        const char* name;
        std::vector<Item> items;
      } dvariants[] = {{"decode mix", items_of(mix)},
                       {"decode mix, qkv/gate_up 1 slot pre-wait", items_of(mix, {1, 0, 1, 0, 0})},
                       {"decode mix, qkv/gate_up 2 slots pre-wait", items_of(mix, {2, 0, 2, 0, 0})},
                       {"decode mix, gate_up on registers", items_of(reg_gate_up)},
                       {"decode mix, carveout 100% shared", items_of(mix, {0, 0, 0, 0, 0}, 100)},
                       {"decode mix, carveout 100%, 2 slots pre-wait", items_of(mix, {2, 0, 2, 0, 0}, 100)},
                       {"decode mix, carveout default again", items_of(mix, {0, 0, 0, 0, 0}, -1)},
                       {"all warp s3c2", items_of(warp)},
                       {"all warp s3c2, cta s3c2 for down", items_of(cta_down)},
                       {"decode mix (again)", items_of(mix)}};
      for (const auto& v : dvariants) {
        CUDA_CHECK(cudaMemsetAsync(residual.get(), 0, residual.bytes(), s));
        const double ms = time_graph(s, record_of(v.items, false), 15);
        std::printf("%-40s %2d %9.3f %8.1f%%\n", v.name, m, ms, 100.0 * weight_bytes / (copy_gbs * 1e9) * 1e3 / ms);
        std::fflush(stdout);
      }
      // Timelines: the graph replayed with every CTA's stamps; per projection, mean over layers 1..30 (us).
      const double proj_bytes[5] = {2.0 * qkv * hidden, 2.0 * hidden * hidden, 4.0 * inter * hidden,
                                    2.0 * inter * hidden, 2.0 * vocab * hidden};
      const char* names[5] = {"qkv", "o_proj", "gate_up", "down", "lm_head"};
      // One traced replay of `vitems`, its timeline printed.
      auto timeline = [&](const char* vname, const std::vector<Item>& vitems) {
        CUDA_CHECK(cudaMemsetAsync(tl.get(), 0, tl.bytes(), s));
        time_graph(s, record_of(vitems, true), 3);
        std::vector<uint64_t> t(size_t(count) * trace_stride);
        CUDA_CHECK(cudaMemcpy(t.data(), tl.get(), t.size() * 8, cudaMemcpyDeviceToHost));
        struct K {
          double entry_min, rel_min, rel_max, end_min, end_med, end_max;
          int grid;
        };
        std::vector<K> ks(count);
        for (int i = 0; i < count; ++i) {
          const uint64_t* k = t.data() + size_t(i) * trace_stride;
          const int grid = static_cast<int>(k[3] & 0xffffffffu);
          std::vector<double> ends;
          K r{1e300, 1e300, 0, 1e300, 0, 0, grid};
          for (int c = 0; c < grid; ++c) {
            r.entry_min = std::min(r.entry_min, double(k[c * 4]));
            r.rel_min = std::min(r.rel_min, double(k[c * 4 + 1]));
            r.rel_max = std::max(r.rel_max, double(k[c * 4 + 1]));
            r.end_min = std::min(r.end_min, double(k[c * 4 + 2]));
            r.end_max = std::max(r.end_max, double(k[c * 4 + 2]));
            ends.push_back(double(k[c * 4 + 2]));
          }
          r.end_med = ends.empty() ? 0 : median(ends);
          ks[i] = r;
        }
        std::printf("\ntimeline: %s (us; mean over layers 1..30; span = this kernel's last CTA end - the previous "
                    "one's; gap = previous last end -> this one's first CTA past its wait and staging; waits = first "
                    "to last CTA past it; run, median end: from the first CTA past it; spread: first to last CTA "
                    "end)\n", vname);
        std::printf("%-8s %5s %8s %8s %8s %8s %10s %10s %8s\n", "proj", "grid", "span", "gap", "waits", "run",
                    "median end", "spread", "% copy");
        double total = 0;
        for (int proj = 0; proj < 5; ++proj) {
          double span = 0, gap = 0, waits = 0, run = 0, med = 0, spread = 0, n = 0;
          int grid = 0;
          for (int i = 4; i < count; ++i) {
            const int pi = i + 1 == count ? 4 : i % 4;
            if (pi != proj || (proj < 4 && (i / 4 < 1 || i / 4 > 30))) continue;
            const K& a = ks[i - 1];
            const K& b = ks[i];
            if (a.grid == 0 || b.grid == 0) continue;  // a launch that left no stamps
            span += (b.end_max - a.end_max) / 1e3;
            gap += (b.rel_min - a.end_max) / 1e3;
            waits += (b.rel_max - b.rel_min) / 1e3;
            run += (b.end_max - b.rel_min) / 1e3;
            med += (b.end_med - b.rel_min) / 1e3;
            spread += (b.end_max - b.end_min) / 1e3;
            grid = b.grid;
            n += 1;
          }
          if (n == 0) continue;
          total += span / n * (proj == 4 ? 1 : 32);
          std::printf("%-8s %5d %8.2f %8.2f %8.2f %8.2f %10.2f %10.2f %7.1f%%\n", names[proj], grid, span / n, gap / n,
                      waits / n, run / n, med / n, spread / n, 100.0 * proj_bytes[proj] / (span / n * 1e-6) / (copy_gbs * 1e9));
        }
        std::printf("sum of spans (32 layers + lm_head) %.3f ms; first kernel entry to last end %.3f ms\n", total / 1e3,
                    (ks[count - 1].end_max - ks[0].entry_min) / 1e6);
        // Per SM (%smid): how long its CTAs of qkv, gate_up and down run (last CTA end on the SM - the kernel's first
        // CTA past its wait), layers 1..15 and 16..30 apart; whether the same SMs are slow in both halves.
        for (int proj : {0, 2, 3}) {
          std::vector<double> sum[2], cnt[2];
          for (int h = 0; h < 2; ++h) {
            sum[h].assign(sms, 0.0);
            cnt[h].assign(sms, 0.0);
          }
          std::vector<int> ctas_on(sms, 0);
          for (int l = 1; l <= 30; ++l) {
            const int i = 4 * l + proj;
            const uint64_t* k = t.data() + size_t(i) * trace_stride;
            const int grid = static_cast<int>(k[3] & 0xffffffffu);
            std::vector<double> sm_end(sms, 0.0);
            std::vector<int> on(sms, 0);
            for (int c = 0; c < grid; ++c) {
              const int sm = static_cast<int>(k[c * 4 + 3] >> 32);
              if (sm < 0 || sm >= sms) continue;
              sm_end[sm] = std::max(sm_end[sm], double(k[c * 4 + 2]) - ks[i].rel_min);
              ++on[sm];
            }
            for (int sm = 0; sm < sms; ++sm) {
              if (on[sm] == 0) continue;
              sum[l > 15][sm] += sm_end[sm] / 1e3;
              cnt[l > 15][sm] += 1;
              ctas_on[sm] = std::max(ctas_on[sm], on[sm]);
            }
          }
          std::vector<std::pair<double, int>> order;
          std::vector<double> a, b;
          for (int sm = 0; sm < sms; ++sm) {
            if (cnt[0][sm] == 0 || cnt[1][sm] == 0) continue;
            a.push_back(sum[0][sm] / cnt[0][sm]);
            b.push_back(sum[1][sm] / cnt[1][sm]);
            order.push_back({(a.back() + b.back()) / 2, sm});
          }
          if (a.size() < 3) continue;
          auto mean = [](const std::vector<double>& v) {
            double m = 0;
            for (double x : v) m += x;
            return m / v.size();
          };
          const double ma = mean(a), mb = mean(b);
          double sab = 0, saa = 0, sbb = 0;
          for (size_t j = 0; j < a.size(); ++j) {
            sab += (a[j] - ma) * (b[j] - mb);
            saa += (a[j] - ma) * (a[j] - ma);
            sbb += (b[j] - mb) * (b[j] - mb);
          }
          std::sort(order.begin(), order.end());
          std::printf("  %s per SM (us, mean over layers): fastest", names[proj]);
          for (size_t j = 0; j < 4 && j < order.size(); ++j) {
            std::printf(" sm%d %.1f (%d)", order[j].second, order[j].first, ctas_on[order[j].second]);
          }
          std::printf("; slowest");
          for (size_t j = order.size() >= 6 ? order.size() - 6 : 0; j < order.size(); ++j) {
            std::printf(" sm%d %.1f (%d)", order[j].second, order[j].first, ctas_on[order[j].second]);
          }
          std::printf("; layers 1-15 vs 16-30 across SMs: r = %.2f\n", sab / std::sqrt(saa * sbb + 1e-30));
        }
      };
      for (const auto& v : dvariants) timeline(v.name, v.items);
      CUDA_CHECK(cudaStreamDestroy(s));
      return 0;
    }
    const struct {
      const char* name;
      std::function<void()> record;
    } variants[] = {{"decode mix, no prefetch", prefetched(0)},
                    {"decode mix, prefetch 4 MB", prefetched(4)},
                    {"decode mix, prefetch 8 MB", prefetched(8)},
                    {"decode mix, prefetch 16 MB", prefetched(16)},
                    {"decode mix, prefetch 24 MB", prefetched(24)},
                    {"decode mix, prefetch 32 MB", prefetched(32)},
                    {"decode mix, no prefetch (again)", prefetched(0)},
                    {"chain s3", chained(3)},
                    {"chain s2", chained(2)},
                    {"chain s3, barrier by thread 0", chained(3, 0)},
                    {"chain s3, no extra fences", chained(3, 1, false)},
                    {"cuBLASLt + norm/swiglu/add kernels", unfused(false, false)},
                    {"gemv unfused, no PDL", unfused(true, false)},
                    {"gemv unfused, PDL", unfused(true, true)},
                    {"gemv fused, no PDL (default)", fused(false, GemvTuning{})},
                    {"gemv fused, PDL (default)", fused(true, GemvTuning{})},
                    {"fused, PDL, reg c2", fused(true, make(K::kRegisters, 3, 2))},
                    {"fused, PDL, warp s4c1", fused(true, make(K::kBulkWarp, 4, 1))},
                    {"fused, PDL, warp s3c2", fused(true, make(K::kBulkWarp, 3, 2))},
                    {"fused, PDL, cta s3c1", fused(true, make(K::kBulkCta, 3, 1))},
                    {"fused, PDL, cta s3c2", fused(true, make(K::kBulkCta, 3, 2))},
                    {"fused, PDL, cta s4c1", fused(true, make(K::kBulkCta, 4, 1))},
                    {"fused, PDL, cta s6c1", fused(true, make(K::kBulkCta, 6, 1))},
                    {"fused, PDL, cta s2c2", fused(true, make(K::kBulkCta, 2, 2))},
                    {"fused, PDL late, cta s3c2", fused(true, make(K::kBulkCta, 3, 2, true))},
                    {"fused, PDL late, cta s2c2", fused(true, make(K::kBulkCta, 2, 2, true))},
                    {"fused, PDL late, cta s3c1", fused(true, make(K::kBulkCta, 3, 1, true))},
                    {"fused, PDL late, cta s4c1", fused(true, make(K::kBulkCta, 4, 1, true))},
                    {"fused, PDL late, warp s3c2", fused(true, make(K::kBulkWarp, 3, 2, true))},
                    {"fused, no PDL, cta s3c1", fused(false, make(K::kBulkCta, 3, 1))},
                    {"fused, no PDL, warp s3c2", fused(false, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s3c2 for qkv", fused_mix(true, make(K::kBulkCta, 3, 2), 0, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s3c2 for o_proj", fused_mix(true, make(K::kBulkCta, 3, 2), 1, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s3c2 for gate_up", fused_mix(true, make(K::kBulkCta, 3, 2), 2, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s3c2 for down", fused_mix(true, make(K::kBulkCta, 3, 2), 3, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s3c2 for lm_head", fused_mix(true, make(K::kBulkCta, 3, 2), 4, make(K::kBulkWarp, 3, 2))},
                    {"warp s3c2 + cta s2c2 for o_proj", fused_mix(true, make(K::kBulkCta, 2, 2), 1, make(K::kBulkWarp, 3, 2))}};
    for (const auto& v : variants) {
      CUDA_CHECK(cudaMemsetAsync(residual.get(), 0, residual.bytes(), s));
      const double ms = time_graph(s, v.record, 15);
      std::printf("%-40s %2d %9.3f %8.1f%%\n", v.name, m, ms, 100.0 * weight_bytes / (copy_gbs * 1e9) * 1e3 / ms);
      std::fflush(stdout);
    }
    // A timeline of the chained step (eager launches, PDL): per phase, averaged over layers 1..30.
    for (int slots : {3, 2}) {
      chained(slots, 1, true, trace.as<uint64_t>())();  // warm
      chained(slots, 1, true, trace.as<uint64_t>())();
      CUDA_CHECK(cudaStreamSynchronize(s));
      std::vector<uint64_t> t(size_t(layers) * trace_per_chain);
      CUDA_CHECK(cudaMemcpy(t.data(), trace.get(), t.size() * 8, cudaMemcpyDeviceToHost));
      const int grid = current_device_limits().sms;
      auto at = [&](int l, int cta, int ph, int point, int which) {
        return double(t[size_t(l) * trace_per_chain + ((size_t(cta) * 4 + ph) * 4 + point) * 2 + which]);
      };
      std::printf("\nchain s%d timeline (us; mean over CTAs and layers 1..30; clock64 durations at 1.98 GHz)\n", slots);
      std::printf("%-8s %10s %10s %10s %10s %12s %12s\n", "phase", "barrier", "stage", "work", "work max",
                  "done spread", "release->last");
      const char* names[4] = {"o_proj", "gate_up", "down", "qkv"};
      for (int ph = 0; ph < 4; ++ph) {
        double wait = 0, stage = 0, work = 0, work_max = 0, spread = 0, critical = 0;
        for (int l = 1; l < layers - 1; ++l) {
          double done_min = 1e300, done_max = 0, release_max = 0;
          for (int cta = 0; cta < grid; ++cta) {
            wait += (at(l, cta, ph, 1, 1) - at(l, cta, ph, 0, 1)) / 1980.0;
            stage += (at(l, cta, ph, 2, 1) - at(l, cta, ph, 1, 1)) / 1980.0;
            const double w = (at(l, cta, ph, 3, 1) - at(l, cta, ph, 2, 1)) / 1980.0;
            work += w;
            work_max = std::max(work_max, w);
            done_min = std::min(done_min, at(l, cta, ph, 3, 0));
            done_max = std::max(done_max, at(l, cta, ph, 3, 0));
            release_max = std::max(release_max, at(l, cta, ph, 1, 0));
          }
          spread += (done_max - done_min) / 1e3;
          critical += (done_max - release_max) / 1e3;
        }
        const double n = double(layers - 2) * grid, nl = layers - 2;
        std::printf("%-8s %10.2f %10.2f %10.2f %10.2f %12.2f %12.2f\n", names[ph], wait / n, stage / n, work / n,
                    work_max, spread / nl, critical / nl);
      }
      double gap = 0, span = 0;
      for (int l = 1; l < layers - 1; ++l) {
        double end_prev = 0, start_min = 1e300, end_max = 0;
        for (int cta = 0; cta < grid; ++cta) {
          end_prev = std::max(end_prev, at(l - 1, cta, 3, 3, 0));
          start_min = std::min(start_min, at(l, cta, 0, 0, 0));
          end_max = std::max(end_max, at(l, cta, 3, 3, 0));
        }
        gap += (start_min - end_prev) / 1e3;
        span += (end_max - start_min) / 1e3;
      }
      std::printf("chain kernel: %.2f us from its first CTA's start to its last CTA's end; previous chain's end to "
                  "this one's first start %.2f us (layers 1..30)\n", span / (layers - 2), gap / (layers - 2));
    }
  }
  CUDA_CHECK(cudaStreamDestroy(s));
  return 0;
}
