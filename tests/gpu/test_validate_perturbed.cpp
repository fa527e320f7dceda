// `flashcore validate --device cuda`'s verdict (run_validation + judge_run with default_tolerance(Cuda))
// on tiny-llama3-gqa: PASS on the fixture as committed, FAIL once its weights carry a bug-like
// perturbation (tests/engine/test_validation_perturb.h: swapped o_proj, a norm scaled 1.5x, RoPE pairs
// interleaved, kv heads swapped). The verdict uses the reference's logits_bf16 (HF's own bf16 error)
// where the file has them and the bf16 bounds otherwise; both must catch every perturbation. The
// perturbed weights are a scratch copy of the checkpoint rewritten before the backend uploads them.
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "engine/backend.h"
#include "engine/validation.h"
#include "tests/engine/test_validation_perturb.h"
#include "tests/test_util.h"

namespace fc::test {
namespace {

constexpr const char* kFixture = "tiny-llama3-gqa";

// The verdict on the checkpoint in `dir` against `kFixture`'s reference (both paths, the decode path
// after `prefix` tokens), as validate --device cuda judges it; `use_hf_bf16` false forces the bf16 bounds.
ValidationVerdict cuda_verdict(const std::string& dir, bool use_hf_bf16, int prefix) {
  const Checkpoint ckpt = open_checkpoint(dir);
  const int vocab = ckpt.config.vocab_size;
  const ValidationReference ref = load_validation_reference(data_path(std::string("models/") + kFixture +
                                                                      "/reference.safetensors"), vocab);
  BackendOptions o;
  o.max_context = static_cast<int>(ref.ids.size());
  o.max_sequences = 1;
  o.show_progress = false;
  auto cuda = make_cuda_backend(ckpt, o);
  ValidationTolerance tol = default_tolerance(DeviceKind::Cuda);
  const ValidationRun run = run_validation(*cuda, ref.ids, ref.logits, tol, prefix);
  const std::vector<float> none;
  return judge_run(run, ref.logits, use_hf_bf16 ? ref.logits_bf16 : none, vocab, tol);
}

std::string describe(const PathVerdict& v) {
  char s[256];
  std::snprintf(s, sizeof s, "rel %.3e KL %.3e min_cos %.5f top-1 %d/%d", v.ours.rel_err, v.ours.mean_kl,
                v.ours.min_cosine, v.ours.top1_agree, v.ours.top1_checked);
  std::string out = s;
  if (v.has_hf_bf16) {
    std::snprintf(s, sizeof s, " (HF bf16 rel %.3e KL %.3e: %.2fx, %.2fx)", v.hf_bf16.rel_err, v.hf_bf16.mean_kl,
                  v.rel_ratio, v.kl_ratio);
    out += s;
  }
  return out + (v.ok ? " ok" : " FAIL: " + v.failed);
}

}  // namespace

TEST_CASE("validate --device cuda passes tiny-llama3-gqa and fails it with bug-like weight perturbations",
          "[gpu][validate]") {
  const std::string fixture_dir = data_path(std::string("models/") + kFixture);
  const int n = static_cast<int>(
      load_validation_reference(fixture_dir + "/reference.safetensors", open_checkpoint(fixture_dir).config.vocab_size)
          .ids.size());
  for (bool use_hf_bf16 : {true, false}) {
    for (int prefix : {1, n / 3}) {
      INFO((use_hf_bf16 ? "with the reference's logits_bf16 (when present)" : "bf16 bounds") << ", prefix "
                                                                                           << prefix);
      const ValidationVerdict clean = cuda_verdict(fixture_dir, use_hf_bf16, prefix);
      INFO("unperturbed prefill: " << describe(clean.prefill) << "\nunperturbed decode: " << describe(clean.decode));
      std::printf("[validate perturbed] %s prefix %2d unperturbed: prefill %s\n", use_hf_bf16 ? "hf-bf16" : "bounds ",
                  prefix, describe(clean.prefill).c_str());
      CHECK(clean.ok());
      for (WeightBug bug : {WeightBug::SwapOProj, WeightBug::ScaleNorm, WeightBug::RopePairs, WeightBug::KvHeads}) {
        INFO(weight_bug_name(bug));
        PerturbedFixture scratch(kFixture);
        scratch.apply(bug);
        const ValidationVerdict bad = cuda_verdict(scratch.dir(), use_hf_bf16, prefix);
        std::printf("[validate perturbed] %s prefix %2d %-26s: prefill %s\n", use_hf_bf16 ? "hf-bf16" : "bounds ",
                    prefix, weight_bug_name(bug), describe(bad.prefill).c_str());
        INFO("prefill: " << describe(bad.prefill) << "\ndecode: " << describe(bad.decode));
        CHECK_FALSE(bad.prefill.ok);
        CHECK_FALSE(bad.decode.ok);
        CHECK_FALSE(bad.ok());
      }
    }
  }
}

}  // namespace fc::test
