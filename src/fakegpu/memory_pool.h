// The bookkeeping of one stream-ordered memory pool, as the fake GPU models a driver's pool: it
// reserves device memory in chunks and sub-allocates blocks from them, so many small allocations
// share a chunk, and it keeps what is freed until it is trimmed.
//
// The model (src/fakegpu/README.md, "Memory pools"), deliberately the fake's own and shared with
// nothing in the shim:
//   - a request takes a block of its size rounded up to kBlockGranule (512 bytes), placed first
//     fit in the pool's chunks in address order;
//   - a request that fits no gap gets a new chunk of its block size rounded up to kChunkGranule
//     (2 MiB): a 4 KiB request reserves 2 MiB that the next 511 such requests share, a 3 MiB one
//     reserves 4 MiB whose last MiB later requests can use;
//   - a freed block goes back to its chunk, never to the device; a chunk with no block left is
//     empty, and only empty chunks are given back, newest first, while the pool reserves more
//     than it is asked to keep (its release threshold at a synchronisation, or the trim's
//     minimum).
// The caller charges and uncharges the chunks (this class only remembers each chunk's Charge).
//
// REQUIRES: external synchronisation (the driver's mutex).
#ifndef TESSERA_FAKEGPU_MEMORY_POOL_H_
#define TESSERA_FAKEGPU_MEMORY_POOL_H_

#include <cstdint>
#include <map>
#include <vector>

#include "cuda/driver_api.h"
#include "fakegpu/objects.h"

namespace tessera::fakegpu {

class MemoryPool {
 public:
  static constexpr uint64_t kBlockGranule = 512;
  static constexpr uint64_t kChunkGranule = uint64_t{2} << 20;

  // `device` is the CUdevice whose memory the pool reserves, or -1 for a host pool.
  explicit MemoryPool(int device) : device_(device) {}

  int device() const { return device_; }
  bool on_host() const { return device_ < 0; }

  // The chunk a request of `size` bytes gets when it fits no gap. REQUIRES: size > 0.
  static uint64_t ChunkBytesFor(uint64_t size);

  // A block for `size` bytes in a chunk the pool has, or 0 when none has room. REQUIRES: size > 0.
  CUdeviceptr Place(uint64_t size);
  // A chunk of `bytes` at `base`, charged with `charge` (empty for a host pool).
  void AddChunk(CUdeviceptr base, uint64_t bytes, Charge charge);
  // Gives the block at `block` back to its chunk. False if it is not one of the pool's blocks.
  bool Return(CUdeviceptr block);
  // Removes empty chunks, newest first, while the pool reserves more than `keep` bytes, and
  // returns their charges for the caller to give back.
  std::vector<Charge> Shrink(uint64_t keep);
  // Whether the pool holds no chunk at all.
  bool empty() const { return chunks_.empty(); }

  uint64_t reserved() const { return reserved_; }
  uint64_t used() const { return used_; }
  uint64_t reserved_high() const { return reserved_high_; }
  uint64_t used_high() const { return used_high_; }
  // Setting a high watermark (to 0, the only value a driver accepts) restarts it from now.
  void ResetReservedHigh() { reserved_high_ = reserved_; }
  void ResetUsedHigh() { used_high_ = used_; }

  // CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: what the pool keeps at a synchronisation (0 by default).
  uint64_t release_threshold = 0;
  // The three reuse policies (CU_MEMPOOL_ATTR_REUSE_*): remembered and reported, all on by
  // default; the fake reuses freed blocks at once whatever they say.
  int reuse_follow_event_dependencies = 1;
  int reuse_allow_opportunistic = 1;
  int reuse_allow_internal_dependencies = 1;
  // cuMemPoolDestroy was called while blocks were still allocated: the pool gives each chunk back
  // as soon as it is empty, and goes when the last one does.
  bool destroyed = false;

 private:
  struct Chunk {
    uint64_t bytes = 0;
    uint64_t used = 0;
    Charge charge;
    std::map<uint64_t, uint64_t> blocks;  // offset -> block bytes
  };

  int device_;
  std::map<CUdeviceptr, Chunk> chunks_;  // by base address; newer chunks have higher addresses
  uint64_t reserved_ = 0;
  uint64_t used_ = 0;
  uint64_t reserved_high_ = 0;
  uint64_t used_high_ = 0;
};

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_MEMORY_POOL_H_
