// flashcore batch through the executable on the CPU: bad input lines (reported with their line number
// and skipped, or fatal with --strict), results in input order, each request's ids and text equal to
// `generate --json` run on it alone (greedy and seeded, plain prompts and chat messages) with small
// batches and step budgets, a KV pool so small that requests are preempted, and Ctrl-C (exit 130, the
// finished results as whole lines).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/apps/cli_process.h"
#include "tests/apps/cli_runner.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

using fc::test::CliProcess;
using fc::test::run_flashcore;
using fc::test::ScratchCheckpoint;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;

namespace {

const std::string kModel = "tiny-llama3-bpe";

std::string model_dir() { return fc::test::data_path("models/" + kModel); }

// A scratch file in the build directory, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = std::string(FC_BINARY_DIR) + "/batch_" + std::to_string(getpid()) + "_" + std::to_string(counter()++) +
            ".jsonl";
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string path_;
};

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

// Prompts of different lengths (5 to 63 tokens with this tokenizer and BOS).
std::vector<std::string> prompts() {
  const std::string words[] = {"the cat", "once upon a time", "a dog ran far away", "the mat"};
  std::vector<std::string> out;
  for (int i = 0; i < 10; ++i) {
    std::string p;
    for (int w = 0; w <= (i * 5) % 6; ++w) p += (p.empty() ? "" : " ") + words[(i + w) % 4];
    out.push_back(p);
  }
  return out;
}

// generate --json on one prompt: its ids and text.
json generate_alone(const std::string& dir, const std::string& prompt, const std::string& options) {
  const auto r = run_flashcore("generate --model " + dir + " --device cpu --json " + options + " --prompt '" + prompt +
                               "'");
  INFO(r.err);
  REQUIRE(r.status == 0);
  return json::parse(r.out);
}

// Exit status 1 and one error line, after the warnings about bad input lines if any.
void check_error(const fc::test::CliResult& r, const std::string& contains, int warnings = 0) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.err_lines() == warnings + 1);
  const size_t last = r.err.rfind('\n', r.err.size() - 2);
  CHECK_THAT(r.err.substr(last == std::string::npos ? 0 : last + 1), StartsWith("error: ") && Contains(contains));
}

}  // namespace

TEST_CASE("batch: bad lines are reported with their line number and skipped; --strict makes them fatal",
          "[cli][batch]") {
  const TempFile input(R"({"id": 1, "prompt": "the cat"}
not json
{"id": "two", "prompt": "the dog", "max_new_tokens": 3, "colour": "red"}

{"id": 3}
{"id": 4, "prompt": "the mat", "temperature": "hot"}
{"id": 5, "messages": [{"role": "user"}]}
[1, 2]
{"id": 6, "prompt": "a cat", "top_p": 1.5}
{"id": 7, "prompt": "once", "stop": "\n"}
)");
  const auto r = run_flashcore("batch --model " + model_dir() + " --device cpu --temperature 0 --max-new-tokens 4 "
                               "--input " + input.path());
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["id"] == 1);
  CHECK(lines[1]["id"] == "two");
  CHECK(lines[1]["completion_tokens"] == 3);  // its own max_new_tokens
  CHECK(lines[2]["id"] == 7);
  for (const char* bad : {"line 2: not valid JSON", "line 5: no \"prompt\"", "line 6: \"temperature\" must be a number",
                          "line 7: each message", "line 8: expected a JSON object", "line 9: \"top_p\" must be in [0, 1]"}) {
    CHECK_THAT(r.err, Contains(bad));
  }
  CHECK_THAT(r.err, Contains("ignoring fields batch does not know: \"colour\" (line 3)"));
  CHECK_THAT(r.err, Contains("batch: 3 requests"));

  check_error(run_flashcore("batch --model " + model_dir() + " --device cpu --strict --input " + input.path()),
              "line 2: not valid JSON");
  const TempFile empty("\n\nnope\n");
  check_error(run_flashcore("batch --model " + model_dir() + " --device cpu --input " + empty.path()),
              "no request to run (1 bad lines)", 1);
  check_error(run_flashcore("batch --model " + model_dir() + " --device cpu --input /nonexistent.jsonl"),
              "cannot open /nonexistent.jsonl: No such file");
  // After the input's warnings (6 bad lines, 1 unknown field), before the model is loaded.
  check_error(run_flashcore("batch --model " + model_dir() + " --device cpu --input " + input.path() +
                            " --output /nonexistent/results.jsonl"),
              "cannot write /nonexistent/results.jsonl", 7);
  // --input -: the requests on stdin.
  const auto piped = run_flashcore("batch --model " + model_dir() + " --device cpu --temperature 0 --max-new-tokens 2 "
                                   "--input -", R"({"id": "p", "prompt": "the cat"})" "\n");
  REQUIRE(piped.status == 0);
  CHECK(json_lines(piped.out).at(0)["id"] == "p");
  // Refused before the input is read (no warnings).
  check_error(run_flashcore("batch --model " + model_dir() + " --device cpu --max-batch 8 --max-batch-tokens 4 "
                            "--input " + input.path()),
              "--max-batch-tokens");
  const auto help = run_flashcore("batch --help");
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("xample") && Contains("--max-batch") && Contains("--kv-blocks"));
}

