// Token selection from logits: what the sampler computes, exactly, and its CPU reference. The CUDA
// kernels (kernels/sampling.cuh) compute the same function with the same fp32 operations (the
// exponential included: sampling_exp2 below, not a math library's), so for a given draw the CPU and the
// GPU pick exactly the same id.
//
// The sampler, for one row of logits l (vocab) and SamplingParams:
//  0. temperature <= 0: greedy, id = argmax(l), the first index on ties (torch.argmax). Also taken when
//     no logit is finite or log2(e)/temperature overflows (the temperature -> 0 limit).
//  1. l_max = max l; key_i = sampling_order_key(l_i), which orders like l (dividing by a positive
//     temperature keeps that order, so the filters below select on the raw logits).
//  2. e_i = sampling_exp2((l_i - l_max) * s) with s = float(log2(e) / temperature), i.e.
//     exp((l_i - l_max) / T) to ~2e-7 relative, in [0, 1]; weight w_i = trunc(e_i * 2^32) as an integer: the most likely token weighs 2^32; a
//     token less likely than 2^-32 times the most likely weighs 0 and is never drawn. Integer weights make
//     every sum below exact, so the GPU result does not depend on summation order (deterministic).
//  3. top-k (0 < top_k < vocab): kappa = the top_k-th largest key counting duplicates; a token is kept iff
//     key >= kappa. Ties with the k-th token are all kept (HF removes `scores < topk(scores)[-1]`).
//  4. top-p (top_p < 1): W_k = sum of w over the tokens kept by 3; P = max(1, ceil(double(top_p) * W_k)).
//     A token is kept iff the weight of the kept tokens with a strictly larger key is < P. This is HF's
//     TopPLogitsWarper rule (remove a token when the probability mass after it, in ascending order, is
//     <= 1 - top_p) with tied tokens kept or removed together, and the most likely token always kept.
//  5. min-p (min_p > 0, clamped to 1): a token is kept iff e_i >= min_p, i.e. its probability is at
//     least min_p times the largest (HF's MinPLogitsWarper).
//  6. W = sum of w over the tokens kept by 3-5 (>= 2^32: the most likely token is always kept).
//     r = sampling_random(seed, step) (64 bits); t = floor(r * W / 2^64), uniform on [0, W);
//     id = the smallest index i (vocabulary order) whose inclusive running sum of kept weights is > t.
// So P(id = i) = w_i / W over the kept set, which is HF's renormalised softmax after the same filters,
// up to the 2^-32 weight quantisation. Steps 3-5 only compare keys with thresholds, so the order in
// which HF applies temperature, top-k, top-p, min-p gives the same kept set.
// Penalties come first, on the logits, before step 0 (vLLM's order; each is off at its neutral value):
//  P. for a token with history word h != 0 (kernels/sampling.h's SamplingHistory: in the context, or
//     generated before in this request): the repetition penalty r (HF's RepetitionPenaltyLogitsProcessor)
//     makes l = l < 0 ? l * r : l / r when the token is in the context or was generated; then a token
//     generated c > 0 times gets l = fmaf(-frequency, c, l) - presence (OpenAI's presence and frequency
//     penalties, over this request's generated tokens, as vLLM applies them). sampling_penalize below is
//     that function, used by both sides; greedy rows are penalised too.
// Logits are finite or -inf (a masked token); NaN logits are outside this contract.
#pragma once
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define FC_HOST_DEVICE __host__ __device__
#else
#define FC_HOST_DEVICE
#endif

