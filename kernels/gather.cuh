// Row gather: out[i, :] = in[rows[i], :] for bf16 rows (the hidden states whose logits are wanted).
#pragma once
#include "kernels/cuda_utils.cuh"

namespace fc {

// in (?, dim), out (n, dim), rows (n) on the device. dim % 8 == 0 and 16-byte aligned rows take the
// vector path; any dim works.
void gather_rows(const bf16* in, const int32_t* rows, int n, int dim, bf16* out, cudaStream_t stream);

}  // namespace fc
