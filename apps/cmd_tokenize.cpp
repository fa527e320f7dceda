// flashcore tokenize: text on stdin -> token ids on stdout, or (--decode) a JSON id array -> text.
// Bytes are taken exactly as given (no newline stripping), so `printf 'a\n' | flashcore tokenize`
// encodes the newline too.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace fc::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer_path;
  std::string model_dir;
  bool bos = false;
  bool json = false;
  bool decode = false;
  bool no_special = false;
  bool pieces = false;
};

std::string read_stdin() {
  std::string data;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), stdin)) > 0) data.append(buffer, n);
  if (std::ferror(stdin)) fail("cannot read standard input");
  return data;
}

std::vector<TokenId> parse_id_array(const std::string& input) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(input);
  } catch (const nlohmann::json::exception&) {
    fail("--decode expects a JSON array of token ids on stdin, e.g. [128000, 9906]");
  }
  if (!j.is_array()) fail("--decode expects a JSON array of token ids on stdin, got {}", j.type_name());
  std::vector<TokenId> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer()) fail("--decode: element {} of the array is not an integer: {}", i, j[i].dump());
    const auto v = j[i].get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) fail("token id {} out of range", v);
    ids.push_back(static_cast<TokenId>(v));
  }
  return ids;
}

int run_tokenize(const TokenizeOptions& o) {
  const auto tokenizer = load_tokenizer(o.model_dir.empty() ? o.tokenizer_path : o.model_dir);
  const std::string input = read_stdin();
  if (o.decode) {
    const std::string text = tokenizer->decode(parse_id_array(input));
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  const std::vector<TokenId> ids = tokenizer->encode(input, o.bos, !o.no_special);
  std::string out;
  if (o.pieces) {
    for (TokenId id : ids) out += std::to_string(id) + "\t" + tokenizer->token_text(id) + "\n";
  } else {
    out += o.json ? "[" : "";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out += o.json ? ", " : " ";
      out += std::to_string(ids[i]);
    }
    out += o.json ? "]\n" : "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

Runner add_tokenize_command(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  app.footer(
      "Examples:\n  printf 'Hello, world!' | flashcore tokenize --tokenizer .cache/llama3_1/tokenizer.json --json --bos\n"
      "  echo '[128000, 9906, 11, 1917, 0]' | flashcore tokenize --model DIR --decode");
  auto* tokenizer = app.add_option("--tokenizer", o->tokenizer_path, "tokenizer.json or tokenizer.model file");
  auto* model = app.add_option("--model", o->model_dir, "model directory holding tokenizer.json / tokenizer.model");
  tokenizer->excludes(model);
  model->excludes(tokenizer);
  app.add_flag("--bos", o->bos, "add the tokens the tokenizer puts around a sequence (LLaMA: BOS)");
  app.add_flag("--json", o->json, "print the ids as a JSON array");
  app.add_flag("--decode", o->decode, "read a JSON array of ids from stdin and print the text");
  app.add_flag("--no-special", o->no_special, "encode special-token text such as <|eot_id|> as plain text");
  app.add_flag("--pieces", o->pieces, "print one 'id<TAB>token' line per token");
  return [o]() -> int {
    if (o->tokenizer_path.empty() && o->model_dir.empty()) fail("tokenize: give --tokenizer FILE or --model DIR");
    return run_tokenize(*o);
  };
}

}  // namespace fc::cli
