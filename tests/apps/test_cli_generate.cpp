// generate, chat and bench through the flashcore executable on the CPU: a golden greedy run against
// transformers (tests/data/models/tiny-llama3-bpe/generate.golden.json, scripts/make_generate_golden.py),
// determinism under a seed, stop strings, --json, context errors, generation_config defaults, and every
// error as one line with exit status 1.
//
// The fixture was made on the GPU machine (torch + transformers), never by hand:
//   python3 scripts/make_reference.py --config scripts/fixtures/tiny-llama3-bpe.json --model M \
//       --out M/reference.safetensors --tokens 40 --seed 4 --device cpu
//   cp tests/data/tokenizer/mini_b.tokenizer.json M/tokenizer.json
//   python3 scripts/make_generate_golden.py --model M --out M/generate.golden.json
// with M = tests/data/models/tiny-llama3-bpe.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/apps/cli_runner.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

using fc::test::data_path;
using fc::test::run_flashcore;
using fc::test::slurp;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;

namespace {

const std::string kModel = "tiny-llama3-bpe";

std::string model_dir() { return data_path("models/" + kModel); }

std::string gen_args(const std::string& extra) {
  return "generate --model " + model_dir() + " --device cpu --no-bos " + extra;
}

json run_json(const std::string& extra, const std::string& stdin_text = "") {
  const auto r = run_flashcore(gen_args("--json " + extra), stdin_text);
  INFO(r.err);
  REQUIRE(r.status == 0);
  return json::parse(r.out);
}

void check_one_line_error(const fc::test::CliResult& r, const std::string& contains) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.err_lines() == 1);
  CHECK_THAT(r.err, StartsWith("error: ") && Contains(contains));
}

}  // namespace

TEST_CASE("the generate fixture passes validate against its transformers logits", "[cli][generate]") {
  const auto r = run_flashcore("validate --device cpu --model " + model_dir() + " --reference " + model_dir() +
                               "/reference.safetensors");
  INFO(r.out << r.err);
  CHECK(r.status == 0);
}

TEST_CASE("generate --temperature 0 reproduces transformers' greedy ids", "[cli][generate]") {
  const json golden = json::parse(slurp(model_dir() + "/generate.golden.json"));
  const int max_new = golden["max_new_tokens"];
  for (const json& c : golden["cases"]) {
    const std::string prompt = c["prompt"];
    INFO(prompt);
    const json j = run_json("--temperature 0 --max-new-tokens " + std::to_string(max_new) + " --prompt \"" + prompt +
                            "\"");
    CHECK(j["prompt_ids"] == c["prompt_ids"]);
    CHECK(j["ids"] == c["ids"]);
    CHECK(j["text"] == c["text"]);
  }
}

TEST_CASE("generate streams the same text as --json, with a statistics line", "[cli][generate]") {
  const auto streamed = run_flashcore(gen_args("--temperature 0 --max-new-tokens 12 --prompt \"the cat\""));
  REQUIRE(streamed.status == 0);
  const json j = run_json("--temperature 0 --max-new-tokens 12 --prompt \"the cat\"");
  CHECK(streamed.out == j["text"].get<std::string>() + "\n");
  CHECK_THAT(streamed.err, Contains("time to first token") && Contains("ms/token") && Contains("stop: max new tokens"));
  CHECK(j["generated_tokens"] == 12);
  CHECK(j["stop_reason"] == "max new tokens");
  // --quiet: no statistics line.
  const auto quiet = run_flashcore(gen_args("--quiet --temperature 0 --max-new-tokens 12 --prompt \"the cat\""));
  CHECK(quiet.out == streamed.out);
  CHECK(quiet.err.empty());
}

