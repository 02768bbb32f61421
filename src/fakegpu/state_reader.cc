#include "fakegpu/state_reader.h"

#include <unistd.h>

#include <cstdlib>

#include "fakegpu/shared_state.h"

namespace tessera::fakegpu {

std::string StateReader::DefaultPath() { return DefaultStatePath(); }

Result<StateReader> StateReader::Open(const std::string& path) {
  Result<std::unique_ptr<SharedState>> state = SharedState::Open(path, /*create=*/false);
  if (!state.ok()) return state.status();
  return StateReader(std::shared_ptr<SharedState>(std::move(state).value()));
}

Result<StateSnapshot> StateReader::Read() { return state_->Snapshot(); }

Status StateReader::ResetPeaks() { return state_->ResetPeaks(); }

const std::string& StateReader::path() const { return state_->path(); }

}  // namespace tessera::fakegpu
