// Read-only memory map of a whole file (RAII). Checkpoints are mapped, never read into buffers.
#pragma once
#include <cstddef>
#include <string>

namespace fc {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws fc::Error naming the path and errno
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(data_); }
  size_t size_bytes() const { return size_bytes_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  void* data_ = nullptr;
  size_t size_bytes_ = 0;
  std::string path_;
};

// Reads a whole (small) text file; throws fc::Error naming the path when it cannot.
std::string read_text_file(const std::string& path);
bool file_exists(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);

}  // namespace fc
