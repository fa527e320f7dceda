#include "engine/progress.h"

#include <unistd.h>

#include <cstdio>

namespace fc {

ProgressBar::ProgressBar(std::string label, size_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled && isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::advance(size_t bytes) {
  done_ += bytes;
  const auto now = std::chrono::steady_clock::now();
  if (enabled_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void ProgressBar::draw(bool final_line) {
  const double elapsed = seconds();
  const double fraction = total_ ? static_cast<double>(done_) / total_ : 1.0;
  const double rate = elapsed > 0 ? done_ / elapsed : 0;
  const double eta = rate > 0 ? (total_ - done_) / rate : 0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  std::fprintf(stderr, "\r%s [%.*s%*s] %6.2f / %.2f GB  %5.2f GB/s  ETA %4.1fs%s", label_.c_str(), filled,
               "==============================", kWidth - filled, "", done_ / 1e9, total_ / 1e9, rate / 1e9, eta,
               final_line ? "\n" : "");
  std::fflush(stderr);
}

RequestProgress::RequestProgress(int total_requests, bool enabled)
    : total_(total_requests), enabled_(enabled && isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

RequestProgress::~RequestProgress() { finish(); }

void RequestProgress::update(int done_requests, int64_t generated_tokens) {
  done_ = done_requests;
  tokens_ = generated_tokens;
  const auto now = std::chrono::steady_clock::now();
  if (enabled_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void RequestProgress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void RequestProgress::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = total_ > 0 ? static_cast<double>(done_) / total_ : 1.0;
  // Requests finish at a steadier rate than tokens are made (prefill and decode alternate); no ETA
  // before the first one.
  const double eta = done_ > 0 ? elapsed * (total_ - done_) / done_ : 0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  char eta_text[32] = "    ?";
  if (done_ > 0) std::snprintf(eta_text, sizeof eta_text, "%4.0fs", eta);
  std::fprintf(stderr, "\rbatch [%.*s%*s] %d / %d requests  %7.1f tok/s  ETA %s%s", filled,
               "==============================", kWidth - filled, "", done_, total_,
               elapsed > 0 ? tokens_ / elapsed : 0.0, eta_text, final_line ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace fc
