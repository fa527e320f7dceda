// Row-major x (rows, in) @ w^T, w row-major (out, in), as one column-major cuBLASLt product with no
// transpose copy: column-major, x is X' (in x rows, ld in), w is W' (in x out, ld in) and the row-major
// output (rows, out) is C' (out x rows, ld out). C' = W'^T X', so A = W' with TRANSA = T, B = X' with
// TRANSB = N, m = out, n = rows, k = in. Decode (rows = 1..8) is then a skinny n, which cuBLASLt serves
// with its GEMV-like kernels.
#include "kernels/gemm.cuh"

#include <algorithm>
#include <limits>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "kernels/fp8_quant.cuh"

namespace fc {
namespace {

int alignment_bytes(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  int bytes = 256;
  while (bytes > 1 && address % bytes != 0) bytes /= 2;
  return bytes;
}

const char* type_name(cudaDataType_t t) {
  return t == CUDA_R_32F ? "fp32" : t == CUDA_R_8F_E4M3 ? "e4m3" : "bf16";
}

}  // namespace

Gemm::Gemm(size_t workspace_bytes) : workspace_(workspace_bytes, "cuBLASLt workspace") {
  // Zeroed once: cuBLASLt's split-K reduction reads parts of the workspace it has not written
  // (compute-sanitizer initcheck reported 4-byte reads in cublasLt::splitKreduce_kernel), so that they
  // read zeros rather than whatever the allocation held.
  if (workspace_.bytes() > 0) CUDA_CHECK(cudaMemset(workspace_.get(), 0, workspace_.bytes()));
  CUBLAS_CHECK(cublasLtCreate(&handle_));
}

Gemm::~Gemm() {
  // Destructors must not throw: statuses are ignored here.
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

Gemm::Key Gemm::make_key(const void* x, const void* w, const void* out, cudaDataType_t out_type, int rows,
                         int in_dim, int out_dim, cudaDataType_t in_type) const {
  if (rows < 0 || in_dim <= 0 || out_dim < 0) fail("Gemm: bad shape ({}, {}) @ ({}, {})^T", rows, in_dim, out_dim, in_dim);
  if (out_type != CUDA_R_16BF && out_type != CUDA_R_32F) fail("Gemm: output dtype must be bf16 or fp32");
  if (in_type == CUDA_R_8F_E4M3 && in_dim % 16 != 0) fail("Gemm: FP8 products need in_dim % 16 == 0 (got {})", in_dim);
  const Key key{rows, in_dim, out_dim, static_cast<int>(out_type), alignment_bytes(x), alignment_bytes(w),
                alignment_bytes(out), static_cast<int>(in_type)};
  if (std::get<4>(key) < 16 || std::get<5>(key) < 16 || std::get<6>(key) < 16) {
    fail("Gemm: pointers must be 16-byte aligned (x {}, w {}, out {})", x, w, out);
  }
  return key;
}

std::vector<cublasLtMatmulHeuristicResult_t> Gemm::heuristics(const Plan& p, const Key& key, int count) {
  const auto [rows, in_dim, out_dim, out_type_int, align_x, align_w, align_out, in_type_int] = key;
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t workspace_bytes = workspace_.bytes();
  const uint32_t a_align = align_w, b_align = align_x, c_align = align_out;
  std::vector<cublasLtMatmulHeuristicResult_t> results(count);
  int found = 0;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace_bytes, sizeof workspace_bytes);
  // The heuristic otherwise assumes 256-byte aligned pointers and may pick a kernel that needs them.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const uint32_t*> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_align},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_align},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c_align},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c_align}};
  for (const auto& [attr, value] : aligns) {
    if (status == CUBLAS_STATUS_SUCCESS) status = cublasLtMatmulPreferenceSetAttribute(pref, attr, value, sizeof *value);
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, count, results.data(), &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLAS_CHECK(status);
  results.resize(found);
  return results;
}

namespace {
void destroy_plan_parts(cublasLtMatmulDesc_t& op, cublasLtMatrixLayout_t& a, cublasLtMatrixLayout_t& b,
                        cublasLtMatrixLayout_t& c) {
  if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
  if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
  if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
  if (op != nullptr) cublasLtMatmulDescDestroy(op);
  op = nullptr;
  a = b = c = nullptr;
}
}  // namespace

void Gemm::describe(Plan& p, const Key& key, bool outer_vector_scales) {
  const auto [rows, in_dim, out_dim, out_type_int, align_x, align_w, align_out, in_type_int] = key;
  const auto out_type = static_cast<cudaDataType_t>(out_type_int);
  const auto in_type = static_cast<cudaDataType_t>(in_type_int);
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  p.outer_vector_scales = outer_vector_scales;
  if (outer_vector_scales) {
    // A = W' carries one scale per column of the output (M = out_dim), B = X' one per row (N = rows).
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode));
  }
  // Stored shapes (before the op): A = W' is in x out, B = X' is in x rows, C = D is out x rows.
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in_type, in_dim, out_dim, in_dim));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in_type, in_dim, rows, in_dim));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, out_type, out_dim, rows, out_dim));
}

