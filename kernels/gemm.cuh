// bf16 matrix products of the LLaMA forward through cuBLASLt: out = x @ w^T with w row-major [out, in] as
// Hugging Face stores it, fp32 accumulation. CPU reference: matmul_ref in kernels/elementwise.h.
//
// FP8 (matmul_fp8, sm_89+): x and w both e4m3 (x quantized per row by kernels/fp8_quant.cuh, w per output
// row), tensor-core products accumulated in fp32 (cuBLASLt's default: no FAST_ACCUM), and
// out[i][j] = bf16(x_scales[i] * w_scales[j] * sum_k x[i][k] w[j][k]). The scales are applied by cuBLASLt in
// its epilogue, in fp32 before the one bf16 rounding (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F on A and B,
// cuBLAS 12.9+ on Hopper). Should the heuristic offer no algorithm with outer-vector scales for a shape,
// that plan runs the unscaled product into `out` (bf16) and kernels/fp8_quant.cuh scale_rows_cols_bf16 applies
// the scales after it: a second bf16 rounding (relative 2^-9), far below the e4m3 quantization error
// (2^-4); Gemm::fp8_fallback_plans() counts such plans and the log says so once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "kernels/cuda_utils.cuh"

namespace fc {

enum class GemmMode {
  kOverwrite,   // out = x @ w^T
  kAccumulate,  // out += x @ w^T (beta = 1: fuses a residual add into the projection). Into a bf16 out
                // cuBLASLt rounds x @ w^T to bf16 before the add (two roundings); into fp32 it is exact
                // up to fp32 accumulation, which is the residual stream's case.
};

// Owns one cuBLASLt handle and one workspace. The first call for a shape (rows, in_dim, out_dim, output
// dtype, pointer alignments) builds the matmul descriptors and asks the heuristic for an algorithm;
// later calls reuse that plan and allocate nothing, so they can be captured into a CUDA graph (make the
// first call, or prepare(), before capturing).
// Not thread-safe, and all calls share the one workspace: use one Gemm per stream.
class Gemm {
 public:
  static constexpr size_t kDefaultWorkspaceBytes = size_t{32} << 20;
  explicit Gemm(size_t workspace_bytes = kDefaultWorkspaceBytes);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // x (rows, in_dim) bf16, w (out_dim, in_dim) bf16, out (rows, out_dim) bf16 or fp32; rows contiguous.
  // Every pointer 16-byte aligned (cuBLASLt's bf16 kernels need it; cudaMalloc gives 256).
  void matmul(const bf16* x, const bf16* w, bf16* out, int rows, int in_dim, int out_dim, cudaStream_t stream,
              GemmMode mode = GemmMode::kOverwrite);
  void matmul(const bf16* x, const bf16* w, float* out, int rows, int in_dim, int out_dim, cudaStream_t stream,
              GemmMode mode = GemmMode::kOverwrite);

  // FP8: x (rows, in_dim) e4m3 with x_scales (rows) fp32, w (out_dim, in_dim) e4m3 with w_scales (out_dim)
  // fp32 -> out (rows, out_dim) bf16 (above). in_dim a multiple of 16; x, w, out 16-byte aligned.
  void matmul_fp8(const uint8_t* x, const float* x_scales, const uint8_t* w, const float* w_scales, bf16* out,
                  int rows, int in_dim, int out_dim, cudaStream_t stream);
  size_t fp8_fallback_plans() const { return fp8_fallback_plans_; }

  // Builds the plan for a shape (with 256-byte aligned pointers, what cudaMalloc returns) without running it.
  void prepare(int rows, int in_dim, int out_dim, cudaDataType_t out_type);
  size_t plan_count() const { return plans_.size(); }
  size_t workspace_bytes() const { return workspace_.bytes(); }

  // Start-up autotuning for one shape: times up to `candidates` of the heuristic's algorithms on the
  // caller's buffers and keeps the fastest for every later call with this shape and these alignments.
  // Each candidate runs over `weights` in rotation (pass several matrices of the shape, e.g. every
  // layer's, so that L2 cannot hold them and decode shapes are timed as decode sees them). Overwrites
  // `out`; synchronizes `stream`, so never call it inside a graph capture or the decode loop. Returns
  // the chosen algorithm's time per call in microseconds.
  double tune(const bf16* x, const std::vector<const bf16*>& weights, bf16* out, int rows, int in_dim, int out_dim,
              cudaStream_t stream, int candidates = 16);
  double tune(const bf16* x, const std::vector<const bf16*>& weights, float* out, int rows, int in_dim, int out_dim,
              cudaStream_t stream, int candidates = 16);

 private:
  // (rows, in_dim, out_dim, out type, alignment of x, w, out in bytes capped at 256, input type)
  using Key = std::tuple<int, int, int, int, int, int, int, int>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool outer_vector_scales = false;  // FP8: cuBLASLt applies the row and column scales (else our epilogue)
  };
  Plan& plan(const Key& key);
  Key make_key(const void* x, const void* w, const void* out, cudaDataType_t out_type, int rows, int in_dim,
               int out_dim, cudaDataType_t in_type = CUDA_R_16BF) const;
  // Creates p's descriptor and layouts for the key (FP8 with or without outer-vector scale modes).
  void describe(Plan& p, const Key& key, bool outer_vector_scales);
  std::vector<cublasLtMatmulHeuristicResult_t> heuristics(const Plan& p, const Key& key, int count);
  double tune_impl(const void* x, const std::vector<const bf16*>& weights, void* out, cudaDataType_t out_type,
                   int rows, int in_dim, int out_dim, cudaStream_t stream, int candidates);
  void run(const void* x, const void* w, void* out, cudaDataType_t out_type, int rows, int in_dim, int out_dim,
           cudaStream_t stream, GemmMode mode);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
  size_t fp8_fallback_plans_ = 0;
};

}  // namespace fc
