// One block per token. The block first computes the token's head_dim/2 (cos, sin) pairs into shared
// memory (one sincosf per frequency instead of one per head: 40x fewer for LLaMA 3.1 8B), then each
// thread rotates kVec consecutive pairs of one head (two 16-byte loads x[i..i+7], x[i+half..i+half+7])
// and copies V in 16-byte pieces. Q and K heads are adjacent in the row, so one loop walks both.
#include "kernels/rope.cuh"

#include "core/error.h"
#include "kernels/op_math.cuh"

namespace fc {
namespace {

struct KernelParams {
  bf16* q;          // head h at q + t*row_stride + h*head_dim; unused when !kRope
  bf16* k;          // kv head h at k + t*row_stride + h*head_dim
  const bf16* v;
  int64_t row_stride;
  int q_heads;      // 0 when !kRope
  int kv_heads;
  int head_dim;
  const int32_t* positions;
  const float* inv_freq;
  const int32_t* slot_mapping;
  bf16* k_pool;
  bf16* v_pool;
  int block_size;
};

template <int kVec>
struct Vec {
  float f[kVec];
  __device__ void load(const bf16* src) {
    if constexpr (kVec == 8) {
      unpack_bf16x8(*reinterpret_cast<const uint4*>(src), f);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) f[j] = __bfloat162float(src[j]);
    }
  }
  __device__ void store(bf16* dst) const {
    if constexpr (kVec == 8) {
      *reinterpret_cast<uint4*>(dst) = pack_bf16x8(f);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) dst[j] = __float2bfloat16_rn(f[j]);
    }
  }
};

// 16-byte (or scalar) copy without a round trip through float.
template <int kVec>
__device__ void copy_vec(const bf16* src, bf16* dst) {
  if constexpr (kVec == 8) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) dst[j] = src[j];
  }
}

template <int kVec, bool kRope>
__global__ void rope_kv_kernel(const __grid_constant__ KernelParams p) {
  extern __shared__ float cos_sin[];  // [half] cos, then [half] sin; only when kRope
  const int t = blockIdx.x;
  const int head_dim = p.head_dim, kv_heads = p.kv_heads;
  const PagedKVLayout layout{p.block_size, kv_heads, head_dim};
  const int half = head_dim / 2;
  const int64_t slot = kv_slot(p.slot_mapping, t);
  const int64_t row = static_cast<int64_t>(t) * p.row_stride;
  const int vecs_per_head = head_dim / kVec;

  if constexpr (kRope) {
    const int32_t position = p.positions[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      rope_cos_sin(position, p.inv_freq[i], cos_sin[i], cos_sin[half + i]);
    }
    __syncthreads();
    const int vecs_per_half = half / kVec;
    const int rope_items = (p.q_heads + kv_heads) * vecs_per_half;
    for (int it = threadIdx.x; it < rope_items; it += blockDim.x) {
      const int head = it / vecs_per_half;
      const int i0 = (it % vecs_per_half) * kVec;
      const bool is_k = head >= p.q_heads;
      bf16* x = is_k ? p.k + row + static_cast<int64_t>(head - p.q_heads) * head_dim
                     : p.q + row + static_cast<int64_t>(head) * head_dim;
      Vec<kVec> x1, x2, y1, y2;
      x1.load(x + i0);
      x2.load(x + i0 + half);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        rope_rotate(x1.f[j], x2.f[j], cos_sin[i0 + j], cos_sin[half + i0 + j], y1.f[j], y2.f[j]);
      }
      y1.store(x + i0);
      y2.store(x + i0 + half);
      if (is_k && slot >= 0) {
        bf16* dst = kv_pool_row(p.k_pool, layout, slot, head - p.q_heads);
        y1.store(dst + i0);
        y2.store(dst + i0 + half);
      }
    }
  } else if (slot >= 0) {
    const int k_items = kv_heads * vecs_per_head;
    for (int it = threadIdx.x; it < k_items; it += blockDim.x) {
      const int h = it / vecs_per_head, d0 = (it % vecs_per_head) * kVec;
      copy_vec<kVec>(p.k + row + static_cast<int64_t>(h) * head_dim + d0,
                     kv_pool_row(p.k_pool, layout, slot, h) + d0);
    }
  }
  if (slot < 0) return;
  const int v_items = kv_heads * vecs_per_head;
  for (int it = threadIdx.x; it < v_items; it += blockDim.x) {
    const int h = it / vecs_per_head, d0 = (it % vecs_per_head) * kVec;
    copy_vec<kVec>(p.v + row + static_cast<int64_t>(h) * head_dim + d0,
                   kv_pool_row(p.v_pool, layout, slot, h) + d0);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The one dispatch point: rotation on/off x vector width.
template <bool kRope>
void launch(const KernelParams& p, int n_tokens, cudaStream_t stream) {
  if (n_tokens == 0) return;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0) fail("rope/kv_append: head_dim {} must be positive and even", p.head_dim);
  if (p.slot_mapping != nullptr && p.block_size <= 0) fail("kv_append: block_size {} must be positive", p.block_size);
  // 16-byte vectors need every vector start aligned: half-heads of multiples of 8 elements, row strides of
  // multiples of 8, and aligned base pointers.
  const int unit = kRope ? p.head_dim / 2 : p.head_dim;
  bool vec = unit % 8 == 0 && p.row_stride % 8 == 0 && aligned16(p.k) && aligned16(p.v) &&
             (!kRope || aligned16(p.q));
  if (p.slot_mapping != nullptr) vec = vec && aligned16(p.k_pool) && aligned16(p.v_pool);
  const int threads = 256;
  const size_t smem = kRope ? sizeof(float) * p.head_dim : 0;
  if (vec) {
    rope_kv_kernel<8, kRope><<<n_tokens, threads, smem, stream>>>(p);
  } else {
    rope_kv_kernel<1, kRope><<<n_tokens, threads, smem, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_kv_append(const RopeKVParams& r, cudaStream_t stream) {
  const int64_t q_size = static_cast<int64_t>(r.q_heads) * r.head_dim;
  const int64_t kv_size = static_cast<int64_t>(r.kv_heads) * r.head_dim;
  if (r.row_stride < q_size + 2 * kv_size) {
    fail("rope_kv_append: row stride {} is shorter than Q+K+V ({} elements)", r.row_stride, q_size + 2 * kv_size);
  }
  const KernelParams p{r.qkv,       r.qkv + q_size, r.qkv + q_size + kv_size, r.row_stride,
                       r.q_heads,   r.kv_heads,     r.head_dim,               r.positions,
                       r.inv_freq,  r.slot_mapping, r.k_pool,                 r.v_pool,
                       r.block_size};
  launch<true>(p, r.n_tokens, stream);
}

void kv_append(const bf16* k, const bf16* v, int64_t row_stride, int n_tokens, const int32_t* slot_mapping,
               const PagedKVLayout& layout, bf16* k_pool, bf16* v_pool, cudaStream_t stream) {
  if (slot_mapping == nullptr) fail("kv_append: slot_mapping is null");
  // The kernel only reads k through this pointer when kRope is off; the cast keeps one params type.
  const KernelParams p{nullptr,          const_cast<bf16*>(k), v,      row_stride, 0,
                       layout.kv_heads,  layout.head_dim,      nullptr, nullptr,    slot_mapping,
                       k_pool,           v_pool,               layout.block_size};
  launch<false>(p, n_tokens, stream);
}

}  // namespace fc