Gemm::Plan& Gemm::plan(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;

  const auto [rows, in_dim, out_dim, out_type_int, align_x, align_w, align_out, in_type_int] = key;
  const auto out_type = static_cast<cudaDataType_t>(out_type_int);
  const auto in_type = static_cast<cudaDataType_t>(in_type_int);
  const bool fp8 = in_type == CUDA_R_8F_E4M3;
  Plan p;
  try {
    describe(p, key, fp8);
    std::vector<cublasLtMatmulHeuristicResult_t> results = heuristics(p, key, 1);
    if (results.empty() && fp8) {  // no outer-vector scaling for this shape: unscaled product + our epilogue
      destroy_plan_parts(p.op, p.a, p.b, p.c);
      describe(p, key, false);
      results = heuristics(p, key, 1);
      if (!results.empty() && fp8_fallback_plans_++ == 0) {
        spdlog::warn("cuBLASLt offers no FP8 algorithm with per-row scales for ({}, {}) @ ({}, {})^T: the scales "
                     "are applied by a separate kernel (one more bf16 rounding)", rows, in_dim, out_dim, in_dim);
      }
    }
    if (results.empty()) {
      fail("cuBLASLt has no algorithm for {} x ({}, {}) @ w^T ({}, {}) -> {} (alignments x {} w {} out {} bytes)",
           type_name(in_type), rows, in_dim, out_dim, in_dim, type_name(out_type), align_x, align_w, align_out);
    }
    p.algo = results[0].algo;
  } catch (...) {
    destroy_plan_parts(p.op, p.a, p.b, p.c);
    throw;
  }
  return plans_.emplace(key, p).first->second;
}

void Gemm::prepare(int rows, int in_dim, int out_dim, cudaDataType_t out_type) {
  if (out_type != CUDA_R_16BF && out_type != CUDA_R_32F) fail("Gemm: output dtype must be bf16 or fp32");
  plan(Key{rows, in_dim, out_dim, static_cast<int>(out_type), 256, 256, 256, static_cast<int>(CUDA_R_16BF)});
}

void Gemm::run(const void* x, const void* w, void* out, cudaDataType_t out_type, int rows, int in_dim,
               int out_dim, cudaStream_t stream, GemmMode mode) {
  if (rows == 0 || out_dim == 0) return;
  const Plan& p = plan(make_key(x, w, out, out_type, rows, in_dim, out_dim));
  const float alpha = 1.0f, beta = mode == GemmMode::kAccumulate ? 1.0f : 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c, &p.algo,
                              workspace_.get(), workspace_.bytes(), stream));
}

