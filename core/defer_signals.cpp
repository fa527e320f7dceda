#include "core/defer_signals.h"

namespace fc {

namespace {
volatile std::sig_atomic_t g_deferred_signal = 0;

extern "C" void record_signal(int sig) { g_deferred_signal = sig; }
}  // namespace

DeferTerminationSignals::DeferTerminationSignals() {
  g_deferred_signal = 0;
  struct sigaction record {};
  record.sa_handler = record_signal;
  sigemptyset(&record.sa_mask);
  record.sa_flags = SA_RESTART;  // the guarded write carries on where the signal found it
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &record, &previous_[i]);
}

DeferTerminationSignals::~DeferTerminationSignals() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &previous_[i], nullptr);
  const int sig = g_deferred_signal;
  g_deferred_signal = 0;
  // With the default disposition this ends the process (killed by the signal, as it would have been);
  // with the CLI's Ctrl-C handler it sets the interrupt flag.
  if (sig != 0) std::raise(sig);
}

}  // namespace fc
