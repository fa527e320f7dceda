// The CUDA backend against the CPU fp32 backend (the oracle; it matches transformers to ~1e-6) on every
// checkpoint under tests/data/models, found at run time, so a new fixture is covered without editing this
// file. Tolerance against the CPU oracle: tighter than `validate`'s absolute GPU bounds (which are sized
// for deep models: engine/validation.h), sized for these two-layer fixtures, where bf16 rounding gives
// rel 0.6e-2 to 1.6e-2: rel 3e-2, worst cosine 0.999, mean KL 2e-3, top-1 where the oracle's top-2 gap is
// clear (> 0.05 and > 4x the position's rms error) at >= 98% of those positions. The CPU backend is within
// 1e-4 of the HF fp32 reference (checked here too); against HF the CUDA logits get validate's own rules.
//
// Paths checked on each fixture:
//  - prefill: one forward with logits at every position (run_validation's path a);
//  - single-sequence decode: a prefix prefilled, then one token a call (path b), for prefixes 1 and n / 3,
//    with DecodeOptions{} (the fused GEMV step where the shapes allow it) and with fuse = false (the unfused
//    single-row step); both also against the HF reference, which is what validate checks;
//  - batch decode: three sequences with prompts of different lengths prefilled in one call, then stepping
//    together one token each (the multi-row step: cuBLASLt products and the batched decode attention),
//    one sequence dropping out half way; every step's logits against the CPU backend run on that
//    sequence alone. The sequences' tokens differ at every position, so reading another sequence's KV
//    blocks or returning rows out of order changes the logits.
// The fixtures cover head_dim 16 and 24 (the generic attention kernel) and 64 and 128 (the tensor-core
// prefill and split-KV decode kernels).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/validation.h"
#include "model/llama_weights.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

