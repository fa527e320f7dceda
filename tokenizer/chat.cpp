#include "tokenizer/chat.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace fc {
namespace {

// str.isspace(): bidirectional class WS, B or S, or category Zs.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Accumulates ids and the matching text.
struct Builder {
  const Tokenizer& tokenizer;
  ChatPrompt prompt;

  void special(const char* spelling) {
    const TokenId id = tokenizer.token_id(spelling);
    if (id == kNoToken) fail("chat format needs the token {} but the vocabulary has no such token", spelling);
    prompt.ids.push_back(id);
    prompt.text += spelling;
  }
  void id(TokenId token, const char* what) {
    if (token == kNoToken) fail("chat format needs a {} token but the tokenizer has none", what);
    prompt.ids.push_back(token);
    prompt.text += tokenizer.token_text(token);
  }
  void plain(std::string_view text) {
    const std::vector<TokenId> ids = tokenizer.encode(text, /*add_bos=*/false, /*parse_special=*/false);
    prompt.ids.insert(prompt.ids.end(), ids.begin(), ids.end());
    prompt.text += text;
  }
};

void llama3(Builder& b, bool with_system_block, const std::vector<ChatMessage>& messages, const ChatOptions& o) {
  b.id(b.tokenizer.bos_id(), "BOS");
  size_t first = 0;
  auto header = [&](const std::string& role) {
    b.special("<|start_header_id|>");
    b.plain(role);
    b.special("<|end_header_id|>");
  };
  if (with_system_block) {
    std::string system;
    if (!messages.empty() && messages[0].role == "system") {
      system = strip_python_whitespace(messages[0].content);
      first = 1;
    }
    header("system");
    b.plain("\n\nCutting Knowledge Date: December 2023\nToday Date: " + o.date + "\n\n" + system);
    b.special("<|eot_id|>");
  }
  for (size_t i = first; i < messages.size(); ++i) {
    header(messages[i].role);
    b.plain("\n\n" + strip_python_whitespace(messages[i].content));
    b.special("<|eot_id|>");
  }
  if (o.add_generation_prompt) {
    header("assistant");
    b.plain("\n\n");
  }
}

void llama2(Builder& b, const std::vector<ChatMessage>& messages, const ChatOptions& o) {
  std::vector<ChatMessage> turns(messages.begin(), messages.end());
  if (turns[0].role == "system") {
    if (turns.size() < 2) fail("chat: a LLaMA 2 conversation needs a user message after the system message");
    turns[1].content = "<<SYS>>\n" + turns[0].content + "\n<</SYS>>\n\n" + turns[1].content;
    turns.erase(turns.begin());
  }
  for (size_t i = 0; i < turns.size(); ++i) {
    const char* expected = i % 2 == 0 ? "user" : "assistant";
    if (turns[i].role != expected) {
      fail("chat: LLaMA 2 format needs user/assistant turns alternating from user; message {} is '{}'", i + 1,
           turns[i].role);
    }
  }
  // Meta's llama/generation.py: each answered turn is BOS "[INST] q [/INST] a " EOS; the open one is
  // BOS "[INST] q [/INST]".
  const TokenId eos = b.tokenizer.eos_ids().empty() ? kNoToken : b.tokenizer.eos_ids().front();
  for (size_t i = 0; i < turns.size(); i += 2) {
    b.id(b.tokenizer.bos_id(), "BOS");
    const std::string question = strip_python_whitespace(turns[i].content);
    if (i + 1 < turns.size()) {
      b.plain("[INST] " + question + " [/INST] " + strip_python_whitespace(turns[i + 1].content) + " ");
      b.id(eos, "EOS");
    } else {
      b.plain("[INST] " + question + " [/INST]");
    }
  }
  if (o.add_generation_prompt && turns.size() % 2 == 0) {
    fail("chat: the last LLaMA 2 message must be the user's to generate an answer");
  }
}

}  // namespace

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kLlama31: return "llama3.1";
    case ChatFormat::kLlama2: return "llama2";
  }
  return "?";
}

std::string strip_python_whitespace(std::string_view text) {
  // Text is well-formed UTF-8 here (check_utf8 ran in encode()); find the first/last non-space.
  size_t begin = 0, i = 0, end = 0;
  bool seen = false;
  while (i < text.size()) {
    const size_t at = i;
    const char32_t c = next_code_point(text, i);
    if (!is_python_space(c)) {
      if (!seen) begin = at;
      seen = true;
      end = i;
    }
  }
  return seen ? std::string(text.substr(begin, end - begin)) : std::string();
}

ChatFormat detect_chat_format(const Tokenizer& tokenizer) {
  const std::string& t = tokenizer.chat_template();
  if (t.empty()) {
    return tokenizer.token_id("<|start_header_id|>") != kNoToken ? ChatFormat::kLlama3 : ChatFormat::kLlama2;
  }
  if (t.find("<|start_header_id|>") != std::string::npos) {
    return t.find("Cutting Knowledge Date") != std::string::npos ? ChatFormat::kLlama31 : ChatFormat::kLlama3;
  }
  if (t.find("[INST]") != std::string::npos) return ChatFormat::kLlama2;
  fail("unsupported chat_template: neither LLaMA 3 headers (<|start_header_id|>) nor LLaMA 2 [INST]");
}

std::vector<TokenId> chat_stop_ids(const Tokenizer& tokenizer, const std::vector<TokenId>& config_eos_ids) {
  std::vector<TokenId> ids;
  auto add = [&](TokenId id) {
    if (id == kNoToken || std::find(ids.begin(), ids.end(), id) != ids.end()) return;
    tokenizer.check_id(id);
    ids.push_back(id);
  };
  for (TokenId id : config_eos_ids) add(id);
  for (TokenId id : tokenizer.eos_ids()) add(id);
  add(tokenizer.eot_id());
  return ids;
}

ChatPrompt format_chat(const Tokenizer& tokenizer, ChatFormat format, const std::vector<ChatMessage>& messages,
                       const std::vector<TokenId>& config_eos_ids, const ChatOptions& options) {
  if (messages.empty()) fail("chat: no messages");
  for (const ChatMessage& m : messages) {
    check_utf8(m.role, "a chat role");
    check_utf8(m.content, "a chat message");
  }
  Builder b{tokenizer, {}};
  switch (format) {
    case ChatFormat::kLlama3: llama3(b, false, messages, options); break;
    case ChatFormat::kLlama31: llama3(b, true, messages, options); break;
    case ChatFormat::kLlama2: llama2(b, messages, options); break;
  }
  b.prompt.stop_ids = chat_stop_ids(tokenizer, config_eos_ids);
  return std::move(b.prompt);
}

}  // namespace fc
