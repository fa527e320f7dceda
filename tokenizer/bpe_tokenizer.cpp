#include "tokenizer/bpe_tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace fc {
namespace {

using nlohmann::json;

bool is_byte_level_decoder(const json& decoder) {
  if (decoder.is_null()) return false;
  const std::string type = decoder.value("type", "");
  if (type == "ByteLevel") return true;
  if (type == "Sequence") {
    const auto& list = decoder.at("decoders");
    return list.size() == 1 && is_byte_level_decoder(list[0]);
  }
  return false;
}

bool has_byte_level_pre_tokenizer(const json& pre) {
  if (pre.is_null()) return false;
  const std::string type = pre.value("type", "");
  if (type == "ByteLevel") return true;
  if (type == "Sequence") {
    for (const auto& sub : pre.at("pretokenizers")) {
      if (has_byte_level_pre_tokenizer(sub)) return true;
    }
  }
  return false;
}

bool null_or_empty(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
}

// A token id as tokenizer.json writes it. nlohmann's get<int>() of a float or a huge integer is undefined
// behaviour or a silent wrap (found by fuzz/fuzz_tokenizer_json), and a huge id would make set_token
// allocate gigabytes; 2^24 is far above any real vocabulary (LLaMA 3: 128256).
TokenId json_token_id(const json& value) {
  constexpr long long kMaxTokenId = 1 << 24;
  if (!value.is_number_integer() || value.get<long long>() < 0 || value.get<long long>() >= kMaxTokenId) {
    fail("token id {} is not an integer in [0, {})", value.dump(), kMaxTokenId);
  }
  return static_cast<TokenId>(value.get<long long>());
}

// Collects the SpecialToken ids of a TemplateProcessing "single" template around Sequence A.
void template_ids(const json& processor, std::vector<TokenId>& prefix, std::vector<TokenId>& suffix) {
  const auto& specials = processor.at("special_tokens");
  bool seen_sequence = false;
  for (const auto& item : processor.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    auto it = specials.find(name);
    if (it == specials.end()) fail("post_processor template names '{}' but special_tokens lacks it", name);
    for (const auto& id : it->at("ids")) (seen_sequence ? suffix : prefix).push_back(json_token_id(id));
  }
}

}  // namespace

std::string bpe_unsupported_reason(const json& j) {
  const json& model = j.at("model");
  const std::string type = model.value("type", "");
  if (type != "BPE") return "model type is '" + type + "', not BPE";
  if (!has_byte_level_pre_tokenizer(j.value("pre_tokenizer", json()))) return "the pre-tokenizer is not byte-level";
  if (!is_byte_level_decoder(j.value("decoder", json()))) return "the decoder is not ByteLevel";
  if (!j.value("normalizer", json()).is_null()) return "it has a normalizer";
  if (!null_or_empty(model, "continuing_subword_prefix") || !null_or_empty(model, "end_of_word_suffix")) {
    return "it uses continuing_subword_prefix / end_of_word_suffix";
  }
  auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && dropout->get<double>() > 0.0) return "it uses BPE dropout";
  return "";
}