TEST_CASE("generate: a seed gives the same text on every run, prompt from stdin or a file", "[cli][generate]") {
  const std::string args = "--temperature 1.2 --top-k 50 --top-p 0.95 --min-p 0.01 --max-new-tokens 24 ";
  const json a = run_json(args + "--seed 11 --prompt \"hello world\"");
  const json b = run_json(args + "--seed 11 --prompt \"hello world\"");
  const json c = run_json(args + "--seed 12 --prompt \"hello world\"");
  CHECK(a["ids"] == b["ids"]);
  CHECK(a["ids"] != c["ids"]);
  CHECK(run_json(args + "--seed 11", "hello world")["ids"] == a["ids"]);
  const std::string file = std::string(FC_BINARY_DIR) + "/prompt_hello.txt";
  std::ofstream(file) << "hello world";
  CHECK(run_json(args + "--seed 11 --prompt-file " + file)["ids"] == a["ids"]);
  // generation_config.json (do_sample, temperature 0.6, top_p 0.9) is the default: same as spelling it out.
  CHECK(run_json("--seed 5 --max-new-tokens 24 --prompt \"hello world\"")["ids"] ==
        run_json("--seed 5 --temperature 0.6 --top-p 0.9 --max-new-tokens 24 --prompt \"hello world\"")["ids"]);
  // A repetition penalty changes the greedy continuation of a repetitive prompt.
  CHECK(run_json("--temperature 0 --max-new-tokens 24 --prompt \"the the the the\"")["ids"] !=
        run_json("--temperature 0 --repetition-penalty 3 --max-new-tokens 24 --prompt \"the the the the\"")["ids"]);
}

TEST_CASE("generate without --seed: a random seed each run, printed, and it replays the run", "[cli][generate]") {
  const std::string args = "--temperature 1.0 --max-new-tokens 24 --prompt \"hello world\" ";
  const json a = run_json(args);
  const json b = run_json(args);
  REQUIRE(a.contains("seed"));
  CHECK(a["seed_random"] == true);
  CHECK(a["seed"] != b["seed"]);
  CHECK(a["ids"] != b["ids"]);  // 24 tokens drawn at T = 1 from a 557-token vocabulary
  const json replay = run_json(args + "--seed " + std::to_string(a["seed"].get<uint64_t>()));
  CHECK(replay["ids"] == a["ids"]);
  CHECK(replay["seed_random"] == false);
  // The statistics line names it, --quiet or not (it is the only way to replay a run).
  const auto streamed = run_flashcore(gen_args("--quiet " + args));
  CHECK_THAT(streamed.err, Contains("(random)") && Contains("seed "));
  // Greedy has no seed to speak of.
  CHECK_FALSE(run_json("--temperature 0 --max-new-tokens 4 --prompt hi").contains("seed"));
}

TEST_CASE("--help shows each option's default", "[cli]") {
  const auto help = run_flashcore("generate --help");
  REQUIRE(help.status == 0);
  // CLI11 writes a default after the option's type: "--max-context INT:POSITIVE=4096".
  CHECK_THAT(help.out, Contains("POSITIVE=4096"));                           // --max-context
  CHECK_THAT(help.out, Contains("=cuda"));                                   // --device
  CHECK_THAT(help.out, Contains("=generation_config.json, else 0"));         // --temperature and friends
  CHECK_THAT(help.out, Contains("=random, printed with the statistics"));    // --seed
  CHECK_THAT(run_flashcore("bench --help").out, Contains("POSITIVE=128"));   // --gen-len
}

TEST_CASE("generate --stop: the text ends before the stop string, wherever the tokens split it", "[cli][generate]") {
  const json full = run_json("--temperature 0 --max-new-tokens 24 --prompt \"the cat sat on the mat\"");
  const std::string text = full["text"];
  REQUIRE(text.size() >= 8);
  // Stop strings starting at every offset from 2 on, 2..3 bytes long: most straddle token boundaries.
  for (size_t at = 2; at + 3 <= text.size(); ++at) {
    for (size_t len : {2, 3}) {
      const std::string stop = text.substr(at, len);
      // Shell quoting, and bytes of multi-byte characters (a stop string is whole characters).
      if (stop.find_first_of("\"\\$`\n") != std::string::npos) continue;
      if (std::any_of(stop.begin(), stop.end(), [](char ch) { return (ch & 0x80) != 0; })) continue;
      const size_t first = text.find(stop);
      const json j = run_json("--temperature 0 --max-new-tokens 24 --prompt \"the cat sat on the mat\" --stop \"" +
                              stop + "\"");
      INFO("stop '" << stop << "'");
      CHECK(j["text"] == text.substr(0, first));
      CHECK(j["stop_reason"] == "stop string");
      CHECK(j["stop_string"] == stop);
    }
  }
}

