// flashcore batch: many prompts from a JSON Lines file through the continuous-batching scheduler
// (engine/scheduler.h), one result line per request in input order (apps/batch_io.h), a progress bar
// and a summary line on stderr. Ctrl-C stops the run after the current step: the requests finished so far
// are written (whole lines only) and the exit status is 130.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>

#include <spdlog/spdlog.h>

#include "apps/batch_io.h"
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/defer_signals.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/progress.h"
#include "engine/scheduler.h"
#include "tokenizer/chat.h"

namespace fc::cli {

namespace {

struct BatchOptions {
  ModelOptions model;
  std::string input, output;
  std::vector<std::string> stops;
  int max_batch = 32, max_batch_tokens = 2048, kv_blocks = 0;
  bool chat = false, no_bos = false, strict = false;
};

// Result lines in input order: a line is written as soon as its request and every one before it have
// finished, so the output grows during the run; each write is whole (Ctrl-C deferred while it runs).
class OrderedWriter {
 public:
  OrderedWriter(FILE* out, int count) : out_(out), lines_(count) {}
  void finished(int request, std::string line) {
    lines_[request] = std::move(line);
    for (; next_ < static_cast<int>(lines_.size()) && lines_[next_]; ++next_) write(*lines_[next_]);
  }
  // An interrupted run: the finished lines not written yet, still in input order (the gaps are the
  // requests that did not finish; each line carries its id).
  void write_remaining() {
    for (; next_ < static_cast<int>(lines_.size()); ++next_) {
      if (lines_[next_]) write(*lines_[next_]);
    }
  }

 private:
  void write(std::string& line) {
    {
      const DeferTerminationSignals whole_line;
      std::fwrite(line.data(), 1, line.size(), out_);
      std::fflush(out_);
    }
    if (std::ferror(out_)) fail("cannot write the results (disk full or output closed?)");
    line = std::string();  // written: free it
  }
  FILE* out_;
  std::vector<std::optional<std::string>> lines_;
  int next_ = 0;
};

BatchInput read_input(const BatchOptions& o) {
  BatchInput input;
  if (o.input == "-") {
    input = read_batch_input(std::cin, o.strict);
  } else {
    std::ifstream in(o.input, std::ios::binary);
    if (!in) fail("cannot open {}: {}", o.input, std::strerror(errno));
    try {
      input = read_batch_input(in, o.strict);
    } catch (const Error& e) {
      fail("{} {}", o.input, e.what());  // --strict: "PROMPTS.jsonl line 3: ..."
    }
  }
  for (const std::string& e : input.errors) spdlog::warn("{} {} (skipped)", o.input, e);
  if (!input.unknown_fields.empty()) {
    std::string names;
    for (const std::string& f : input.unknown_fields) names += (names.empty() ? "" : ", ") + f;
    spdlog::warn("{}: ignoring fields batch does not know: {}", o.input, names);
  }
  if (input.requests.empty()) fail("{}: no request to run ({} bad lines)", o.input, input.errors.size());
  return input;
}

// The prompt ids of a request: `messages`, or with --chat its prompt as one user turn, through the chat
// template (--system first when the conversation has no system message); else the prompt encoded, BOS
// first unless --no-bos. Throws fc::Error, which becomes that request's error.
std::vector<int32_t> encode_request(const BatchLine& r, const LoadedModel& m, const BatchOptions& o) {
  const Tokenizer& tok = *m.tokenizer;
  if (r.prompt && !o.chat) return tok.encode(*r.prompt, !o.no_bos);
  std::vector<ChatMessage> messages = r.prompt ? std::vector<ChatMessage>{{"user", *r.prompt}} : r.messages;
  if (!o.model.system.empty() && messages.front().role != "system") {
    messages.insert(messages.begin(), {"system", o.model.system});
  }
  return format_chat(tok, detect_chat_format(tok), messages, m.config_eos).ids;
}

// The request's sampling: its own fields over the command line's (and generation_config.json's). A
// request that samples without a seed of its own gets base_seed + its 0-based line index.
GenerationParams request_params(const BatchLine& r, const GenerationParams& defaults, uint64_t base_seed) {
  GenerationParams p = defaults;
  SamplingParams& s = p.sampling;
  p.max_new_tokens = r.max_new_tokens.value_or(p.max_new_tokens);
  s.temperature = r.temperature.value_or(s.temperature);
  s.top_p = r.top_p.value_or(s.top_p);
  s.top_k = r.top_k.value_or(s.top_k);
  s.min_p = r.min_p.value_or(s.min_p);
  s.repetition_penalty = r.repetition_penalty.value_or(s.repetition_penalty);
  s.presence_penalty = r.presence_penalty.value_or(s.presence_penalty);
  s.frequency_penalty = r.frequency_penalty.value_or(s.frequency_penalty);
  s.seed = r.seed.value_or(base_seed + static_cast<uint64_t>(r.line - 1));
  return p;
}

// The time per output token of a finished request (after its first token); nullopt below two tokens.
std::optional<double> ms_per_output_token(const BatchResult& r) {
  if (r.ids.size() < 2) return std::nullopt;
  return (r.finish_ms - r.ttft_ms) / static_cast<double>(r.ids.size() - 1);
}

// One run around the scheduler: each request's text (stop strings, detokenization), its result line in
// input order, and the summary.
class BatchRun {
 public:
  BatchRun(const BatchOptions& o, const std::vector<BatchLine>& lines, LoadedModel& m, FILE* out)
      : o_(o), lines_(lines), m_(m), writer_(out, static_cast<int>(lines.size())), shown_(lines.size()) {}