BpeTokenizer::BpeTokenizer(const json& j, const TokenizerConfig& config, const std::string& path) : path_(path) {
  try {
    const std::string reason = bpe_unsupported_reason(j);
    if (!reason.empty()) fail("not a byte-level BPE tokenizer: {}", reason);
    const json& model = j.at("model");
    load_vocab(model);
    load_merges(model);
    load_added_tokens(j.value("added_tokens", json::array()));
    BpeModel::Options options;
    options.ignore_merges = model.value("ignore_merges", false);
    options.fuse_unk = model.value("fuse_unk", false);
    options.byte_fallback = model.value("byte_fallback", false);
    if (!null_or_empty(model, "unk_token")) {
      options.unk = token_id(model["unk_token"].get<std::string>());
      if (options.unk == kNoToken) fail("unk_token '{}' is not in the vocabulary", model["unk_token"].get<std::string>());
    }
    model_.finish(options);
    pre_tokenizer_ = PreTokenizer::from_json(j.value("pre_tokenizer", json()));
    load_post_processor(j.value("post_processor", json()));
    set_special_ids(config);
    chat_template_ = config.chat_template;
  } catch (const json::exception& e) {
    fail("{}: {}", path, e.what());
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

void BpeTokenizer::set_token(TokenId id, std::string_view text) {
  if (id < 0) fail("negative token id {} for '{}'", id, text);
  if (static_cast<size_t>(id) >= text_.size()) {
    const size_t size = std::max<size_t>(static_cast<size_t>(id) + 1, text_.size() * 2);
    text_.resize(size);
    present_.resize(size, 0);
    special_flag_.resize(size, 0);
  }
  text_[id] = std::string(text);
  present_[id] = 1;
  vocab_size_ = std::max(vocab_size_, id + 1);
}

void BpeTokenizer::load_vocab(const json& model) {
  const json& vocab = model.at("vocab");
  text_.reserve(vocab.size() + 1024);
  model_.reserve(vocab.size(), model.at("merges").size());
  model_vocab_count_ = static_cast<int32_t>(vocab.size());
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const TokenId id = json_token_id(it.value());
    set_token(id, it.key());
    text_to_id_.insert(it.key(), id);
    // A token outside the byte-level alphabet cannot come out of byte-level pre-tokenization; it
    // stays decodable (as its UTF-8 text, like the ByteLevel decoder does) but the BPE never sees it.
    if (byte_level_to_bytes(it.key(), bytes)) model_.add_token(bytes, id);
  }
}

void BpeTokenizer::load_merges(const json& model) {
  // Merges name tokens by spelling, looked up in the model's vocabulary (text_to_id_ holds only that
  // until the added tokens are loaded).
  auto lookup = [&](std::string_view token, size_t index) {
    const TokenId id = text_to_id_.find(token);
    if (id == kNoToken) fail("merge {}: token '{}' is not in the vocabulary", index, token);
    return id;
  };
  std::string_view left, right;
  std::string joined;
  const json& merges = model.at("merges");
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {  // "a b" (older files)
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        fail("merge {} ('{}') is not two tokens separated by one space", i, s);
      }
      left = std::string_view(s).substr(0, space);
      right = std::string_view(s).substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      left = m[0].get_ref<const std::string&>();
      right = m[1].get_ref<const std::string&>();
    } else {
      fail("merge {} is neither \"a b\" nor [\"a\", \"b\"]: {}", i, m.dump());
    }
    joined.assign(left);
    joined.append(right);
    model_.add_merge(lookup(left, i), lookup(right, i), lookup(joined, i));
  }
}

