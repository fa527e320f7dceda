#include "model/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/defer_signals.h"
#include "core/error.h"

namespace fc {

namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

json parse_header(const std::string& path, const char* text, size_t length) {
  // Reject duplicate tensor names, which a plain parse would silently collapse.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + length, on_event);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999 (fuzz finding)
    fail("{}: safetensors header is not valid JSON ({})", path, e.what());
  }
  if (!duplicate.empty()) fail("{}: tensor '{}' appears twice in the header", path, duplicate);
  if (!header.is_object()) fail("{}: safetensors header is not a JSON object", path);
  return header;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_string() const { return shape_to_string(shape); }

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  tensors_ = parse_safetensors(path, file_.data(), file_.size_bytes());
}

std::map<std::string, TensorInfo> parse_safetensors(const std::string& path, const unsigned char* bytes,
                                                    size_t size) {
  std::map<std::string, TensorInfo> tensors;
  if (size < 8) fail("{}: file is {} bytes, too short for a safetensors header", path, size);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes, 8);  // little-endian on every platform we build for
  if (header_bytes > size - 8 || header_bytes > kMaxHeaderBytes) {
    fail("{}: header length {} exceeds the file ({} bytes); the file is truncated or not safetensors", path,
         header_bytes, size);
  }
  const json header = parse_header(path, reinterpret_cast<const char*>(bytes) + 8, header_bytes);
  const unsigned char* data_area = bytes + 8 + header_bytes;
  const uint64_t data_bytes = size - 8 - header_bytes;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& entry = it.value();
    if (!entry.is_object()) fail("{}: tensor '{}': header entry is not an object", path, name);
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail("{}: tensor '{}': missing dtype", path, name);
    if (shape_it == entry.end() || !shape_it->is_array()) fail("{}: tensor '{}': missing shape", path, name);
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail("{}: tensor '{}': data_offsets must be [begin, end]", path, name);
    }
    TensorInfo info;
    info.name = name;
    info.file = path;
    const std::string dtype_name_str = dtype_it->get<std::string>();
    if (!parse_dtype(dtype_name_str, &info.dtype)) {
      fail("{}: tensor '{}' has dtype {}, which FlashCore does not read (F32, F16, BF16, F8_E4M3, I64, I32, U8)", path,
           name, dtype_name_str);
    }
    uint64_t numel = 1;
    for (const json& dim : *shape_it) {
      if (!dim.is_number_unsigned()) fail("{}: tensor '{}': shape {} is not a list of sizes", path, name, shape_it->dump());
      const uint64_t d = dim.get<uint64_t>();
      if (d > 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / d) {
        fail("{}: tensor '{}': shape {} is impossibly large", path, name, shape_it->dump());
      }
      numel *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const json& b = (*offsets_it)[0];
    const json& e = (*offsets_it)[1];
    if (!b.is_number_unsigned() || !e.is_number_unsigned()) {
      fail("{}: tensor '{}': data_offsets {} are not non-negative integers", path, name, offsets_it->dump());
    }
    const uint64_t begin = b.get<uint64_t>(), end = e.get<uint64_t>();
    if (begin > end || end > data_bytes) {
      fail("{}: tensor '{}': data_offsets [{}, {}] lie outside the data area ({} bytes)", path, name, begin, end,
           data_bytes);
    }
    const uint64_t expected = numel * dtype_size(info.dtype);
    if (end - begin != expected) {
      fail("{}: tensor '{}': {} {} needs {} bytes but data_offsets span {}", path, name, dtype_name_str,
           shape_to_string(info.shape), expected, end - begin);
    }
    info.data = data_area + begin;
    info.nbytes = end - begin;
    ranges.emplace_back(begin, end);
    tensors.emplace(name, std::move(info));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      std::string a, b2;
      for (const auto& [n, t] : tensors) {
        const uint64_t begin = static_cast<uint64_t>(t.data - data_area);
        if (begin == ranges[i - 1].first && a.empty()) a = n;
        else if (begin == ranges[i].first) b2 = n;
      }
      fail("{}: tensors '{}' and '{}' overlap in the data area", path, a, b2);
    }
  }
  return tensors;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

TensorStore TensorStore::open_file(const std::string& path) {
  TensorStore store;
  store.files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& [name, info] : store.files_.back()->tensors()) store.index_[name] = &info;
  return store;
}

TensorStore TensorStore::open_dir(const std::string& model_dir) {
  const std::string index_path = join_path(model_dir, "model.safetensors.index.json");
  const std::string single_path = join_path(model_dir, "model.safetensors");
  if (!file_exists(index_path)) {
    if (!file_exists(single_path)) {
      fail("{}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read)",
           model_dir);
    }
    return open_file(single_path);
  }
  json index;
  try {
    index = json::parse(read_text_file(index_path));
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON ({})", index_path, e.what());
  }
  const auto map_it = index.find("weight_map");
  if (!index.is_object() || map_it == index.end() || !map_it->is_object() || map_it->empty()) {
    fail("{}: missing or empty weight_map", index_path);
  }
  TensorStore store;
  std::map<std::string, SafetensorsFile*> by_shard;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path, it.key());
    const std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard == "..") {
      fail("{}: weight_map entry '{}' names '{}', outside the model directory", index_path, it.key(), shard);
    }
    if (!by_shard.count(shard)) {
      store.files_.push_back(std::make_unique<SafetensorsFile>(join_path(model_dir, shard)));
      by_shard[shard] = store.files_.back().get();
    }
    const TensorInfo* info = by_shard[shard]->find(it.key());
    if (info == nullptr) fail("{}: tensor '{}' is listed in {} but not in {}", model_dir, it.key(), index_path, shard);
    store.index_[it.key()] = info;
  }
  return store;
}

const TensorInfo* TensorStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> names;
  for (const auto& [name, info] : index_) names.push_back(name);
  return names;
}

size_t TensorStore::total_bytes() const {
  size_t bytes = 0;
  for (const auto& [name, info] : index_) bytes += info->nbytes;
  return bytes;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t bytes = numel * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data area 8-byte aligned
  const std::string tmp = path + ".partial";
  // Ctrl-C between here and the rename would leave `tmp` behind: hold it until the file is complete
  // (then it takes effect as usual).
  const DeferTerminationSignals defer_signals;
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  const uint64_t header_bytes = text.size();
  bool ok = std::fwrite(&header_bytes, 8, 1, f) == 1 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    const size_t bytes = numel * dtype_size(t.dtype);
    ok = ok && (bytes == 0 || std::fwrite(t.data, 1, bytes, f) == bytes);
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("{}: write failed", path);
  }
}

std::vector<float> tensor_to_f32(const TensorInfo& tensor) {
  std::vector<float> out(static_cast<size_t>(tensor.numel()));
  convert_to_f32(tensor.dtype, tensor.data, out.size(), out.data());
  return out;
}

std::vector<int64_t> tensor_to_i64(const TensorInfo& tensor) {
  std::vector<int64_t> out(static_cast<size_t>(tensor.numel()));
  if (tensor.dtype == DType::I64) {
    std::memcpy(out.data(), tensor.data, out.size() * 8);
  } else if (tensor.dtype == DType::I32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, tensor.data + 4 * i, 4);
      out[i] = v;
    }
  } else {
    fail("{}: tensor '{}' is {}, expected an integer tensor (I64 or I32)", tensor.file, tensor.name,
         dtype_name(tensor.dtype));
  }
  return out;
}

}  // namespace fc
