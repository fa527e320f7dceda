// Weight-layout bugs (tests/engine/test_validation_perturb.h) run through the CPU backend: the error each
// one causes against transformers' fp32 logits is far beyond the GPU tolerance (default_tolerance(Cuda),
// the rule used without HF bf16 logits), so loosening the GPU bounds to what a correct bf16 engine needs
// on deep models still catches them. The CPU backend adds no rounding noise of its own (1e-6), so these
// are the bugs' own sizes; docs/VALIDATION.md quotes the printed figures.
#include <catch2/catch.hpp>

#include <cstdio>

#include "engine/validation.h"
#include "tests/engine/test_validation_perturb.h"

using namespace fc;
using fc::test::PerturbedFixture;
using fc::test::WeightBug;

TEST_CASE("validate's GPU tolerance fails weight-layout bugs (CPU backend, tiny fixtures)", "[validate]") {
  const ValidationTolerance gpu = default_tolerance(DeviceKind::Cuda);
  for (const char* fixture : {"tiny-llama3-gqa", "tiny-llama3-hd64"}) {
    for (WeightBug bug : {WeightBug::SwapOProj, WeightBug::ScaleNorm, WeightBug::RopePairs, WeightBug::KvHeads}) {
      INFO(fixture << ": " << weight_bug_name(bug));
      PerturbedFixture scratch(fixture);
      scratch.apply(bug);
      const Checkpoint ckpt = open_checkpoint(scratch.dir());
      const int vocab = ckpt.config.vocab_size;
      const ValidationReference ref = load_validation_reference(scratch.dir() + "/reference.safetensors", vocab);
      BackendOptions o;
      o.max_context = static_cast<int>(ref.ids.size());
      o.show_progress = false;
      auto cpu = make_cpu_backend(ckpt, o);
      const ValidationRun run = run_validation(*cpu, ref.ids, ref.logits, gpu, 1);
      const ValidationVerdict v = judge_run(run, ref.logits, {}, vocab, gpu);
      std::printf("[perturbed] %-16s %-26s rel_err %.3f  mean KL %.3e  min_cos %.4f  top-1 %d/%d  -> %s\n", fixture,
                  weight_bug_name(bug), run.prefill.rel_err, run.prefill.mean_kl, run.prefill.min_cosine,
                  run.prefill.top1_agree, run.prefill.top1_checked, v.prefill.failed.c_str());
      CHECK_FALSE(v.prefill.ok);
      CHECK_FALSE(v.decode.ok);
    }
  }
}