void BpeTokenizer::load_added_tokens(const json& list) {
  // `tokenizers` does not take the ids written in added_tokens: AddedVocabulary::add_tokens gives a
  // token whose content the model vocabulary has that vocabulary id, and any other the next id past
  // the vocabulary, in file order. The ids in a file it wrote agree; when they do not, follow it.
  std::vector<AddedToken> tokens;
  int32_t max_added = -1;
  for (const json& t : list) {
    AddedToken a;
    a.content = t.at("content").get<std::string>();
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.special = t.value("special", false);
    a.normalized = t.value("normalized", !a.special);
    if (a.content.empty()) continue;
    const TokenId file_id = json_token_id(t.at("id"));
    TokenId id = kNoToken;
    for (const AddedToken& earlier : tokens) {
      if (earlier.content == a.content) id = earlier.id;
    }
    if (id == kNoToken) id = text_to_id_.find(a.content);
    if (id == kNoToken) id = max_added >= model_vocab_count_ ? max_added + 1 : model_vocab_count_;
    if (id != file_id) {
      spdlog::warn("{}: added token '{}' is listed with id {} but tokenizers gives it id {}; using {}", path_,
                   a.content, file_id, id, id);
    }
    a.id = id;
    max_added = std::max(max_added, id);
    set_token(id, a.content);
    text_to_id_.insert(a.content, id);
    tokens.push_back(std::move(a));
  }
  for (const AddedToken& a : tokens) {
    if (a.special) special_flag_[a.id] = 1;
  }
  // Decoded bytes of every id: the ByteLevel decoder maps a token's characters back to bytes, and
  // keeps the token's own UTF-8 when one character is outside the alphabet. An added token's content
  // is what decoding shows for its id.
  bytes_offset_.assign(static_cast<size_t>(vocab_size_) + 1, 0);
  std::string bytes;
  for (TokenId id = 0; id < vocab_size_; ++id) {
    bytes_offset_[id] = static_cast<uint32_t>(bytes_arena_.size());
    if (!present_[id]) continue;
    if (byte_level_to_bytes(text_[id], bytes)) {
      bytes_arena_ += bytes;
    } else {
      bytes_arena_ += text_[id];
    }
  }
  bytes_offset_[vocab_size_] = static_cast<uint32_t>(bytes_arena_.size());
  added_.build(std::move(tokens));
}

void BpeTokenizer::load_post_processor(const json& p) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& sub : p.at("processors")) load_post_processor(sub);
  } else if (type == "TemplateProcessing") {
    template_ids(p, prefix_, suffix_);
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix_.push_back(json_token_id(p.at("cls").at(1)));
    suffix_.push_back(json_token_id(p.at("sep").at(1)));
  } else if (type != "ByteLevel") {  // ByteLevel only adjusts offsets
    fail("post_processor type '{}' is not supported", type);
  }
  for (TokenId id : prefix_) check_id(id);
  for (TokenId id : suffix_) check_id(id);
}

void BpeTokenizer::set_special_ids(const TokenizerConfig& config) {
  auto named = [&](const std::string& token, const char* what) {
    if (token.empty()) return kNoToken;
    const TokenId id = token_id(token);
    if (id == kNoToken) fail("tokenizer_config.json {} '{}' is not a token", what, token);
    return id;
  };
  special_.bos = named(config.bos_token, "bos_token");
  if (special_.bos == kNoToken && !prefix_.empty()) special_.bos = prefix_.front();
  const TokenId eos = named(config.eos_token, "eos_token");
  if (eos != kNoToken) special_.eos.push_back(eos);
  special_.eot = token_id("<|eot_id|>");
}

std::vector<TokenId> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  check_utf8(text);
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_bos) ids = prefix_;
  struct ModelSink final : PreTokenizer::Sink {
    const BpeModel* model;
    std::vector<TokenId>* out;
    void piece(std::string_view word) override { model->encode_word(word, *out); }
  } sink;
  sink.model = &model_;
  sink.out = &ids;
  if (added_.empty()) {
    pre_tokenizer_.run(text, sink);
  } else {
    thread_local std::vector<AddedVocab::Piece> pieces;
    added_.split(text, parse_special, pieces);
    for (const AddedVocab::Piece& p : pieces) {
      if (p.id != kNoToken) {
        ids.push_back(p.id);
      } else {
        pre_tokenizer_.run(text.substr(p.begin, p.end - p.begin), sink);
      }
    }
  }
  if (add_bos) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

TokenId BpeTokenizer::token_id(std::string_view token) const { return text_to_id_.find(token); }

std::string BpeTokenizer::token_text(TokenId id) const {
  check_id(id);
  return text_[id];
}

bool BpeTokenizer::is_special(TokenId id) const {
  check_id(id);
  return special_flag_[id] != 0;
}

void BpeTokenizer::append_token_bytes(TokenId id, DecodeState& state, std::string& out) const {
  check_id(id);
  if (!present_[id]) fail("token id {} has no token in {}", id, path_);
  out += bytes_of(id);
  state.output_started = true;
}

}  // namespace fc