TEST_CASE("batch: results in input order, each equal to generate alone (greedy and seeded, penalties), chunked prefill",
          "[cli][batch]") {
  const auto texts = prompts();
  const bool sampled = GENERATE(false, true);
  INFO((sampled ? "sampled" : "greedy"));
  std::string input;
  for (size_t i = 0; i < texts.size(); ++i) {
    // Different lengths, so requests finish out of input order; seeds of their own for half of them.
    json line = {{"id", "r" + std::to_string(i)}, {"prompt", texts[i]}, {"max_new_tokens", 3 + (i * 7) % 17}};
    if (sampled && i % 2 == 0) line["seed"] = 100 + i;
    if (sampled && i % 3 == 0) line["top_k"] = 20;
    if (i % 4 == 1) line["repetition_penalty"] = 1.3;
    if (i % 4 == 3) line["frequency_penalty"] = 0.8;
    input += line.dump() + "\n";
  }
  const TempFile file(input);
  const std::string sampling = sampled ? "--temperature 0.9 --top-p 0.95 --seed 7" : "--temperature 0";
  const std::string out = file.path() + ".out";
  // 3 sequences, 10 tokens a step: longer prompts are prefilled in chunks beside the others' decodes.
  const auto r = run_flashcore("batch --model " + model_dir() + " --device cpu " + sampling +
                               " --max-batch 3 --max-batch-tokens 10 --input " + file.path() + " --output " + out);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto lines = json_lines(fc::test::slurp(out));
  std::remove(out.c_str());
  REQUIRE(lines.size() == texts.size());
  CHECK_THAT(r.err, Contains("batch: 10 requests") && Contains("0 preemptions"));
  for (size_t i = 0; i < texts.size(); ++i) {
    INFO("request " << i << ": " << lines[i].dump());
    CHECK(lines[i]["id"] == "r" + std::to_string(i));
    std::string options = "--max-new-tokens " + std::to_string(3 + (i * 7) % 17) + " ";
    if (sampled) {
      // Each line names its seed: --seed 7 plus the line index where the request has none.
      CHECK(lines[i]["seed"] == (i % 2 == 0 ? 100 + i : 7 + i));
      options += "--temperature 0.9 --top-p 0.95 --seed " + std::to_string(lines[i]["seed"].get<uint64_t>());
      if (i % 3 == 0) options += " --top-k 20";
    } else {
      CHECK_FALSE(lines[i].contains("seed"));
      options += "--temperature 0";
    }
    if (i % 4 == 1) options += " --repetition-penalty 1.3";
    if (i % 4 == 3) options += " --frequency-penalty 0.8";
    const json want = generate_alone(model_dir(), texts[i], options);
    CHECK(lines[i]["token_ids"] == want["ids"]);
    CHECK(lines[i]["text"] == want["text"]);
    CHECK(lines[i]["prompt_tokens"] == want["prompt_tokens"]);
    CHECK(lines[i]["completion_tokens"] == want["generated_tokens"]);
    CHECK(lines[i]["stop_reason"] == want["stop_reason"]);
    CHECK(lines[i]["ttft_ms"].get<double>() > 0);
  }
}

TEST_CASE("batch: chat messages and stop strings as generate --chat --stop", "[cli][batch]") {
  // The fixture's tokenizer has no chat tokens; naming <eos> as BOS/EOS gives it the [INST] format.
  ScratchCheckpoint c(kModel);
  c.write("tokenizer_config.json", R"({"bos_token": "<eos>", "eos_token": "<eos>"})");
  const std::string options = "--temperature 0 --max-new-tokens 12";
  // A stop string that the free run's text holds after its start: two letters.
  const json free_run = generate_alone(c.dir(), "the cat", options);
  const std::string text = free_run["text"];
  size_t at = 2;
  while (at + 1 < text.size() && !(std::isalpha(static_cast<unsigned char>(text[at])) &&
                                   std::isalpha(static_cast<unsigned char>(text[at + 1])))) {
    ++at;
  }
  REQUIRE(at + 1 < text.size());
  const std::string stop = text.substr(at, 2);
  const TempFile input(json{{"id", "m"}, {"messages", {{{"role", "user"}, {"content", "hello there"}}}}}.dump() +
                       "\n" + json{{"id", "s"}, {"prompt", "the cat"}, {"stop", {stop, "zz"}}}.dump() + "\n");
  const auto r = run_flashcore("batch --model " + c.dir() + " --device cpu " + options + " --input " + input.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 2);
  const json chat = generate_alone(c.dir(), "hello there", options + " --chat");
  CHECK(lines[0]["token_ids"] == chat["ids"]);
  CHECK(lines[0]["text"] == chat["text"]);
  CHECK(lines[0]["prompt_tokens"] == chat["prompt_tokens"]);
  const json stopped = generate_alone(c.dir(), "the cat", options + " --stop '" + stop + "' --stop zz");
  REQUIRE(stopped["stop_reason"] == "stop string");
  CHECK(lines[1]["stop_reason"] == "stop string");
  CHECK(lines[1]["stop_string"] == stop);
  CHECK(lines[1]["text"] == stopped["text"]);
  CHECK(lines[1]["token_ids"] == stopped["ids"]);
  CHECK(lines[1]["token_ids"].size() < free_run["ids"].size());
}

