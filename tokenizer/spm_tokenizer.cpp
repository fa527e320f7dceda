#include "tokenizer/spm_tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "core/mapped_file.h"

namespace fc {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// The few ModelProto fields the library does not expose, read from the serialized model with a
// minimal protobuf wire-format walk (sentencepiece_model.proto: ModelProto.trainer_spec = 2,
// ModelProto.normalizer_spec = 3; NormalizerSpec.add_dummy_prefix = 3, remove_extra_whitespaces = 4;
// TrainerSpec.unk_surface = 44, treat_whitespace_as_suffix = 24).
struct ProtoFields {
  bool add_dummy_prefix = true;  // proto2 defaults
  bool remove_extra_whitespaces = true;
  bool treat_whitespace_as_suffix = false;
  std::string unk_surface = " \xE2\x81\x87 ";
};

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("tokenizer.model: truncated protobuf");
      const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("tokenizer.model: bad protobuf varint");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > data_.size() - pos_) fail("tokenizer.model: truncated protobuf");
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: advance(8); break;
      case 2: bytes(); break;
      case 5: advance(4); break;
      default: fail("tokenizer.model: unsupported protobuf wire type {}", wire_type);
    }
  }

 private:
  void advance(size_t n) {
    if (n > data_.size() - pos_) fail("tokenizer.model: truncated protobuf");
    pos_ += n;
  }
  std::string_view data_;
  size_t pos_ = 0;
};

ProtoFields read_proto_fields(std::string_view model) {
  ProtoFields f;
  WireReader top(model);
  while (!top.done()) {
    const uint64_t key = top.varint();
    const uint32_t field = static_cast<uint32_t>(key >> 3), wire = key & 7;
    if ((field == 2 || field == 3) && wire == 2) {
      WireReader sub(top.bytes());
      while (!sub.done()) {
        const uint64_t k = sub.varint();
        const uint32_t f2 = static_cast<uint32_t>(k >> 3), w2 = k & 7;
        if (field == 3 && f2 == 3 && w2 == 0) {
          f.add_dummy_prefix = sub.varint() != 0;
        } else if (field == 3 && f2 == 4 && w2 == 0) {
          f.remove_extra_whitespaces = sub.varint() != 0;
        } else if (field == 2 && f2 == 24 && w2 == 0) {
          f.treat_whitespace_as_suffix = sub.varint() != 0;
        } else if (field == 2 && f2 == 44 && w2 == 2) {
          f.unk_surface = std::string(sub.bytes());
        } else {
          sub.skip(w2);
        }
      }
    } else {
      top.skip(wire);
    }
  }
  return f;
}

// "<0x0A>" -> 0x0A.
int byte_of_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  return static_cast<int>(std::strtol(piece.substr(3, 2).c_str(), nullptr, 16));
}

std::string replace_space_symbol(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out += ' ';
      i += kSpaceSymbol.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

}  // namespace

