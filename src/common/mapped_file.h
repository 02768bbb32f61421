// Files that processes map to share state (the region, the fake GPU's state): a fixed-size layout
// that begins with a header, created under a file lock, and guarded by a process-shared robust
// mutex that lives inside it.
//
//  * MappedFile::Open creates or opens such a file. Creation is serialised by flock(2), which the
//    kernel drops if the creator dies; the header is written last, so a file whose creator died
//    part way has no magic number (and is made again by the next creator, if the format says
//    so). A file of another layout
//    (magic number, layout version or size) is refused with a message naming the file and what
//    differed; it is never reinterpreted.
//  * RobustMutexLock holds the mutex. When the previous holder died holding it (EOWNERDEAD), the
//    caller's repair runs before anything else is done under the lock; the mutex is marked
//    consistent only if the repair succeeds. If it fails, the mutex is released inconsistent and
//    becomes unrecoverable: every later lock, in every process, is an error. Taking the lock is
//    never skipped: a lock that cannot be had is an error the caller must return.
//
// No allocation unless an error is reported; nothing here runs before main().
#ifndef TESSERA_COMMON_MAPPED_FILE_H_
#define TESSERA_COMMON_MAPPED_FILE_H_

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "common/status.h"

namespace tessera {

// What a file's header must say. The header's fields are native-endian at fixed offsets: the
// magic number (magic_bytes wide) at 0, the layout version (uint32_t) at version_offset, the
// layout's size in bytes (uint64_t) at size_offset.
struct MappedFileFormat {
  const char* description;  // what the file is, for messages: "a Tessera region"
  const char* remedy;       // what to do about a file of another layout, for messages
  uint64_t magic;
  size_t magic_bytes;  // 4 or 8
  uint32_t layout_version;
  size_t version_offset;
  size_t size_offset;
  size_t size;  // the layout's size; the file is at least this long
  // Whether a file of the layout's size without a magic number (its creator died before writing
  // the header, or someone zeroed it) is made again when opened with `create`; else refused.
  bool remake_unfinished;
};

// Writes the header of `format` into `mapping`, the magic number last (release): a reader that
// sees the magic sees everything written before. For memory no other process can see yet.
void WriteMappedFileHeader(void* mapping, const MappedFileFormat& format);

// Checks a header read from a file of `file_size` bytes. `label` names the file in messages.
Status CheckMappedFileHeader(const void* header, size_t header_bytes, uint64_t file_size,
                             const MappedFileFormat& format, std::string_view label);

// A shared mapping of format.size bytes; unmapped when destroyed. Move-only.
class MappedFile {
 public:
  // Fills a zeroed mapping with the layout's initial contents (not the header).
  using Initializer = Status (*)(void* mapping, void* context);

  // Maps the file at `path`. With `create`, a missing or empty file (and, with
  // format.remake_unfinished, one without a magic number) is sized, zeroed, initialised and given
  // its header; without, such a file is an error. `label` names the file in messages ("region
  // /run/x").
  static Result<MappedFile> Open(const std::string& path, std::string_view label,
                                 const MappedFileFormat& format, bool create,
                                 Initializer initialize, void* context);
  template <typename F>
  static Result<MappedFile> Open(const std::string& path, std::string_view label,
                                 const MappedFileFormat& format, bool create, F&& initialize) {
    return Open(path, label, format, create, &Call<std::remove_reference_t<F>>, &initialize);
  }
  // Anonymous shared memory of the same layout: private to this process and its forked children.
  static Result<MappedFile> CreateAnonymous(const MappedFileFormat& format, Initializer initialize,
                                            void* context);
  template <typename F>
  static Result<MappedFile> CreateAnonymous(const MappedFileFormat& format, F&& initialize) {
    return CreateAnonymous(format, &Call<std::remove_reference_t<F>>, &initialize);
  }

  MappedFile(MappedFile&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(void* data, size_t size) : data_(data), size_(size) {}
  template <typename F>
  static Status Call(void* mapping, void* context) {
    return (*static_cast<F*>(context))(mapping);
  }

  void* data_;
  size_t size_;
};

// Initialises a process-shared robust mutex (in memory no other process uses yet).
Status InitializeRobustMutex(pthread_mutex_t* mutex);

// Holds a process-shared robust mutex; unlocks when destroyed. Move-only.
class RobustMutexLock {
 public:
  // Repairs the state the mutex guards after its holder died; runs with the mutex held.
  using Repair = Status (*)(void* context);

  // Locks `mutex`. An error, with the mutex not held, when it cannot be locked: unrecoverable
  // (an earlier repair failed), or the repair after a dead holder fails now (which makes it
  // unrecoverable). `label` names the file in messages.
  static Result<RobustMutexLock> Acquire(pthread_mutex_t* mutex, std::string_view label,
                                         Repair repair, void* context);
  template <typename F>
  static Result<RobustMutexLock> Acquire(pthread_mutex_t* mutex, std::string_view label,
                                         F&& repair) {
    return Acquire(mutex, label, &Call<std::remove_reference_t<F>>, &repair);
  }

  RobustMutexLock(RobustMutexLock&& other) noexcept
      : mutex_(std::exchange(other.mutex_, nullptr)) {}
  RobustMutexLock& operator=(RobustMutexLock&&) = delete;
  RobustMutexLock(const RobustMutexLock&) = delete;
  RobustMutexLock& operator=(const RobustMutexLock&) = delete;
  ~RobustMutexLock();

 private:
  explicit RobustMutexLock(pthread_mutex_t* mutex) : mutex_(mutex) {}
  template <typename F>
  static Status Call(void* context) {
    return (*static_cast<F*>(context))();
  }

  pthread_mutex_t* mutex_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_MAPPED_FILE_H_
