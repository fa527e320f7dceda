// Runs the flashcore executable as a child process that the test can watch and signal while it runs
// (cli_runner.h's run_flashcore waits for the end). stdout and stderr are read through pipes; stdin is
// /dev/null. The destructor kills (SIGKILL) and reaps a child that is still running, so a failed
// check never leaves a long generation behind.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

namespace fc::test {

class CliProcess {
 public:
  explicit CliProcess(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      close(out[0]);
      close(err[0]);
      std::vector<char*> argv;
      const std::string bin = FC_FLASHCORE_BIN;
      argv.push_back(const_cast<char*>(bin.c_str()));
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      // The default disposition of SIGINT, whatever the test runner set.
      signal(SIGINT, SIG_DFL);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    fds_[0] = out[0];
    fds_[1] = err[0];
  }
  ~CliProcess() {
    if (pid_ > 0 && status_ < 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

  // Reads until stdout holds at least `bytes` bytes; false when the child closed its output or
  // `timeout_ms` passed first.
  bool wait_for_stdout(size_t bytes, int timeout_ms) {
    const auto deadline = now_ms() + timeout_ms;
    while (out_.size() < bytes) {
      const long long left = deadline - now_ms();
      if (left <= 0 || !pump(static_cast<int>(left))) return out_.size() >= bytes;
    }
    return true;
  }

  // Whether the child has not exited yet (reaps it when it has).
  bool running() {
    if (status_ >= 0) return false;
    int raw = 0;
    if (waitpid(pid_, &raw, WNOHANG) == pid_) {
      status_ = decode(raw);
      return false;
    }
    return true;
  }

  void send(int sig) const { kill(pid_, sig); }

  // Reads both pipes to the end and reaps the child: its exit status, or 128 + the signal that killed
  // it (a shell's $?); -1 if it is still running after `timeout_ms`.
  int wait(int timeout_ms) {
    const auto deadline = now_ms() + timeout_ms;
    while (fds_[0] >= 0 || fds_[1] >= 0) {
      const long long left = deadline - now_ms();
      if (left <= 0) return -1;
      pump(static_cast<int>(left));
    }
    if (status_ < 0) {
      int raw = 0;
      while (status_ < 0) {
        if (waitpid(pid_, &raw, WNOHANG) == pid_) {
          status_ = decode(raw);
        } else if (now_ms() > deadline) {
          return -1;
        } else {
          usleep(1000);
        }
      }
    }
    return status_;
  }

 private:
  static long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static int decode(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw); }

  // One poll of both pipes; appends what is there. False once both are closed.
  bool pump(int timeout_ms) {
    pollfd p[2];
    int n = 0;
    for (int fd : fds_) {
      if (fd >= 0) p[n++] = {fd, POLLIN, 0};
    }
    if (n == 0) return false;
    if (poll(p, n, timeout_ms) <= 0) return true;
    for (int i = 0; i < n; ++i) {
      if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      const ssize_t got = read(p[i].fd, buf, sizeof buf);
      const int which = p[i].fd == fds_[0] ? 0 : 1;
      if (got < 0 && errno == EINTR) continue;
      if (got > 0) {
        (which == 0 ? out_ : err_).append(buf, static_cast<size_t>(got));
      } else {
        close(fds_[which]);
        fds_[which] = -1;
      }
    }
    return fds_[0] >= 0 || fds_[1] >= 0;
  }

  pid_t pid_ = -1;
  int fds_[2] = {-1, -1};
  int status_ = -1;
  std::string out_, err_;
};

}  // namespace fc::test
