// The services' signal set-up, one way: SIGTERM and SIGINT are blocked in the calling thread and
// so in every thread it starts afterwards (call it before starting any), for one thread to take
// them with sigwait; SIGPIPE is ignored, so a peer that went away is an error value on the write,
// not the death of the process.
#ifndef TESSERA_COMMON_SIGNALS_H_
#define TESSERA_COMMON_SIGNALS_H_

#include <pthread.h>
#include <signal.h>

namespace tessera {

// Returns the blocked set, for sigwait.
inline sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return signals;
}

}  // namespace tessera

#endif  // TESSERA_COMMON_SIGNALS_H_