  // Runs every request (or until Ctrl-C); returns the exit status.
  int run() {
    std::vector<BatchRequest> requests = encode_all();
    warm_up_and_report(m_, mean_prompt_tokens(requests));
    SchedulerOptions so{o_.max_batch, o_.max_batch_tokens};
    Scheduler::Callbacks callbacks;
    callbacks.on_token = [this](int s, int32_t id) { return on_token(s, id); };
    callbacks.on_finish = [this](int s) { on_finish(s); };
    scheduler_ = std::make_unique<Scheduler>(*m_.backend, so, callbacks);
    RequestProgress progress(static_cast<int>(lines_.size()), !global_options().quiet);
    install_interrupt_handler();
    const auto t0 = std::chrono::steady_clock::now();
    for (BatchRequest& r : requests) {
      if (!r.prompt.empty()) scheduler_->add(std::move(r));
    }
    while (!interrupted() && scheduler_->step()) progress.update(finished_, scheduler_->stats().generated_tokens);
    progress.finish();
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (interrupted()) writer_.write_remaining();
    if (!global_options().quiet || interrupted()) print_summary(wall_s);
    return interrupted() ? 130 : 0;
  }

 private:
  // Every line's prompt ids and parameters; a line whose prompt cannot be built is answered with its
  // error at once (and gets an empty request, not run).
  std::vector<BatchRequest> encode_all() {
    const bool seed_given = o_.model.seed_opt->count() > 0;
    const uint64_t base_seed = seed_given ? o_.model.seed : m_.random_seed ? m_.params.sampling.seed : draw_random_seed();
    std::vector<std::string> stop_strings;
    for (const std::string& s : o_.stops) stop_strings.push_back(unescape_stop_string(s));
    std::vector<BatchRequest> requests(lines_.size());
    for (size_t i = 0; i < lines_.size(); ++i) {
      texts_.emplace_back(*m_.tokenizer, m_.params.stop_ids, lines_[i].stop.value_or(stop_strings));
      requests[i].params = request_params(lines_[i], m_.params, base_seed);
      try {
        requests[i].prompt = encode_request(lines_[i], m_, o_);
        if (requests[i].prompt.empty()) fail("the prompt encodes to no tokens");
        request_of_.push_back(static_cast<int>(i));
      } catch (const Error& e) {
        BatchResult failed;
        failed.error = e.what();
        ++errors_;
        ++finished_;
        writer_.finished(static_cast<int>(i), result_line(lines_[i], failed, {}));
      }
    }
    return requests;
  }

  static int mean_prompt_tokens(const std::vector<BatchRequest>& requests) {
    size_t tokens = 0, count = 0;
    for (const BatchRequest& r : requests) {
      tokens += r.prompt.size();
      count += r.prompt.empty() ? 0 : 1;
    }
    return count == 0 ? 1 : static_cast<int>(tokens / count);
  }

  bool on_token(int s, int32_t id) {
    const int i = request_of_[s];
    shown_[i] += texts_[i].push(id);
    return !texts_[i].stopped();
  }

  void on_finish(int s) {
    const int i = request_of_[s];
    BatchResult result = scheduler_->result(s);
    const SamplingParams& sampling = scheduler_->request(s).params.sampling;
    BatchOutcome outcome;
    outcome.text = std::move(shown_[i]) + texts_[i].finish();
    outcome.stop_string = texts_[i].matched();
    outcome.sampled = sampling.temperature > 0;
    outcome.seed = sampling.seed;
    if (texts_[i].stopped()) result.stop = StopReason::StopString;  // the scheduler saw on_token's false
    ++finished_;
    if (!result.error.empty()) ++errors_;
    if (const auto ms = ms_per_output_token(result)) ms_per_output_token_.push_back(*ms);
    writer_.finished(i, result_line(lines_[i], result, outcome));
  }

