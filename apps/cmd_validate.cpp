// flashcore validate --model DIR --reference REF.safetensors [--device cpu|cuda] [--dump-logits OUT] [--check-weights]
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
  double max_rel_err = -1, min_cosine = -1, clear_gap = -1, max_kl = -1;
  int block_size = 16;
  bool check_weights = false;
};

void print_row(const char* path, const LogitComparison& c, bool ok) {
  std::printf("%-8s %9.3e %9.3e %10.7f %6d/%-6d %10.3e  %s\n", path, c.max_abs_err, c.rel_err, c.min_cosine,
              c.top1_agree, c.top1_checked, c.mean_kl, ok ? "ok" : "FAIL");
}

int run_validate(const ValidateOptions& o) {
  const DeviceKind device = parse_device(o.device);
  const Checkpoint ckpt = open_checkpoint(o.model_dir);
  check_weights_if_asked(ckpt, o.check_weights);
  const TensorStore ref_store = TensorStore::open_file(o.reference);
  const TensorInfo* ids_tensor = ref_store.find("input_ids");
  const TensorInfo* logits_tensor = ref_store.find("logits");
  if (ids_tensor == nullptr || logits_tensor == nullptr) {
    fail("{}: a reference file needs tensors 'input_ids' (I64 [N]) and 'logits' (F32 [N, vocab])", o.reference);
  }
  const std::vector<int64_t> ids64 = tensor_to_i64(*ids_tensor);
  const int n = static_cast<int>(ids64.size());
  const int vocab = ckpt.config.vocab_size;
  if (ids_tensor->shape.size() != 1 || logits_tensor->shape != std::vector<int64_t>{n, vocab}) {
    fail("{}: 'logits' has shape {}, expected [{}, {}] (input_ids length, vocab_size of {})", o.reference,
         logits_tensor->shape_string(), n, vocab, o.model_dir);
  }
  std::vector<int32_t> ids(ids64.begin(), ids64.end());
  const std::vector<float> ref = tensor_to_f32(*logits_tensor);

  ValidationTolerance tol = default_tolerance(device);
  if (o.max_rel_err >= 0) tol.max_rel_err = o.max_rel_err;
  if (o.min_cosine >= 0) tol.min_cosine = o.min_cosine;
  if (o.clear_gap >= 0) tol.clear_gap = o.clear_gap;
  if (o.max_kl >= 0) tol.max_mean_kl = o.max_kl;

  BackendOptions bo;
  bo.kv_block_size = o.block_size;
  bo.max_context = std::max(n, 1);
  bo.max_sequences = 1;
  auto backend = make_backend(device, ckpt, bo);
  const ValidationRun run = run_validation(*backend, ids, ref, tol, o.prefix);

  const bool prefill_ok = within(run.prefill, tol), decode_ok = within(run.decode, tol);
  std::printf("validate %s on %s: %d tokens, vocab %d\n", o.model_dir.c_str(), o.device.c_str(), n, vocab);
  std::printf("tolerance: rel_err <= %.1e, cosine >= %.6f, top-1 where ref top-2 gap > %.1e, mean KL <= %.1e\n",
              tol.max_rel_err, tol.min_cosine, tol.clear_gap, tol.max_mean_kl);
  std::printf("%-8s %9s %9s %10s %13s %10s\n", "path", "max_abs", "rel_err", "min_cos", "top1 agree", "mean_KL");
  print_row("prefill", run.prefill, prefill_ok);
  print_row("decode", run.decode, decode_ok);
  if (!o.dump_logits.empty()) {
    const std::vector<int64_t> shape{n, vocab};
    write_safetensors(o.dump_logits, {{"prefill_logits", DType::F32, shape, run.prefill_logits.data()},
                                      {"decode_logits", DType::F32, shape, run.decode_logits.data()}});
    spdlog::info("wrote {}", o.dump_logits);
  }
  if (!(prefill_ok && decode_ok)) {
    std::fprintf(stderr, "error: logits differ from the reference beyond tolerance (%s path)\n",
                 prefill_ok ? "decode" : "prefill");
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
  app.add_option("--reference", o->reference, "reference file: input_ids I64 [N], logits F32 [N, vocab]")->required();
  app.add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--dump-logits", o->dump_logits, "write prefill_logits and decode_logits to this safetensors file");
  app.add_option("--prefix", o->prefix, "tokens prefilled before token-by-token decode (decode path)")
      ->check(CLI::PositiveNumber);
  app.add_option("--block-size", o->block_size, "KV cache block size in tokens")->check(CLI::Range(1, 1024));
  add_check_weights_flag(app, o->check_weights);
  app.add_option("--max-rel-err", o->max_rel_err, "override: largest ||ours-ref||/||ref||");
  app.add_option("--min-cosine", o->min_cosine, "override: smallest per-position cosine similarity");
  app.add_option("--clear-gap", o->clear_gap, "override: top-2 logit gap above which top-1 must agree");
  app.add_option("--max-kl", o->max_kl, "override: largest mean KL(ref || ours)");
  return [o]() { return run_validate(*o); };
}

}  // namespace fc::cli