SpmTokenizer::SpmTokenizer(const std::string& model_path, const TokenizerConfig& config)
    : path_(model_path), processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = processor_->Load(model_path);
  if (!status.ok()) fail("{}: cannot load SentencePiece model: {}", model_path, status.ToString());
  const ProtoFields fields = read_proto_fields(processor_->serialized_model_proto());
  if (fields.treat_whitespace_as_suffix) fail("{}: treat_whitespace_as_suffix models are not supported", model_path);
  strip_leading_space_ = fields.add_dummy_prefix || fields.remove_extra_whitespaces;
  remove_extra_whitespaces_ = fields.remove_extra_whitespaces;

  vocab_size_ = processor_->GetPieceSize();
  kinds_.resize(vocab_size_);
  surface_.resize(vocab_size_);
  leading_space_.resize(vocab_size_, 0);
  std::vector<AddedToken> controls;
  for (TokenId id = 0; id < vocab_size_; ++id) {
    const std::string& piece = processor_->IdToPiece(id);
    if (processor_->IsControl(id)) {
      kinds_[id] = PieceKind::kControl;
      if (!piece.empty()) controls.push_back(AddedToken{piece, id, false, false, false, false, true});
    } else if (processor_->IsUnknown(id)) {
      kinds_[id] = PieceKind::kUnknown;
      surface_[id] = fields.unk_surface;
    } else if (processor_->IsByte(id)) {
      const int byte = byte_of_piece(piece);
      if (byte < 0) fail("{}: byte piece {} is spelled '{}'", model_path, id, piece);
      kinds_[id] = PieceKind::kByte;
      surface_[id] = std::string(1, static_cast<char>(byte));
    } else {
      kinds_[id] = PieceKind::kNormal;
      leading_space_[id] = piece.compare(0, kSpaceSymbol.size(), kSpaceSymbol) == 0;
      surface_[id] = replace_space_symbol(piece);
    }
  }
  controls_.build(std::move(controls));

  special_.bos = processor_->bos_id();
  if (processor_->eos_id() >= 0) special_.eos.push_back(processor_->eos_id());
  special_.eot = token_id("<|eot_id|>");
  // tokenizer_config.json may name other ids (a fine-tune's eos); it wins when it names a real piece.
  if (!config.bos_token.empty() && token_id(config.bos_token) != kNoToken) special_.bos = token_id(config.bos_token);
  if (!config.eos_token.empty() && token_id(config.eos_token) != kNoToken) special_.eos = {token_id(config.eos_token)};
  chat_template_ = config.chat_template;
}

SpmTokenizer::~SpmTokenizer() = default;

void SpmTokenizer::encode_plain(std::string_view text, std::vector<TokenId>& out) const {
  if (text.empty()) return;
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) fail("SentencePiece could not encode the input: {}", status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<TokenId> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  check_utf8(text);
  std::vector<TokenId> ids;
  if (add_bos && special_.bos != kNoToken) ids.push_back(special_.bos);
  if (!parse_special || controls_.empty()) {
    encode_plain(text, ids);
    return ids;
  }
  std::vector<AddedVocab::Piece> pieces;
  controls_.split(text, true, pieces);
  for (const auto& p : pieces) {
    if (p.id != kNoToken) {
      ids.push_back(p.id);
    } else {
      encode_plain(text.substr(p.begin, p.end - p.begin), ids);
    }
  }
  return ids;
}

TokenId SpmTokenizer::token_id(std::string_view token) const {
  const int id = processor_->PieceToId(token);
  // PieceToId answers unk_id for anything unknown: only trust it when the spelling round-trips.
  if (id < 0 || id >= vocab_size_ || processor_->IdToPiece(id) != token) return kNoToken;
  return id;
}

std::string SpmTokenizer::token_text(TokenId id) const {
  check_id(id);
  return processor_->IdToPiece(id);
}

bool SpmTokenizer::is_special(TokenId id) const {
  check_id(id);
  return kinds_[id] == PieceKind::kControl;
}

void SpmTokenizer::append_token_bytes(TokenId id, DecodeState& state, std::string& out) const {
  check_id(id);
  const PieceKind kind = kinds_[id];
  if (kind == PieceKind::kByte) {  // joined with its neighbours into characters by the UTF-8 repair
    out += surface_[id];
    state.output_started = true;
    return;
  }
  // SentencePieceProcessor::Decode: only a piece at the very start of the text may lose its leading
  // space, and once text was produced (or a space was already dropped) none may.
  if (state.leading_space_seen || state.output_started) state.leading_space_open = false;
  bool dropped = false;
  std::string_view surface = surface_[id];
  if (kind == PieceKind::kNormal && state.leading_space_open && strip_leading_space_ && leading_space_[id]) {
    surface.remove_prefix(1);
    dropped = !remove_extra_whitespaces_;
  }
  state.leading_space_seen = dropped;
  if (!surface.empty()) {
    out += surface;
    state.output_started = true;
  }
}

}  // namespace fc
