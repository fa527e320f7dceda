// flashcore chat in a terminal (a pseudo-terminal here): a line ending in a backslash continues the turn,
// so multi-line text is one user turn; from a pipe (test_cli_generate.cpp) every line stays a turn.
#include <catch2/catch.hpp>

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "tests/apps/cli_runner.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

namespace {

struct TtyRun {
  int status = -1;
  std::string output;  // stdout and stderr, and the terminal's echo of the input
};

// Runs flashcore with a pseudo-terminal as stdin/stdout/stderr, types `input` and reads until it exits
// (60 s at most, then it is killed and the test fails).
TtyRun run_in_terminal(const std::vector<std::string>& args, const std::string& input) {
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(FC_FLASHCORE_BIN));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(FC_FLASHCORE_BIN, argv.data());
    _exit(127);
  }
  REQUIRE(write(master, input.data(), input.size()) == static_cast<ssize_t>(input.size()));
  TtyRun r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  char buf[4096];
  for (;;) {
    pollfd p{master, POLLIN, 0};
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(&p, 1, 200) <= 0) continue;
    const ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO: the child closed the terminal (exited)
    r.output.append(buf, static_cast<size_t>(n));
  }
  int raw = 0;
  waitpid(pid, &raw, 0);
  close(master);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return r;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("chat in a terminal: a trailing backslash continues the turn", "[cli][chat]") {
  // The LLaMA 2 [INST] format, as in the pipe test (the fixture's tokenizer has no chat tokens).
  fc::test::ScratchCheckpoint c("tiny-llama3-bpe");
  c.write("tokenizer_config.json", R"({"bos_token": "<eos>", "eos_token": "<eos>"})");
  const std::vector<std::string> args = {"chat", "--model", c.dir(), "--device", "cpu", "--temperature", "0",
                                         "--max-new-tokens", "4"};
  const TtyRun joined = run_in_terminal(args, "hello \\\nthere \\\nfriend\n/exit\n");
  INFO(joined.output);
  CHECK(joined.status == 0);
  CHECK(count(joined.output, "[prefilled") == 1);  // three lines, one turn
  CHECK(count(joined.output, ". ") >= 2);          // the continuation prompt, once per continued line
  const TtyRun separate = run_in_terminal(args, "hello\nthere\nfriend\n/exit\n");
  INFO(separate.output);
  CHECK(separate.status == 0);
  CHECK(count(separate.output, "[prefilled") == 3);
}
