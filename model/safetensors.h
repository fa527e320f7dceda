// safetensors files: memory-mapped, every header field validated before any tensor is trusted.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data area; offsets are relative to the data area.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace fc {

struct TensorInfo {
  std::string name;
  std::string file;  // path of the file it lives in (for messages)
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;  // inside the mapping
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_string() const;  // "[320, 128]"
};

// Validates the `size` bytes of a whole safetensors file at `bytes` (header and data area) and returns its
// tensors, whose `data` point into `bytes`. Throws fc::Error naming `path` (and the tensor) on any
// inconsistency. SafetensorsFile calls it on the mapping; the fuzz target (fuzz/) calls it directly.
std::map<std::string, TensorInfo> parse_safetensors(const std::string& path, const unsigned char* bytes,
                                                    size_t size);

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws fc::Error naming the file (and tensor) on any inconsistency.
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;

 private:
  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards named by
// model.safetensors.index.json.
class TensorStore {
 public:
  static TensorStore open_dir(const std::string& model_dir);
  static TensorStore open_file(const std::string& path);
  const TensorInfo* find(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
};

// Writes tensors as a safetensors file (used by `validate --dump-logits` and tests). Writes to a
// temporary name and renames, so a failed or interrupted write leaves no partial file.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

// Reads a whole tensor as fp32 (F32/F16/BF16 storage; F8_E4M3: the raw e4m3 values, no scale applied) or
// int64 (I64/I32 storage).
std::vector<float> tensor_to_f32(const TensorInfo& tensor);
std::vector<int64_t> tensor_to_i64(const TensorInfo& tensor);

}  // namespace fc