TEST_CASE("generate: context limits are clear errors unless --truncate", "[cli][generate][errors]") {
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "the cat sat on the mat ";
  check_one_line_error(run_flashcore(gen_args("--max-context 32 --max-new-tokens 4"), long_prompt),
                       "does not fit the context of 32 tokens");
  const auto r = run_flashcore(gen_args("--max-context 32 --max-new-tokens 4 --truncate --json"), long_prompt);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  CHECK(j["prompt_ids"].size() == 31);
  CHECK(j["stop_reason"] == "context full");  // 31 + 1 generated fill the 32 slots
  CHECK_THAT(r.err, Contains("truncated"));
}

TEST_CASE("CLI errors: one line on stderr, exit status 1", "[cli][errors]") {
  check_one_line_error(run_flashcore("generate --prompt hi"), "--model");
  check_one_line_error(run_flashcore("generate --model /nonexistent/dir --device cpu --prompt hi"), "/nonexistent/dir");
  check_one_line_error(run_flashcore(gen_args("--temperature -1 --prompt hi")), "--temperature");
  check_one_line_error(run_flashcore(gen_args("--top-p 2 --prompt hi")), "--top-p");
  check_one_line_error(run_flashcore(gen_args("--prompt-file /nonexistent/prompt.txt")), "/nonexistent/prompt.txt");
  check_one_line_error(run_flashcore(gen_args("--device tpu --prompt hi")), "--device");
  check_one_line_error(run_flashcore(gen_args(""), ""), "prompt is empty");
  check_one_line_error(run_flashcore("generate --model " + data_path("models/tiny-llama3-gqa") +
                                     " --device cpu --prompt hi"),
                       "tokenizer");  // a model directory without tokenizer files
  check_one_line_error(run_flashcore("frobnicate"), "subcommand");
  check_one_line_error(run_flashcore("bench"), "--model");
  check_one_line_error(run_flashcore("bench --model " + model_dir() + " --synthetic llama-3.1-8b"), "exactly one");
  check_one_line_error(run_flashcore("bench --synthetic llama-3.2-1b --device cpu"), "GPU");
  check_one_line_error(run_flashcore("bench --synthetic llama-9z"), "built in: llama-3.1-70b, llama-3.1-8b");  // before any GPU call
  check_one_line_error(run_flashcore("bench --model " + model_dir() + " --device cpu --batch 0"), "--batch");
  // The measurement knobs of earlier versions are gone: an unknown option, one line.
  check_one_line_error(run_flashcore("bench --synthetic llama-3.1-8b --gemv-kernels reg,reg,reg,reg,reg"),
                       "--gemv-kernels");
  check_one_line_error(run_flashcore(gen_args("--async-sample --prompt hi")), "--async-sample");
  // This tokenizer has no chat special tokens: chat refuses with one line.
  check_one_line_error(run_flashcore("chat --model " + model_dir() + " --device cpu", "hi\n"), "chat");
  for (const char* cmd : {"generate", "chat", "bench", "validate"}) {
    const auto help = run_flashcore(std::string(cmd) + " --help");
    INFO(cmd);
    CHECK(help.status == 0);
    CHECK_THAT(help.out, Contains("xample"));
  }
}

