// Runs the flashcore executable and captures its exit status, stdout and stderr.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace fc::test {

struct CliResult {
  int status = -1;
  std::string out, err;
  int err_lines() const {
    int n = 0;
    for (char c : err) n += c == '\n';
    return n;
  }
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `args` is appended to the binary path as is (quote where needed); `stdin_text` is fed on stdin.
inline CliResult run_flashcore(const std::string& args, const std::string& stdin_text = "") {
  std::random_device rd;
  const std::string base = std::string(FC_BINARY_DIR) + "/cli_" + std::to_string(rd());
  std::ofstream(base + ".in", std::ios::binary) << stdin_text;
  const std::string cmd = std::string(FC_FLASHCORE_BIN) + " " + args + " <" + base + ".in >" + base + ".out 2>" +
                          base + ".err";
  const int raw = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  std::remove((base + ".in").c_str());
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

}  // namespace fc::test
