// Token embedding gather on the GPU: bf16 table rows widened into the fp32 residual stream.
// CPU reference: embedding_ref in kernels/elementwise.h.
#pragma once
#include <cstdint>

#include "kernels/cuda_utils.cuh"

namespace fc {

// out[i, :] = float(table[ids[i], :])     ids (n) int32 on the device; table (vocab, hidden) bf16;
// out (n, hidden) fp32, rows contiguous.
// An id outside [0, vocab) never reads outside the table: its whole output row is written as NaN, so the
// mistake poisons that sequence's logits visibly instead of silently producing a plausible token. The
// host validates ids before they are uploaded; this is the last line of defence, not the check.
void embedding(const int32_t* ids, int n, const bf16* table, int vocab, int hidden, float* out,
               cudaStream_t stream);

}  // namespace fc