TEST_CASE("flashcore --version names the release, the commit, the CUDA build and the GPU kernel paths", "[cli]") {
  const auto r = run_flashcore("--version");
  INFO(r.out << r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, StartsWith("flashcore 0.1.0 (commit "));
  CHECK_THAT(r.out, Contains("GPU code: ") || Contains("no CUDA backend"));
  // With a GPU: which prefill attention, GEMV and launch mode this build runs on it; else says so.
  CHECK_THAT(r.out, Contains("no CUDA GPU found") || (Contains("GPU 0: ") && Contains("prefill attention")));
}

TEST_CASE("bench --device cpu on a checkpoint: table and JSON with consistent numbers", "[cli][bench]") {
  const std::string out = std::string(FC_BINARY_DIR) + "/bench_cpu.json";
  const auto r = run_flashcore("bench --model " + model_dir() +
                               " --device cpu --prompt-len 8,20 --gen-len 5 --context 0,40 --batch 1,3 --iters 2 "
                               "--warmup 1 --json " + out);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Contains("p50 ms") && Contains("TTFT"));
  const json j = json::parse(slurp(out));
  REQUIRE(j["prefill"].size() == 2);
  REQUIRE(j["decode"].size() == 4);
  const double weights = j["decode_weight_bytes"], kv = j["kv_bytes_per_token"];
  // 2 layers x 2 kv heads x 16 head_dim x (K, V) x bf16.
  CHECK(kv == 2 * 2 * 16 * 2 * 2);
  for (const json& d : j["decode"]) {
    const int batch = d["batch"], context = d["context"];
    CHECK(d["samples_ms"].size() == 10);  // gen_len x iters
    CHECK(d["ms_per_step_p50"] <= d["ms_per_step_p90"]);
    CHECK(d["ms_per_step_p90"] <= d["ms_per_step_p99"]);
    // Mean over the 5 steps of weights + batch x (context + step + 1) tokens of K/V.
    CHECK(d["bytes_per_step"].get<double>() == Approx(weights + batch * (context + 3) * kv));
  }
}

TEST_CASE("chat under a pipe: turns line by line, KV reuse across turns, /reset and /exit", "[cli][chat]") {
  // The fixture's tokenizer has no chat tokens; naming <eos> as BOS/EOS in tokenizer_config.json gives
  // it the LLaMA 2 [INST] format, which needs only those two.
  fc::test::ScratchCheckpoint c(kModel);
  c.write("tokenizer_config.json", R"({"bos_token": "<eos>", "eos_token": "<eos>"})");
  const auto r = run_flashcore("chat --model " + c.dir() + " --device cpu --temperature 0 --max-new-tokens 6",
                               "hello there\nand now?\n/reset\nhello there\n/exit\nnever read\n");
  INFO(r.out << "\n---\n" << r.err);
  REQUIRE(r.status == 0);
  std::vector<std::string> replies;
  for (size_t b = 0, e; (e = r.out.find('\n', b)) != std::string::npos; b = e + 1) replies.push_back(r.out.substr(b, e - b));
  // The statistics lines on stderr count the turns.
  std::vector<std::string> stats;
  for (size_t b = 0, e; (e = r.err.find('\n', b)) != std::string::npos; b = e + 1) {
    if (r.err.compare(b, 10, "[prefilled") == 0) stats.push_back(r.err.substr(b, e - b));
  }
  REQUIRE(stats.size() == 3);  // "never read" after /exit is not a turn
  CHECK_THAT(stats[0], Contains("(0 reused)"));
  // The first turn stays in the cache (its reply too, as far as re-encoding the reply text, which the
  // template strips, gives back the generated ids).
  CHECK_THAT(stats[1], !Contains("(0 reused)"));
  CHECK_THAT(stats[2], Contains("(0 reused)"));   // after /reset
  CHECK_THAT(r.err, Contains("(conversation reset)"));
  // The same first turn after /reset gives the same greedy reply (these greedy replies hold no newline).
  REQUIRE(replies.size() == 3);
  CHECK(replies[0] == replies[2]);
  CHECK(replies[0] != replies[1]);
}
