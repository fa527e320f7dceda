// One-line progress bars on stderr, drawn only when stderr is a terminal.

// Bytes (weights loading): bytes, GB/s, ETA.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
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

// A one-line progress bar on stderr for many requests (batch): requests done of the total, generated
// tokens/s and an ETA from the rate of finished requests; drawn only when stderr is a terminal.
class RequestProgress {
 public:
  RequestProgress(int total_requests, bool enabled = true);
  ~RequestProgress();
  void update(int done_requests, int64_t generated_tokens);  // redraws at most every 100 ms
  void finish();

 private:
  void draw(bool final_line);
  int total_ = 0, done_ = 0;
  int64_t tokens_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace fc