namespace fc {

// Per row (sequence). A plain struct so that a device array of them can be refreshed with one copy per
// step (also under CUDA-graph replay).
struct SamplingParams {
  float temperature = 1.0f;  // <= 0: greedy
  int top_k = 0;             // <= 0 or >= vocab: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
  uint64_t seed = 0;
  uint64_t step = 0;         // e.g. the position of the token being chosen: one draw per (seed, step)
  float repetition_penalty = 1.0f;  // 1: off; > 0 (HF)
  float presence_penalty = 0.0f;    // 0: off (OpenAI, -2..2)
  float frequency_penalty = 0.0f;   // 0: off (OpenAI, -2..2)
};

// A sequence's penalty history: one 32-bit word per vocabulary id. Bit 31 is set when the id is in the
// sequence's context (the prompt, earlier turns); bits 0-30 count how often this request generated it
// (saturating). The sampler reads a row's words only when that row has a penalty, and then adds its
// chosen id to them.
constexpr uint32_t kHistoryInContext = 0x80000000u;
constexpr uint32_t kHistoryCountMask = 0x7fffffffu;

FC_HOST_DEVICE inline bool sampling_has_penalty(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

// Step P of the sampler for one logit whose history word is `history`.
FC_HOST_DEVICE inline float sampling_penalize(float x, uint32_t history, const SamplingParams& p) {
  if (history == 0) return x;
  if (p.repetition_penalty != 1.0f) x = x < 0.0f ? x * p.repetition_penalty : x / p.repetition_penalty;
  const uint32_t count = history & kHistoryCountMask;
  if (count != 0) x = fmaf(-p.frequency_penalty, static_cast<float>(count), x) - p.presence_penalty;
  return x;
}

// The history word after the id was generated once more.
FC_HOST_DEVICE inline uint32_t sampling_history_add(uint32_t history) {
  const uint32_t count = history & kHistoryCountMask;
  return (history & kHistoryInContext) | (count == kHistoryCountMask ? count : count + 1);
}

// Device scratch of the GPU sampler (kernels/sampling.cuh sample()): where the blocks sharing a row meet,
// 64 such rows of 28928 bytes (kernels/sampling.cu checks the size). Host-visible for engine/device_layout.
constexpr size_t kSampleWorkspaceBytes = 64 * 28928;

// Philox4x32-10 (Salmon et al., SC'11; the generator behind curand's Philox) with key = seed and
// counter = (step, 0): a counter-based generator, so any (seed, step) draw is computed directly, the
// same on the host and the device. Returns the first two 32-bit outputs as one 64-bit draw.
FC_HOST_DEVICE inline uint64_t sampling_random(uint64_t seed, uint64_t step) {
  uint32_t c0 = static_cast<uint32_t>(step), c1 = static_cast<uint32_t>(step >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return (static_cast<uint64_t>(c1) << 32) | c0;
}

// Unsigned key with the order of the float (negative values flipped, positive ones offset): radix
// select on keys is selection on values.
FC_HOST_DEVICE inline uint32_t sampling_order_key(float z) {
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(z);
#else
  static_assert(sizeof(float) == sizeof(uint32_t), "32-bit float");
  __builtin_memcpy(&bits, &z, sizeof bits);
#endif
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Step 2's log2(e) / temperature, rounded once to fp32 (infinite when the temperature underflows it).
FC_HOST_DEVICE inline float sampling_exp2_scale(float temperature) {
  return static_cast<float>(1.4426950408889634 / static_cast<double>(temperature));
}

// Step 2's 2^x for x <= 0, built only from operations IEEE 754 rounds exactly (rintf, fmaf, ldexpf), so
// host and device return the same bits (math libraries' exp2f differ in the last bit, which would let a
// draw near a bucket edge pick a neighbouring token on one side only). 2^x = 2^n * 2^f, n = rint(x),
// |f| <= 1/2; 2^f by its degree-7 Taylor polynomial in f*ln2 (truncation error < 5e-9, below fp32
// rounding). Below -64 (a weight under 2^-32, i.e. 0) and for NaN: 0.
FC_HOST_DEVICE inline float sampling_exp2(float x) {
  if (!(x > -64.0f)) return 0.0f;
  const float n = rintf(x);
  const float f = x - n;  // exact
  float p = 1.5252734e-05f;             // ln2^7 / 7!
  p = fmaf(p, f, 1.5403530e-04f);       // ln2^6 / 6!
  p = fmaf(p, f, 1.3333558e-03f);       // ln2^5 / 5!
  p = fmaf(p, f, 9.6181291e-03f);       // ln2^4 / 4!
  p = fmaf(p, f, 5.5504109e-02f);       // ln2^3 / 3!
  p = fmaf(p, f, 2.4022651e-01f);       // ln2^2 / 2!
  p = fmaf(p, f, 6.9314718e-01f);       // ln2
  p = fmaf(p, f, 1.0f);
  return ldexpf(p, static_cast<int>(n));
}

// Step 2's integer weight of e in [0, 1]: e * 2^32 is exact in fp32; `e > 0` is false for NaN.
FC_HOST_DEVICE inline uint64_t sampling_weight(float e) {
  return e > 0.0f ? static_cast<uint64_t>(e * 4294967296.0f) : 0;
}

struct SampleRefResult {
  int id = 0;
  bool greedy = false;
  uint64_t total = 0;         // W
  uint64_t target = 0;        // t
  uint64_t cum_before = 0;    // kept weight before `id`: id was chosen because cum_before <= t < cum_after
  uint64_t cum_after = 0;
  std::vector<uint64_t> weights;  // (vocab) kept weight of every token (0 for removed); empty when greedy
};

// The sampler above on one row with the 64-bit draw `random` (sampling_random(seed, step) on the GPU).
SampleRefResult sample_ref(const float* logits, int vocab, const SamplingParams& params, uint64_t random);

// Step P on one row in place: logits[i] = sampling_penalize(logits[i], history[i], params).
void penalize_ref(float* logits, int vocab, const uint32_t* history, const SamplingParams& params);
// A history (vocab words) for a sequence whose context holds `context` and whose request has generated
// `generated` so far (each counted once per occurrence); ids outside [0, vocab) are ignored.
std::vector<uint32_t> sampling_history_ref(const std::vector<int32_t>& context, int vocab,
                                           const std::vector<int32_t>& generated = {});


}  // namespace fc