double Gemm::tune_impl(const void* x, const std::vector<const bf16*>& weights, void* out, cudaDataType_t out_type,
                       int rows, int in_dim, int out_dim, cudaStream_t stream, int candidates) {
  if (weights.empty()) fail("Gemm::tune needs at least one weight matrix");
  if (rows == 0 || out_dim == 0) return 0.0;
  const Key key = make_key(x, weights[0], out, out_type, rows, in_dim, out_dim);
  for (const bf16* w : weights) {
    if (alignment_bytes(w) < std::get<5>(key)) fail("Gemm::tune: weights must share the first one's alignment");
  }
  Plan& p = plan(key);
  const std::vector<cublasLtMatmulHeuristicResult_t> results = heuristics(p, key, candidates);
  const int calls = std::max<int>(20, static_cast<int>(weights.size()));
  const float alpha = 1.0f, beta = 0.0f;
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  double best_us = std::numeric_limits<double>::infinity();
  cublasLtMatmulAlgo_t best = p.algo;
  // Each candidate is timed twice (two batches of `calls`), keeping its faster batch: a one-off stall
  // of the machine then cannot decide the ranking.
  for (const cublasLtMatmulHeuristicResult_t& r : results) {
    if (r.state != CUBLAS_STATUS_SUCCESS) continue;
    auto launch = [&](int i) {
      return cublasLtMatmul(handle_, p.op, &alpha, weights[i % weights.size()], p.a, x, p.b, &beta, out, p.c, out,
                            p.c, &r.algo, workspace_.get(), workspace_.bytes(), stream);
    };
    if (launch(0) != CUBLAS_STATUS_SUCCESS) continue;  // an algorithm that refuses this problem is skipped
    double candidate_us = std::numeric_limits<double>::infinity();
    for (int batch = 0; batch < 2; ++batch) {
      CUDA_CHECK(cudaEventRecord(start, stream));
      for (int i = 0; i < calls; ++i) CUBLAS_CHECK(launch(i));
      CUDA_CHECK(cudaEventRecord(stop, stream));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      candidate_us = std::min(candidate_us, 1e3 * ms / calls);
    }
    if (candidate_us < best_us) {
      best_us = candidate_us;
      best = r.algo;
    }
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  p.algo = best;
  return best_us;
}

void Gemm::matmul_fp8(const uint8_t* x, const float* x_scales, const uint8_t* w, const float* w_scales, bf16* out,
                      int rows, int in_dim, int out_dim, cudaStream_t stream) {
  if (rows == 0 || out_dim == 0) return;
  if (x_scales == nullptr || w_scales == nullptr) fail("Gemm::matmul_fp8: row scales missing");
  Plan& p = plan(make_key(x, w, out, CUDA_R_16BF, rows, in_dim, out_dim, CUDA_R_8F_E4M3));
  const float alpha = 1.0f, beta = 0.0f;
  if (p.outer_vector_scales) {  // host-side attributes: set per call, captured into a graph as values
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scales,
                                                sizeof w_scales));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales,
                                                sizeof x_scales));
  }
  CUBLAS_CHECK(cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, out, p.c, out, p.c, &p.algo,
                              workspace_.get(), workspace_.bytes(), stream));
  if (!p.outer_vector_scales) scale_rows_cols_bf16(out, rows, out_dim, x_scales, w_scales, stream);
}

void Gemm::matmul(const bf16* x, const bf16* w, bf16* out, int rows, int in_dim, int out_dim, cudaStream_t stream,
                  GemmMode mode) {
  run(x, w, out, CUDA_R_16BF, rows, in_dim, out_dim, stream, mode);
}

void Gemm::matmul(const bf16* x, const bf16* w, float* out, int rows, int in_dim, int out_dim,
                  cudaStream_t stream, GemmMode mode) {
  run(x, w, out, CUDA_R_32F, rows, in_dim, out_dim, stream, mode);
}

double Gemm::tune(const bf16* x, const std::vector<const bf16*>& weights, bf16* out, int rows, int in_dim,
                  int out_dim, cudaStream_t stream, int candidates) {
  return tune_impl(x, weights, out, CUDA_R_16BF, rows, in_dim, out_dim, stream, candidates);
}

double Gemm::tune(const bf16* x, const std::vector<const bf16*>& weights, float* out, int rows, int in_dim,
                  int out_dim, cudaStream_t stream, int candidates) {
  return tune_impl(x, weights, out, CUDA_R_32F, rows, in_dim, out_dim, stream, candidates);
}

}  // namespace fc
