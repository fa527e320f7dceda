// `flashcore validate`: run a backend over a prompt two ways (one prefill; prefix + token-by-token
// decode through the KV cache) and compare the logits with a reference.
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
  int top1_checked = 0;      // positions whose reference top-2 gap exceeds the clear-gap threshold
  int top1_agree = 0;        // ... of which our argmax equals the reference's
  bool has_nan = false;
};

LogitComparison compare_logits(const float* ours, const float* ref, int rows, int vocab, double clear_gap);

struct ValidationTolerance {
  double max_rel_err;
  double min_cosine;
  double clear_gap;  // top-1 must agree where the reference's top-2 logits differ by more than this
  double max_mean_kl;
};
// CPU (fp32): rel 1e-4, cosine 0.99999, gap 1e-3, KL 1e-6. CUDA (bf16 weights and activations,
// fp32 accumulation): rel 3e-2, cosine 0.999, gap 0.05 logits, KL 2e-3.
ValidationTolerance default_tolerance(DeviceKind device);
bool within(const LogitComparison& c, const ValidationTolerance& t);

struct ValidationRun {
  LogitComparison prefill, decode;
  std::vector<float> prefill_logits, decode_logits;  // (N, vocab) each
};
// `prefix` tokens are prefilled in one call on the decode path, then one token per call.
ValidationRun run_validation(Backend& backend, const std::vector<int32_t>& ids, const std::vector<float>& ref,
                             const ValidationTolerance& tolerance, int prefix);

}  // namespace fc
