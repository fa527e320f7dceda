// fc::attention_prefill: argument checks, the kernel choice and the head_dim dispatch. The kernels:
// attention_prefill_mma.cu (mma.sync, sm_80+) and attention_prefill_wgmma.cu (wgmma, sm_90a); what they
// share: attention_prefill_common.cuh.
#include "kernels/attention_prefill_common.cuh"

namespace fc {
namespace {

using namespace fc::attn;

template <int kHeadDim>
void launch_prefill(const AttentionParams& params, int total_q, AttentionPrefillKernel choice, cudaStream_t stream) {
  // Auto picks the fastest kernel this GPU and build can run.
  if (choice == AttentionPrefillKernel::Auto) {
    choice = prefill_wgmma_usable<kHeadDim>() ? AttentionPrefillKernel::Wgmma : AttentionPrefillKernel::MmaSync;
  }
  if (choice == AttentionPrefillKernel::Wgmma) {
    launch_prefill_wgmma<kHeadDim>(params, total_q, stream);
  } else {
    launch_prefill_mma_sync<kHeadDim>(params, total_q, stream);
  }
}

}  // namespace

void attention_prefill(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                       int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                       bf16* out, int64_t out_row_stride, cudaStream_t stream, AttentionPrefillKernel kernel) {
  check_attention_args("attention_prefill", batch, shape, q, q_row_stride, k_pool, v_pool, layout, out,
                       out_row_stride);
  if (total_q < 0) fail("attention_prefill: total_q {} < 0", total_q);
  if (total_q == 0 || batch.num_seqs == 0) return;
  const AttentionParams params =
      attention_params(batch, shape, q, q_row_stride, k_pool, v_pool, layout, out, out_row_stride);
  FC_DISPATCH_HEAD_DIM(shape.head_dim, kHeadDim, [&] { launch_prefill<kHeadDim>(params, total_q, kernel, stream); });
}

bool attention_prefill_wgmma_available(int head_dim) {
  if (head_dim != 64 && head_dim != 128) return false;
  return FC_DISPATCH_HEAD_DIM(head_dim, kHeadDim, [&] { return prefill_wgmma_usable<kHeadDim>(); });
}

}  // namespace fc
