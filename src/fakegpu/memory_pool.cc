// A stream-ordered memory pool's chunks and blocks (memory_pool.h).
#include "fakegpu/memory_pool.h"

#include <algorithm>
#include <iterator>

namespace tessera::fakegpu {
namespace {

uint64_t RoundUp(uint64_t value, uint64_t granule) {
  return (value + granule - 1) / granule * granule;
}

uint64_t BlockBytes(uint64_t size) { return RoundUp(size, MemoryPool::kBlockGranule); }

}  // namespace

uint64_t MemoryPool::ChunkBytesFor(uint64_t size) {
  return RoundUp(BlockBytes(size), kChunkGranule);
}

CUdeviceptr MemoryPool::Place(uint64_t size) {
  const uint64_t need = BlockBytes(size);
  for (auto& [base, chunk] : chunks_) {
    if (chunk.bytes - chunk.used < need) continue;
    uint64_t cursor = 0;
    bool found = false;
    for (const auto& [offset, bytes] : chunk.blocks) {
      if (offset - cursor >= need) {
        found = true;
        break;
      }
      cursor = offset + bytes;
    }
    if (!found && chunk.bytes - cursor < need) continue;
    chunk.blocks.emplace(cursor, need);
    chunk.used += need;
    used_ += need;
    used_high_ = std::max(used_high_, used_);
    return base + cursor;
  }
  return 0;
}

void MemoryPool::AddChunk(CUdeviceptr base, uint64_t bytes, Charge charge) {
  Chunk chunk;
  chunk.bytes = bytes;
  chunk.charge = charge;
  chunks_.emplace(base, std::move(chunk));
  reserved_ += bytes;
  reserved_high_ = std::max(reserved_high_, reserved_);
}

bool MemoryPool::Return(CUdeviceptr block) {
  auto after = chunks_.upper_bound(block);
  if (after == chunks_.begin()) return false;
  auto& [base, chunk] = *std::prev(after);
  auto found = chunk.blocks.find(block - base);
  if (found == chunk.blocks.end()) return false;
  chunk.used -= found->second;
  used_ -= found->second;
  chunk.blocks.erase(found);
  return true;
}

std::vector<Charge> MemoryPool::Shrink(uint64_t keep) {
  std::vector<Charge> released;
  for (auto chunk = chunks_.end(); chunk != chunks_.begin() && reserved_ > keep;) {
    --chunk;
    if (!chunk->second.blocks.empty()) continue;
    released.push_back(chunk->second.charge);
    reserved_ -= chunk->second.bytes;
    chunk = chunks_.erase(chunk);
  }
  return released;
}

}  // namespace tessera::fakegpu
