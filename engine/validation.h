// `flashcore validate`: run a backend over a prompt two ways (one prefill; prefix + token-by-token
// decode through the KV cache), compare the logits with transformers' fp32 logits and judge them.
//
// The verdict rules (docs/VALIDATION.md gives the measurements behind each number):
//  - CPU (fp32): tight absolute bounds; every clear-gap position's top-1 must agree.
//  - GPU with transformers' own bf16 logits in the reference file (`logits_bf16`): the engine's relative
//    error and mean KL against fp32 each within 1.5x of HF bf16's (HF bf16 vs HF fp32); worst cosine and
//    NaN/Inf as sanity bounds.
//  - GPU without them: absolute bounds that a correct bf16 engine meets on long, deep models (rel 0.15,
//    KL 2e-2) and that weight-layout bugs exceed by 3x or more; top-1 agreement as a rate (>= 98% of the
//    positions with a clear gap, one miss forgiven), never a single-position rule.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace fc {

struct LogitComparison {
  int positions = 0;
  double max_abs_err = 0;
  double rel_err = 0;        // ||ours - ref|| / ||ref|| over all positions
  double min_cosine = 1;     // worst position
  double mean_kl = 0;        // mean over positions of KL(softmax(ref) || softmax(ours)), nats
  int top1_checked = 0;      // positions whose reference top-2 gap is clear (see ValidationTolerance)
  int top1_agree = 0;        // ... of which our argmax equals the reference's
  bool has_nan = false;
};

struct ValidationTolerance {
  double max_rel_err;
  double min_cosine;
  double clear_gap;  // top-1 is checked where the reference's top-2 logits differ by more than this
  double max_mean_kl;
  // ... and by more than this many times that position's rms logit error (0: the absolute gap alone).
  // A flip needs the two logits' errors to differ by the gap; at 4x the rms error that is rare for
  // rounding noise at any logit scale, while a fixed gap (0.05) is inside the noise of a deep model
  // whose logits are small (random 8B: 29 of 448 positions flipped at gap > 0.05).
  double clear_gap_rms = 0;
  double min_top1_rate = 1;  // of the checked positions, at least this fraction agree ...
  int top1_free_misses = 0;  // ... not counting this many disagreements
  // > 0 and the reference carries HF's bf16 logits: rel_err and mean KL within this factor of HF bf16's
  // replace max_rel_err and max_mean_kl (top-1 is then reported, not judged).
  double max_ratio_to_hf_bf16 = 0;
};
// CPU (fp32): rel 1e-4, cosine 0.99999, gap 1e-3, KL 1e-6, every checked top-1.
// GPU (bf16 weights and activations, fp32 accumulation): rel 0.15, cosine 0.98, KL 2e-2, top-1 >= 98%
// where the gap > max(0.05, 4 x rms error), one miss free; with HF bf16 logits: 1.5x HF bf16's error.
ValidationTolerance default_tolerance(DeviceKind device);
// With WeightFormat::kFp8 (--quantize fp8) the reference is the unquantized model's, so the bounds are those
// of FP8 weights on any device: rel 0.2, cosine 0.97, KL 2e-2, top-1 as on the GPU; no HF bf16 ratio (e4m3
// rounds 16x coarser than bf16);
// kAsStored: default_tolerance(device).
ValidationTolerance default_tolerance(DeviceKind device, WeightFormat weights);

// compare_logits with only the absolute clear gap (clear_gap_rms = 0).
LogitComparison compare_logits(const float* ours, const float* ref, int rows, int vocab, double clear_gap);
LogitComparison compare_logits(const float* ours, const float* ref, int rows, int vocab,
                               const ValidationTolerance& tolerance);

// The verdict on one path (or one set of logits).
struct PathVerdict {
  LogitComparison ours;          // ours against the fp32 reference
  bool has_hf_bf16 = false;      // judged against HF bf16's error (the ratios below are set)
  LogitComparison hf_bf16;       // HF bf16 against the fp32 reference
  double rel_ratio = 0, kl_ratio = 0;  // ours / HF bf16's
  bool ok = false;
  std::string failed;            // the checks that failed, "; "-separated ("" when ok)
};
// `hf_bf16` may be null (no bf16 logits, or a CPU tolerance: max_ratio_to_hf_bf16 == 0).
PathVerdict judge(const LogitComparison& ours, const LogitComparison* hf_bf16, const ValidationTolerance& tolerance);
// Compares and judges: `ours`, `ref_fp32` and `ref_bf16` (null when absent) are (rows, vocab).
PathVerdict judge_logits(const float* ours, const float* ref_fp32, const float* ref_bf16, int rows, int vocab,
                         const ValidationTolerance& tolerance);
// judge(c, nullptr, t).ok: the absolute rules.
bool within(const LogitComparison& c, const ValidationTolerance& t);

// A reference file: input_ids I64 [N], logits F32 [N, vocab] (HF fp32), optional logits_bf16 [N, vocab]
// (HF bf16, stored F32 or BF16; empty when absent).
struct ValidationReference {
  std::vector<int32_t> ids;
  std::vector<float> logits;       // (N, vocab)
  std::vector<float> logits_bf16;  // (N, vocab) or empty
};
// Throws fc::Error naming the file and the tensor when one is missing or has the wrong shape.
ValidationReference load_validation_reference(const std::string& path, int vocab);

struct ValidationRun {
  LogitComparison prefill, decode;
  std::vector<float> prefill_logits, decode_logits;  // (N, vocab) each
};
// `prefix` tokens are prefilled in one call on the decode path, then one token per call.
ValidationRun run_validation(Backend& backend, const std::vector<int32_t>& ids, const std::vector<float>& ref,
                             const ValidationTolerance& tolerance, int prefix);

struct ValidationVerdict {
  PathVerdict prefill, decode;
  bool ok() const { return prefill.ok && decode.ok; }
};
// Judges both paths of `run`; `ref_bf16` is used when non-empty and the tolerance has a ratio rule.
ValidationVerdict judge_run(const ValidationRun& run, const std::vector<float>& ref,
                            const std::vector<float>& ref_bf16, int vocab, const ValidationTolerance& tolerance);

}  // namespace fc
