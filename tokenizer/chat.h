// Chat prompts for the LLaMA instruct formats, built as token ids (BOS exactly once, headers as their
// special ids, message text encoded as plain text so a user cannot type "<|eot_id|>" into a turn),
// plus the ids that end the assistant's turn.
#pragma once
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fc {

enum class ChatFormat {
  kLlama3,   // <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|> (LLaMA 3 / 3.0 template)
  kLlama31,  // the same, with the system block LLaMA 3.1+ templates always emit (knowledge/today date)
  kLlama2,   // <s>[INST] <<SYS>>\n system \n<</SYS>>\n\n user [/INST] answer </s> (Meta's llama 2 code)
};

const char* chat_format_name(ChatFormat format);

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (LLaMA 3 also takes any other role name)
  std::string content;
};

struct ChatOptions {
  bool add_generation_prompt = true;  // end with the assistant header, ready for generation
  std::string date = "26 Jul 2024";   // "Today Date" of the LLaMA 3.1 system block (the template's default)
};

struct ChatPrompt {
  std::vector<TokenId> ids;        // what the model reads
  std::string text;                // the same prompt as text, special tokens spelled out (for logs)
  std::vector<TokenId> stop_ids;   // see chat_stop_ids()
};

// The format of the tokenizer's chat_template: LLaMA 3 headers or [INST]. Without a template, LLaMA 3
// when the vocabulary has <|start_header_id|>, else [INST]. Throws fc::Error for any other template.
ChatFormat detect_chat_format(const Tokenizer& tokenizer);

// Ids that end generation: every eos from config.json / generation_config.json (`config_eos_ids`, as
// the model loader parsed them), the tokenizer's eos, and <|eot_id|> when the vocabulary has it.
std::vector<TokenId> chat_stop_ids(const Tokenizer& tokenizer, const std::vector<TokenId>& config_eos_ids);

// Builds the prompt. Throws fc::Error for an empty conversation, a LLaMA 2 conversation that does not
// alternate user/assistant (after an optional system message), or a tokenizer lacking the format's
// special tokens.
ChatPrompt format_chat(const Tokenizer& tokenizer, ChatFormat format, const std::vector<ChatMessage>& messages,
                       const std::vector<TokenId>& config_eos_ids, const ChatOptions& options = {});

// Python's str.strip() (what the templates' `| trim` and Meta's code apply to message text).
std::string strip_python_whitespace(std::string_view text);

}  // namespace fc
