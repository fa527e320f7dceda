// DeferTerminationSignals (core/defer_signals.h): a Ctrl-C inside the guard takes effect only when the
// guard ends, with the handler that was there before; and write_safetensors, which holds one, never
// leaves a partial file when SIGINT arrives while it writes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <random>
#include <vector>

#include "core/defer_signals.h"
#include "model/safetensors.h"

using namespace fc;

namespace {
volatile std::sig_atomic_t g_seen = 0;
extern "C" void count_signal(int) { g_seen = g_seen + 1; }

std::string scratch_path(const std::string& name) {
  std::random_device rd;
  return (std::filesystem::temp_directory_path() / ("fc_defer_" + std::to_string(rd()) + "_" + name)).string();
}
}  // namespace

TEST_CASE("a signal raised inside the guard reaches the previous handler when the guard ends", "[signals]") {
  struct sigaction mine {}, before {}, after {};
  mine.sa_handler = count_signal;
  sigemptyset(&mine.sa_mask);
  sigaction(SIGINT, &mine, &before);
  g_seen = 0;
  {
    const DeferTerminationSignals guard;
    std::raise(SIGINT);
    std::raise(SIGINT);
    CHECK(g_seen == 0);
  }
  CHECK(g_seen == 1);  // delivered once, after the guard
  sigaction(SIGINT, nullptr, &after);
  CHECK(after.sa_handler == count_signal);
  {
    const DeferTerminationSignals quiet;  // nothing arrives: nothing is raised
  }
  CHECK(g_seen == 1);
  sigaction(SIGINT, &before, nullptr);
}

TEST_CASE("with the default disposition the deferred SIGINT still ends the process, after the guard",
          "[signals]") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    {
      const DeferTerminationSignals guard;
      std::raise(SIGINT);
      (void)!write(fds[1], "inside", 6);  // still alive here
    }
    (void)!write(fds[1], "after", 5);  // never: the guard's end re-raised SIGINT
    _exit(0);
  }
  close(fds[1]);
  int raw = 0;
  waitpid(pid, &raw, 0);
  char buf[32] = {};
  const ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  CHECK(std::string(buf, n > 0 ? n : 0) == "inside");
  CHECK(WIFSIGNALED(raw));
  CHECK(WTERMSIG(raw) == SIGINT);
}

namespace {
enum class WriteOutcome { kWhole, kNothing, kPartial, kNotSignalled, kOther };

// Forks a child that writes `data` with write_safetensors while the kernel sends it SIGINT every
// millisecond from `first_ms` on; returns what the write left at `path`.
WriteOutcome write_under_sigints(const std::string& path, const std::vector<float>& data, int first_ms) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    sigevent ev {};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGINT;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0) _exit(3);
    itimerspec every_ms {};
    every_ms.it_value.tv_sec = first_ms / 1000;
    every_ms.it_value.tv_nsec = long(first_ms % 1000) * 1000000;
    every_ms.it_interval.tv_nsec = 1000000;
    timer_settime(timer, 0, &every_ms, nullptr);
    write_safetensors(path, {{"x", DType::F32, {int64_t(data.size())}, data.data()}});
    _exit(0);  // only when the write ended before the first SIGINT
  }
  int raw = 0;
  waitpid(pid, &raw, 0);
  const bool partial_left = std::filesystem::exists(path + ".partial");
  std::filesystem::remove(path + ".partial");
  if (partial_left) return WriteOutcome::kPartial;  // what the write left without the guard (checked: it fails then)
  if (WIFEXITED(raw) && WEXITSTATUS(raw) == 0) return WriteOutcome::kNotSignalled;
  if (!WIFSIGNALED(raw) || WTERMSIG(raw) != SIGINT) return WriteOutcome::kOther;
  return std::filesystem::exists(path) ? WriteOutcome::kWhole : WriteOutcome::kNothing;
}
}  // namespace

TEST_CASE("write_safetensors under a stream of SIGINTs: the whole file or nothing, never a .partial",
          "[signals][safetensors]") {
  const std::string path = scratch_path("dump.safetensors");
  const std::vector<float> data(size_t{48} << 20, 1.5f);  // 192 MB: the write takes many timer periods
  // A SIGINT before write_safetensors takes its guard (a slow or loaded machine, a sanitizer build)
  // ends the child with nothing written, which is allowed; then the first SIGINT comes later, until
  // one lands inside the write. Every attempt must leave the whole file or nothing.
  bool landed_in_write = false;
  for (int first_ms = 1; first_ms <= 256 && !landed_in_write; first_ms *= 2) {
    const WriteOutcome outcome = write_under_sigints(path, data, first_ms);
    INFO("first SIGINT after " << first_ms << " ms");
    REQUIRE(outcome != WriteOutcome::kPartial);
    REQUIRE(outcome != WriteOutcome::kOther);
    // The write ended before the first SIGINT: later ones cannot land in it either.
    REQUIRE(outcome != WriteOutcome::kNotSignalled);
    landed_in_write = outcome == WriteOutcome::kWhole;
  }
  REQUIRE(landed_in_write);
  const TensorStore store = TensorStore::open_file(path);  // complete and valid
  REQUIRE(store.find("x") != nullptr);
  CHECK(store.find("x")->numel() == int64_t(data.size()));
  std::filesystem::remove(path);
}
