// flashcore validate --model DIR --reference REF.safetensors [--device cpu|cuda] [--dump-logits OUT] [--check-weights]
//                    [--quantize fp8]
// The verdict rules (CPU fp32 bounds; GPU against HF's own bf16 error, or bf16 bounds) are in engine/validation.h.
#include <cstdio>

#include <spdlog/spdlog.h>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "engine/validation.h"
#include "model/safetensors.h"

namespace fc::cli {

namespace {

struct ValidateOptions {
  std::string model_dir;
  std::string reference;
  std::string device = "cpu";
  std::string dump_logits;
  int prefix = 1;
  double max_rel_err = -1, min_cosine = -1, clear_gap = -1, max_kl = -1, min_top1_rate = -1, max_ratio = -1;
  int block_size = 16;
  bool check_weights = false;
  std::string quantize;  // --quantize fp8: judged by the quantized-weights bounds (engine/validation.h)
};

// Columns 1-7 (path max_abs rel_err min_cos top1 mean_KL ok|FAIL) are what scripts/gpu.sh reads; with HF's
// bf16 logits, HF bf16's own rel_err, mean KL and top-1 against fp32 follow, with ours / HF's ratios.
void print_row(const char* path, const PathVerdict& v) {
  const LogitComparison& c = v.ours;
  std::printf("%-8s %9.3e %9.3e %10.7f %6d/%-6d %10.3e  %-4s", path, c.max_abs_err, c.rel_err, c.min_cosine,
              c.top1_agree, c.top1_checked, c.mean_kl, v.ok ? "ok" : "FAIL");
  if (v.has_hf_bf16) {
    const LogitComparison& h = v.hf_bf16;
    std::printf(" | %10.3e %6.2fx %10.3e %6.2fx %10.7f %6d/%-6d", h.rel_err, v.rel_ratio, h.mean_kl, v.kl_ratio,
                h.min_cosine, h.top1_agree, h.top1_checked);
  }
  std::printf("\n");
}

void print_rule(const ValidationTolerance& tol, DeviceKind device, bool judged_by_hf_bf16) {
  if (judged_by_hf_bf16) {
    std::printf("rule: rel_err and mean KL against fp32 each <= %.2fx transformers' bf16 (the reference's "
                "logits_bf16, HF_ columns); sanity: cosine >= %.6f, no NaN/Inf; top-1 reported, not judged\n",
                tol.max_ratio_to_hf_bf16, tol.min_cosine);
    return;
  }
  std::printf("rule: rel_err <= %.1e, mean KL <= %.1e, cosine >= %.6f, top-1 agrees at >= %.0f%% of positions "
              "whose ref top-2 gap > %.1e",
              tol.max_rel_err, tol.max_mean_kl, tol.min_cosine, 100 * tol.min_top1_rate, tol.clear_gap);
  if (tol.clear_gap_rms > 0) std::printf(" and > %.0fx the position's rms error", tol.clear_gap_rms);
  if (tol.top1_free_misses > 0) std::printf(" (%d miss forgiven)", tol.top1_free_misses);
  std::printf("\n");
  if (device != DeviceKind::Cpu && tol.max_ratio_to_hf_bf16 > 0) {
    std::printf("note: the reference has no logits_bf16 (scripts/make_reference.py --bf16-logits); with them "
                "the verdict compares with transformers' own bf16 error\n");
  }
}

int run_validate(const ValidateOptions& o) {
  const DeviceKind device = parse_device(o.device);
  const Checkpoint ckpt = open_checkpoint(o.model_dir);
  check_weights_if_asked(ckpt, o.check_weights);
  const int vocab = ckpt.config.vocab_size;
  const ValidationReference ref = load_validation_reference(o.reference, vocab);
  const int n = static_cast<int>(ref.ids.size());

  const WeightFormat weights = weight_format(o.quantize);
  ValidationTolerance tol = default_tolerance(device, weights);
  if (o.max_rel_err >= 0) tol.max_rel_err = o.max_rel_err;
  if (o.min_cosine >= 0) tol.min_cosine = o.min_cosine;
  if (o.clear_gap >= 0) tol.clear_gap = o.clear_gap;
  if (o.max_kl >= 0) tol.max_mean_kl = o.max_kl;
  if (o.min_top1_rate >= 0) tol.min_top1_rate = o.min_top1_rate;
  if (o.max_ratio >= 0) tol.max_ratio_to_hf_bf16 = o.max_ratio;  // 0: the absolute rule even with logits_bf16

  BackendOptions bo;
  bo.kv_block_size = o.block_size;
  bo.max_context = std::max(n, 1);
  bo.max_sequences = 1;
  bo.weights = weights;
  auto backend = make_backend(device, ckpt, bo);
  const ValidationRun run = run_validation(*backend, ref.ids, ref.logits, tol, o.prefix);
  const ValidationVerdict verdict = judge_run(run, ref.logits, ref.logits_bf16, vocab, tol);

  std::printf("validate %s on %s: %d tokens, vocab %d\n", o.model_dir.c_str(), o.device.c_str(), n, vocab);
  if (weights == WeightFormat::kFp8) {
    std::printf("weights: quantized to FP8 on load (--quantize fp8), judged against the unquantized model's "
                "reference with bounds for FP8 weights\n");
  }
  print_rule(tol, device, verdict.prefill.has_hf_bf16);
  std::printf("%-8s %9s %9s %10s %13s %10s  %-4s", "path", "max_abs", "rel_err", "min_cos", "top1 agree", "mean_KL",
              "");
  if (verdict.prefill.has_hf_bf16) {
    std::printf(" | %10s %7s %10s %7s %10s %13s", "HF_rel_err", "ours/HF", "HF_KL", "ours/HF", "HF_min_cos",
                "HF_top1    ");
  }
  std::printf("\n");
  print_row("prefill", verdict.prefill);
  print_row("decode", verdict.decode);
  if (!o.dump_logits.empty()) {
    const std::vector<int64_t> shape{n, vocab};
    write_safetensors(o.dump_logits, {{"prefill_logits", DType::F32, shape, run.prefill_logits.data()},
                                      {"decode_logits", DType::F32, shape, run.decode_logits.data()}});
    spdlog::info("wrote {}", o.dump_logits);
  }
  if (!verdict.ok()) {
    const PathVerdict& bad = verdict.prefill.ok ? verdict.decode : verdict.prefill;
    std::fprintf(stderr, "error: logits differ from the reference beyond tolerance (%s path: %s)\n",
                 verdict.prefill.ok ? "decode" : "prefill", bad.failed.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

Runner add_validate_command(CLI::App& app) {
  auto o = std::make_shared<ValidateOptions>();
  app.footer(
      "Example:\n  flashcore validate --model tests/data/models/tiny-llama3-gqa \\\n"
      "      --reference tests/data/models/tiny-llama3-gqa/reference.safetensors --device cpu");
  app.add_option("--model", o->model_dir, "Hugging Face model directory")->required();
  app.add_option("--reference", o->reference,
                 "reference file: input_ids I64 [N], logits F32 [N, vocab], optional logits_bf16 [N, vocab]")
      ->required();
  app.add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--dump-logits", o->dump_logits, "write prefill_logits and decode_logits to this safetensors file");
  app.add_option("--prefix", o->prefix, "tokens prefilled before token-by-token decode (decode path)")
      ->check(CLI::PositiveNumber);
  app.add_option("--block-size", o->block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  add_check_weights_flag(app, o->check_weights);
  add_quantize_option(app, o->quantize);
  // The overrides' defaults depend on --device (engine/validation.cpp default_tolerance); -1 = not given.
  app.add_option("--max-rel-err", o->max_rel_err, "override: largest ||ours-ref||/||ref|| (no logits_bf16)")
      ->default_str("cpu 1e-4, cuda 0.15");
  app.add_option("--min-cosine", o->min_cosine, "override: smallest per-position cosine similarity")
      ->default_str("cpu 0.99999, cuda 0.98");
  app.add_option("--clear-gap", o->clear_gap, "override: top-2 logit gap above which top-1 is checked")
      ->default_str("cpu 1e-3, cuda 0.05 and 4x the position's rms error");
  app.add_option("--max-kl", o->max_kl, "override: largest mean KL(ref || ours) (no logits_bf16)")
      ->default_str("cpu 1e-6, cuda 2e-2");
  app.add_option("--min-top1-rate", o->min_top1_rate,
                 "override: smallest share of clear-gap positions whose top-1 agrees (no logits_bf16)")
      ->check(CLI::Range(0.0, 1.0))
      ->default_str("cpu 1, cuda 0.98 and one miss forgiven");
  app.add_option("--max-ratio", o->max_ratio,
                 "override: largest ours / HF bf16 rel_err and mean KL when the reference has logits_bf16 "
                 "(0: ignore them)")
      ->check(CLI::NonNegativeNumber)
      ->default_str("cpu 0, cuda 1.5");
  return [o]() { return run_validate(*o); };
}

}  // namespace fc::cli
