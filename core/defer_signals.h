// Holds back Ctrl-C (SIGINT), SIGTERM and SIGHUP while a short critical section runs, typically
// "write a temporary file, then rename it over the output", so that an interrupt can never leave a
// partial file behind: a signal that arrives meanwhile is recorded and raised again, with the handler
// that was installed before, when the guard is destroyed.
//
// Dispositions rather than a signal mask, because a mask is per thread and the CUDA runtime has threads
// of its own, any of which the kernel may pick for a process-directed SIGINT. Not reentrant: one guard
// at a time (the process-wide recorded signal is shared).
#pragma once
#include <csignal>

namespace fc {

class DeferTerminationSignals {
 public:
  DeferTerminationSignals();
  ~DeferTerminationSignals();  // restores the previous handlers, then re-raises a deferred signal
  DeferTerminationSignals(const DeferTerminationSignals&) = delete;
  DeferTerminationSignals& operator=(const DeferTerminationSignals&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction previous_[3];
};

}  // namespace fc
