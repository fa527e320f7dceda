// A one-line progress bar on stderr (bytes, GB/s, ETA), drawn only when stderr is a terminal.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>

namespace fc {

class ProgressBar {
 public:
  ProgressBar(std::string label, size_t total_bytes, bool enabled = true);
  ~ProgressBar();
  void advance(size_t bytes);
  void finish();
  double seconds() const;

 private:
  void draw(bool final_line);
  std::string label_;
  size_t total_ = 0, done_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace fc
