#include "kernels/gather.cuh"

namespace fc {

namespace {

__global__ void gather_rows_vec8(const uint4* in, const int32_t* rows, int dim8, uint4* out) {
  const int r = blockIdx.x;
  const uint4* src = in + static_cast<int64_t>(rows[r]) * dim8;
  for (int i = threadIdx.x; i < dim8; i += blockDim.x) out[static_cast<int64_t>(r) * dim8 + i] = src[i];
}

__global__ void gather_rows_scalar(const bf16* in, const int32_t* rows, int dim, bf16* out) {
  const int r = blockIdx.x;
  const bf16* src = in + static_cast<int64_t>(rows[r]) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[static_cast<int64_t>(r) * dim + i] = src[i];
}

}  // namespace

void gather_rows(const bf16* in, const int32_t* rows, int n, int dim, bf16* out, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = dim % 8 == 0 && (reinterpret_cast<uintptr_t>(in) % 16) == 0 &&
                   (reinterpret_cast<uintptr_t>(out) % 16) == 0;
  if (vec) {
    gather_rows_vec8<<<n, 128, 0, stream>>>(reinterpret_cast<const uint4*>(in), rows, dim / 8,
                                            reinterpret_cast<uint4*>(out));
  } else {
    gather_rows_scalar<<<n, 128, 0, stream>>>(in, rows, dim, out);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
