// Encode throughput of the tokenizer (a benchmark, not a test). Compare with scripts/bench_tokenizer.py,
// which times Hugging Face `tokenizers` on the same text:
//   fc_bench_tokenizer --tokenizer .cache/llama3_1 --text FILE [--repeat 5]
// Reports MB/s (MB = 1e6 bytes of UTF-8 input) for the whole text in one encode() call and for the
// text encoded line by line (many short calls, as a server sees prompts), best of --repeat runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int usage(FILE* to, int status) {
  std::fprintf(to, "usage: fc_bench_tokenizer --tokenizer FILE|DIR --text FILE [--repeat N]\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path, text_path;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return usage(stdout, 0);
    if (i + 1 >= argc) return usage(stderr, 2);
    if (arg == "--tokenizer") tokenizer_path = argv[++i];
    else if (arg == "--text") text_path = argv[++i];
    else if (arg == "--repeat") repeat = std::max(1, std::atoi(argv[++i]));
    else return usage(stderr, 2);
  }
  if (tokenizer_path.empty() || text_path.empty()) return usage(stderr, 2);
  try {
    auto start = std::chrono::steady_clock::now();
    const auto tokenizer = fc::load_tokenizer(tokenizer_path);
    const double load_s = seconds_since(start);
    const std::string text = fc::read_text_file(text_path);
    std::vector<std::string> lines;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find('\n', pos);
      end = end == std::string::npos ? text.size() : end + 1;
      lines.push_back(text.substr(pos, end - pos));
      pos = end;
    }
    const double mb = text.size() / 1e6;
    std::printf("tokenizer: %s (%s), load %.3f s\n", tokenizer_path.c_str(), tokenizer->kind(), load_s);
    std::printf("text: %s, %.2f MB, %zu lines\n", text_path.c_str(), mb, lines.size());

    double best_whole = 1e30, best_lines = 1e30, best_decode = 1e30;
    size_t tokens = 0, line_tokens = 0;
    std::vector<fc::TokenId> ids;
    for (int r = 0; r < repeat; ++r) {
      start = std::chrono::steady_clock::now();
      ids = tokenizer->encode(text, /*add_bos=*/false);
      best_whole = std::min(best_whole, seconds_since(start));
      tokens = ids.size();

      start = std::chrono::steady_clock::now();
      line_tokens = 0;
      for (const std::string& line : lines) line_tokens += tokenizer->encode(line, false).size();
      best_lines = std::min(best_lines, seconds_since(start));

      start = std::chrono::steady_clock::now();
      const std::string back = tokenizer->decode(ids);
      best_decode = std::min(best_decode, seconds_since(start));
      if (back != text) fc::fail("decode(encode(text)) differs from the text");
    }
    std::printf("encode whole text:   %8.2f MB/s  %10.0f tokens/s  (%zu tokens, %.1f bytes/token, best of %d)\n",
                mb / best_whole, tokens / best_whole, tokens, double(text.size()) / tokens, repeat);
    std::printf("encode line by line: %8.2f MB/s  %10.0f tokens/s  (%zu tokens)\n", mb / best_lines,
                line_tokens / best_lines, line_tokens);
    std::printf("decode whole text:   %8.2f MB/s\n", mb / best_decode);
  } catch (const fc::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