  void print_summary(double wall_s) const {
    const SchedulerStats& stats = scheduler_->stats();
    const std::vector<double>& tpot = ms_per_output_token_;
    const double mean = tpot.empty() ? 0 : std::accumulate(tpot.begin(), tpot.end(), 0.0) / tpot.size();
    const int requests = static_cast<int>(lines_.size());
    std::string head = interrupted() ? fmt::format("batch interrupted: {} of {} requests finished", finished_, requests)
                                     : fmt::format("batch: {} requests", requests);
    if (errors_ > 0) head += fmt::format(" ({} failed)", errors_);
    // Tokens as the scheduler counted them: an interrupted run's unfinished requests count too.
    std::fprintf(stderr,
                 "%s, %lld prompt tokens, %lld generated tokens in %.2f s: %.1f generated tok/s, time per output "
                 "token mean %.2f ms, p90 %.2f ms; %lld preemptions; %.1f sequences per step\n",
                 head.c_str(), static_cast<long long>(stats.prompt_tokens),
                 static_cast<long long>(stats.generated_tokens), wall_s,
                 wall_s > 0 ? stats.generated_tokens / wall_s : 0.0, mean, percentile(tpot, 90),
                 static_cast<long long>(stats.preemptions),
                 stats.steps > 0 ? static_cast<double>(stats.rows) / stats.steps : 0.0);
  }

  const BatchOptions& o_;
  const std::vector<BatchLine>& lines_;
  LoadedModel& m_;
  OrderedWriter writer_;
  std::vector<GenerationText> texts_;  // per line
  std::vector<std::string> shown_;     // per line: the text so far
  std::vector<int> request_of_;        // scheduler index -> line
  std::unique_ptr<Scheduler> scheduler_;
  int finished_ = 0, errors_ = 0;
  std::vector<double> ms_per_output_token_;
};

int run_batch(BatchOptions& o) {
  // What can be refused without the model, before reading the input or loading gigabytes of weights.
  parse_device(o.model.device);
  Scheduler::check_options({o.max_batch, o.max_batch_tokens});
  const BatchInput input = read_input(o);
  FILE* out = stdout;
  if (!o.output.empty()) {
    out = std::fopen(o.output.c_str(), "wb");
    if (out == nullptr) fail("cannot write {}: {}", o.output, std::strerror(errno));
  }
  const std::unique_ptr<FILE, int (*)(FILE*)> close_out(out == stdout ? nullptr : out, std::fclose);
  BackendOptions bo;
  bo.max_sequences = o.max_batch;
  bo.max_batch_tokens = o.max_batch_tokens;
  bo.kv_blocks = o.kv_blocks;
  LoadedModel m = load_model(o.model, bo);
  return BatchRun(o, input.requests, m, out).run();
}

}  // namespace

Runner add_batch_command(CLI::App& app) {
  auto o = std::make_shared<BatchOptions>();
  app.footer(
      "Input: one JSON object per line: {\"id\": any, \"prompt\": \"text\"} or {\"id\": any, \"messages\": [{\"role\": "
      "\"user\", \"content\": \"...\"}]}, optionally max_new_tokens, temperature, top_p, top_k, min_p, seed, "
      "repetition_penalty, presence_penalty, frequency_penalty, stop.\n"
      "Output: one JSON object per request, in input order: id, text, token_ids, prompt_tokens, completion_tokens, "
      "stop_reason, ttft_ms (and seed when sampled), or id and error.\n"
      "Examples:\n"
      "  flashcore batch --model ~/models/Llama-3.1-8B-Instruct --input prompts.jsonl --output results.jsonl\n"
      "  python3 scripts/make_batch_prompts.py --count 1000 --out prompts.jsonl && flashcore batch --model DIR "
      "--input prompts.jsonl --max-batch 64 --output /dev/null");
  add_model_options(app, o->model);
  app.add_option("--input", o->input, "JSON Lines file of requests (- for stdin)")->required();
  app.add_option("--output", o->output, "write the results here (default: stdout)");
  app.add_option("--max-batch", o->max_batch, "most sequences running at once")->check(CLI::PositiveNumber);
  app.add_option("--max-batch-tokens", o->max_batch_tokens,
                 "most tokens in one step: one per decoding sequence plus prompt chunks (>= --max-batch)")
      ->check(CLI::PositiveNumber);
  app.add_option("--kv-blocks", o->kv_blocks, "KV pool size in blocks of 16 tokens (0: --max-batch full contexts)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--stop", o->stops,
                 "stop when the text contains this string (not shown), for requests without \"stop\"; repeatable; "
                 "\\n, \\t and \\\\ are a newline, a tab and a backslash");
  app.add_flag("--chat", o->chat, "wrap each \"prompt\" in the model's chat template (with --system)");
  app.add_flag("--no-bos", o->no_bos, "do not add BOS to a plain prompt");
  app.add_flag("--strict", o->strict, "a bad input line is an error (default: reported and skipped)");
  return [o]() { return run_batch(*o); };
}

}  // namespace fc::cli