namespace fc::test {
namespace {

constexpr int kBlockSize = 16;  // validate's default

// Every directory under tests/data/models, sorted by name.
std::vector<std::filesystem::path> fixture_dirs() {
  std::vector<std::filesystem::path> dirs;
  for (const auto& entry : std::filesystem::directory_iterator(data_path("models"))) {
    if (entry.is_directory()) dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// A fixture's reference.safetensors: input_ids I64 [n] and HF's fp32 logits (n, vocab).
struct Reference {
  std::vector<int32_t> ids;
  std::vector<float> logits;
};

Reference load_reference(const std::filesystem::path& dir, int vocab) {
  const TensorStore store = TensorStore::open_file((dir / "reference.safetensors").string());
  const TensorInfo* ids = store.find("input_ids");
  const TensorInfo* logits = store.find("logits");
  REQUIRE(ids != nullptr);
  REQUIRE(logits != nullptr);
  Reference r;
  const std::vector<int64_t> ids64 = tensor_to_i64(*ids);
  r.ids.assign(ids64.begin(), ids64.end());
  REQUIRE(r.ids.size() >= 4);
  REQUIRE(logits->shape == std::vector<int64_t>{static_cast<int64_t>(r.ids.size()), vocab});
  r.logits = tensor_to_f32(*logits);
  return r;
}

BackendOptions small_options(int tokens_per_seq, int sequences) {
  BackendOptions o;
  o.kv_block_size = kBlockSize;
  o.max_context = (tokens_per_seq + kBlockSize - 1) / kBlockSize * kBlockSize;
  o.max_sequences = sequences;
  o.max_batch_tokens = sequences * o.max_context;  // the batch test prefills every prompt in one call
  o.show_progress = false;
  return o;
}

std::string describe(const LogitComparison& c) {
  std::ostringstream s;
  s << c.positions << " rows: rel_err " << c.rel_err << ", max_abs " << c.max_abs_err << ", min_cos " << c.min_cosine
    << ", top-1 " << c.top1_agree << "/" << c.top1_checked << ", mean KL " << c.mean_kl
    << (c.has_nan ? ", NaN/Inf" : "");
  return s.str();
}

// compare_logits over `rows` rows, both sides required to hold exactly that many.
LogitComparison compare_rows(const std::vector<float>& ours, const std::vector<float>& oracle, int rows, int vocab,
                             const ValidationTolerance& tol) {
  REQUIRE(ours.size() == static_cast<size_t>(rows) * vocab);
  REQUIRE(oracle.size() == static_cast<size_t>(rows) * vocab);
  return compare_logits(ours.data(), oracle.data(), rows, vocab, tol);
}

// The CUDA backend against the CPU oracle on the two-layer fixtures (see the header).
ValidationTolerance cuda_vs_cpu_tolerance() {
  ValidationTolerance t = default_tolerance(DeviceKind::Cuda);
  t.max_rel_err = 3e-2;
  t.min_cosine = 0.999;
  t.max_mean_kl = 2e-3;
  t.max_ratio_to_hf_bf16 = 0;
  return t;
}

void check_within(const LogitComparison& c, const ValidationTolerance& tol, const std::string& what) {
  INFO(what << ": " << describe(c));
  CHECK(c.positions > 0);
  CHECK(within(c, tol));
}

// Prefill and single-sequence decode of the reference ids, CUDA (fused and unfused decode) against CPU
// and against the HF reference.
void check_single_sequence(const std::string& name, const Checkpoint& ckpt, const Reference& ref) {
  const int n = static_cast<int>(ref.ids.size()), vocab = ckpt.config.vocab_size;
  const ValidationTolerance cuda_tol = default_tolerance(DeviceKind::Cuda);
  const ValidationTolerance cpu_tol = default_tolerance(DeviceKind::Cpu);
  const ValidationTolerance vs_cpu = cuda_vs_cpu_tolerance();
  const BackendOptions options = small_options(n, 1);
  auto cpu = make_cpu_backend(ckpt, options);
  struct Variant {
    const char* name;
    std::unique_ptr<Backend> backend;
  };
  std::vector<Variant> variants;
  for (bool fuse : {true, false}) {
    BackendOptions o = options;
    o.decode.fuse = fuse;
    variants.push_back({fuse ? "fused" : "unfused", make_cuda_backend(ckpt, o)});
  }
  for (int prefix : {1, std::max(2, n / 3)}) {
    const ValidationRun oracle = run_validation(*cpu, ref.ids, ref.logits, cpu_tol, prefix);
    {
      INFO(name << ": the CPU oracle against HF, prefix " << prefix);
      check_within(oracle.prefill, cpu_tol, "CPU prefill vs HF");
      check_within(oracle.decode, cpu_tol, "CPU decode vs HF");
    }
    for (Variant& v : variants) {
      INFO(name << ", " << v.name << " decode, prefix " << prefix);
      const ValidationRun got = run_validation(*v.backend, ref.ids, ref.logits, cuda_tol, prefix);
      const LogitComparison prefill = compare_rows(got.prefill_logits, oracle.prefill_logits, n, vocab, cuda_tol);
      const LogitComparison decode = compare_rows(got.decode_logits, oracle.decode_logits, n, vocab, cuda_tol);
      check_within(prefill, vs_cpu, "CUDA prefill vs CPU");
      check_within(decode, vs_cpu, "CUDA decode vs CPU");
      check_within(got.prefill, cuda_tol, "CUDA prefill vs HF");
      check_within(got.decode, cuda_tol, "CUDA decode vs HF");
      CHECK(v.backend->kv_cache().free_blocks() == v.backend->kv_cache().num_blocks());
      std::printf("[backend vs cpu] %-24s %-7s prefix %2d: prefill rel %.2e (HF %.2e), decode rel %.2e (HF %.2e)\n",
                  name.c_str(), v.name, prefix, prefill.rel_err, got.prefill.rel_err, decode.rel_err,
                  got.decode.rel_err);
    }
  }
}

// Three sequences stepping together through the CUDA backend against the CPU backend on each alone.
void check_batch_decode(const std::string& name, const Checkpoint& ckpt, const Reference& ref) {
  const int n = static_cast<int>(ref.ids.size()), vocab = ckpt.config.vocab_size;
  const ValidationTolerance tol = cuda_vs_cpu_tolerance();
  constexpr int kSeqs = 3;
  // Sequence s's tokens: the reference ids rotated by 5 s (so the sequences differ at every position).
  // Prompts of n - steps, 1 and about half that tokens; sequence 2 stops after half the steps, so the
  // batch runs at 3 rows, then 2. Every sequence stays within n tokens.
  const int steps = std::max(2, n / 3);
  const int prompt[kSeqs] = {n - steps, 1, (n - steps) / 2 + 1};
  const int seq_steps[kSeqs] = {steps, steps, steps / 2};
  std::vector<int32_t> stream[kSeqs];
  for (int s = 0; s < kSeqs; ++s) {
    for (int j = 0; j < prompt[s] + seq_steps[s]; ++j) stream[s].push_back(ref.ids[(j + 5 * s) % n]);
  }
  const BackendOptions options = small_options(n, kSeqs);
  auto cuda = make_cuda_backend(ckpt, options);
  KVCacheManager& kv = cuda->kv_cache();

  // got[s]: the CUDA logits of positions prompt[s] - 1 .. prompt[s] + seq_steps[s] - 1.
  std::vector<float> got[kSeqs];
  int seq_id[kSeqs];
  ForwardBatch prefill;
  for (int s = 0; s < kSeqs; ++s) {
    seq_id[s] = kv.create_sequence();
    prefill.seq_ids.push_back(seq_id[s]);
    prefill.n_tokens.push_back(prompt[s]);
    prefill.tokens.insert(prefill.tokens.end(), stream[s].begin(), stream[s].begin() + prompt[s]);
  }
  std::vector<float> logits;
  cuda->forward(prefill, logits);
  REQUIRE(logits.size() == static_cast<size_t>(kSeqs) * vocab);
  for (int s = 0; s < kSeqs; ++s) got[s].assign(logits.begin() + s * vocab, logits.begin() + (s + 1) * vocab);
  for (int k = 0; k < steps; ++k) {
    ForwardBatch step;
    std::vector<int> rows;  // the sequences in this step, in batch order
    for (int s = 0; s < kSeqs; ++s) {
      if (k >= seq_steps[s]) continue;
      rows.push_back(s);
      step.seq_ids.push_back(seq_id[s]);
      step.n_tokens.push_back(1);
      step.tokens.push_back(stream[s][prompt[s] + k]);
    }
    cuda->forward(step, logits);
    REQUIRE(logits.size() == rows.size() * vocab);
    for (size_t r = 0; r < rows.size(); ++r) {
      got[rows[r]].insert(got[rows[r]].end(), logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    }
  }
  for (int s = 0; s < kSeqs; ++s) {
    CHECK(kv.length(seq_id[s]) == prompt[s] + seq_steps[s]);
    kv.release_sequence(seq_id[s]);
  }
  CHECK(kv.free_blocks() == kv.num_blocks());

  // The oracle: each sequence alone on the CPU backend, one prefill with logits at every position.
  auto cpu = make_cpu_backend(ckpt, small_options(n, 1));
  std::string line;
  for (int s = 0; s < kSeqs; ++s) {
    const int len = prompt[s] + seq_steps[s];
    const int seq = cpu->kv_cache().create_sequence();
    std::vector<float> all;
    cpu->forward({{seq}, {len}, stream[s], true}, all);
    cpu->kv_cache().release_sequence(seq);
    REQUIRE(all.size() == static_cast<size_t>(len) * vocab);
    const std::vector<float> oracle(all.begin() + static_cast<size_t>(prompt[s] - 1) * vocab, all.end());
    const LogitComparison c = compare_rows(got[s], oracle, seq_steps[s] + 1, vocab, tol);
    INFO(name << ", batch decode, sequence " << s << " (prompt " << prompt[s] << ", " << seq_steps[s] << " steps)");
    check_within(c, tol, "CUDA batch decode vs CPU alone");
    char part[64];
    std::snprintf(part, sizeof part, "  seq %d (prompt %2d + %2d) rel %.2e", s, prompt[s], seq_steps[s], c.rel_err);
    line += part;
  }
  std::printf("[backend vs cpu] %-24s batch decode:%s\n", name.c_str(), line.c_str());
}

// Runs `body` on every fixture; an exception from one fixture fails the test and moves on to the next.
template <typename Body>
void for_each_fixture(Body body) {
  const std::vector<std::filesystem::path> dirs = fixture_dirs();
  REQUIRE_FALSE(dirs.empty());
  for (const auto& dir : dirs) {
    const std::string name = dir.filename().string();
    INFO("fixture " << dir.string());
    if (!std::filesystem::exists(dir / "reference.safetensors")) {
      FAIL_CHECK(name << " has no reference.safetensors (every fixture needs one: scripts/make_fixtures.sh)");
      continue;
    }
    try {
      const Checkpoint ckpt = open_checkpoint(dir.string());
      const Reference ref = load_reference(dir, ckpt.config.vocab_size);
      body(name, ckpt, ref);
    } catch (const std::exception& e) {
      FAIL_CHECK(name << ": " << e.what());
    }
  }
}

}  // namespace

TEST_CASE("CUDA backend matches the CPU backend on every fixture: prefill, fused and unfused decode",
          "[gpu][backend]") {
  for_each_fixture(check_single_sequence);
}

TEST_CASE("CUDA backend batch decode matches the CPU backend on each sequence alone, every fixture",
          "[gpu][backend]") {
  for_each_fixture(check_batch_decode);
}

}  // namespace fc::test