TEST_CASE("batch: a KV pool too small for the batch preempts; every request answered, as alone", "[cli][batch]") {
  const auto texts = prompts();
  std::string input;
  for (size_t i = 0; i < texts.size(); ++i) input += json{{"id", i}, {"prompt", texts[i]}}.dump() + "\n";
  // 6 blocks of 16 tokens (96 tokens) for 4 sequences of up to 63 + 20 tokens; and one prompt of about
  // 130 tokens that cannot fit the pool at all.
  std::string huge;
  for (int i = 0; i < 11; ++i) huge += "once upon a time ";
  input += json{{"id", "huge"}, {"prompt", huge}}.dump() + "\n";
  const TempFile file(input);
  const auto r = run_flashcore("batch --model " + model_dir() + " --device cpu --temperature 0 --max-new-tokens 20 "
                               "--max-batch 4 --kv-blocks 6 --input " + file.path());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == texts.size() + 1);
  CHECK_THAT(r.err, Contains("(1 failed)") && !Contains(" 0 preemptions"));
  CHECK_THAT(lines.back()["error"].get<std::string>(), Contains("exceeds the context of 96 tokens (the whole KV pool)"));
  CHECK(lines.back()["id"] == "huge");
  for (size_t i = 0; i < texts.size(); ++i) {
    INFO("request " << i);
    CHECK(lines[i]["id"] == i);
    const json want = generate_alone(model_dir(), texts[i], "--temperature 0 --max-new-tokens 20");
    CHECK(lines[i]["token_ids"] == want["ids"]);
  }
}

TEST_CASE("batch: Ctrl-C stops admitting, writes the finished results as whole lines, exit 130", "[cli][batch][signals]") {
  // Requests that would run for ever (a context of a million tokens, greedy, no stop id in the way of
  // "the cat": test_cli_interrupt.cpp) between two short ones. The first short one is written at once;
  // the second finishes as soon but waits behind the endless one: Ctrl-C writes it too, in order.
  ScratchCheckpoint c(kModel);
  c.edit_json("config.json", [](json& j) { j["max_position_embeddings"] = 1000000; });
  std::string input = json{{"id", "short1"}, {"prompt", "the cat"}, {"max_new_tokens", 2}}.dump() + "\n";
  input += json{{"id", "long1"}, {"prompt", "the cat"}}.dump() + "\n";
  input += json{{"id", "short2"}, {"prompt", "the dog"}, {"max_new_tokens", 2}}.dump() + "\n";
  for (int i = 0; i < 5; ++i) input += json{{"id", "queued" + std::to_string(i)}, {"prompt", "the cat"}}.dump() + "\n";
  const TempFile file(input);
  CliProcess p({"batch", "--model", c.dir(), "--device", "cpu", "--no-bos", "--temperature", "0", "--max-context",
                "1000000", "--max-new-tokens", "999000", "--max-batch", "3", "--kv-blocks", "4000", "--input",
                file.path()});
  REQUIRE(p.started());
  // short1's line: the run is in its loop, and short2 finished in the same step.
  REQUIRE(p.wait_for_stdout(10, 20000));
  REQUIRE(p.running());
  p.send(SIGINT);
  const int status = p.wait(20000);
  INFO("stdout: " << p.out() << "\nstderr: " << p.err());
  CHECK(status == 130);
  REQUIRE(!p.out().empty());
  CHECK(p.out().back() == '\n');
  const auto lines = json_lines(p.out());
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["id"] == "short1");
  CHECK(lines[1]["id"] == "short2");
  for (const json& l : lines) CHECK(l["completion_tokens"] == 2);
  // The tokens of the unfinished requests count in the summary (throughput of the run so far).
  CHECK_THAT(p.err(), Contains("batch interrupted: 2 of 8 requests finished") && !Contains(" 4 generated tokens"));
}
