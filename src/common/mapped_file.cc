#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tessera {

namespace {

std::string Errno(std::string_view label, const char* what, int error) {
  return std::string(label) + ": " + what + ": " + std::strerror(error);
}

std::string Hex(uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}

size_t HeaderBytes(const MappedFileFormat& format) {
  return std::max({format.magic_bytes, format.version_offset + sizeof(uint32_t),
                   format.size_offset + sizeof(uint64_t)});
}

uint64_t ReadMagic(const void* header, const MappedFileFormat& format) {
  if (format.magic_bytes == sizeof(uint32_t)) {
    uint32_t magic = 0;
    std::memcpy(&magic, header, sizeof magic);
    return magic;
  }
  uint64_t magic = 0;
  std::memcpy(&magic, header, sizeof magic);
  return magic;
}

}  // namespace

void WriteMappedFileHeader(void* mapping, const MappedFileFormat& format) {
  auto* bytes = static_cast<unsigned char*>(mapping);
  uint32_t version = format.layout_version;
  uint64_t size = format.size;
  std::memcpy(bytes + format.version_offset, &version, sizeof version);
  std::memcpy(bytes + format.size_offset, &size, sizeof size);
  // The mapping is page-aligned, so the magic at offset 0 can be stored atomically.
  if (format.magic_bytes == sizeof(uint32_t)) {
    __atomic_store_n(reinterpret_cast<uint32_t*>(bytes), static_cast<uint32_t>(format.magic),
                     __ATOMIC_RELEASE);
  } else {
    __atomic_store_n(reinterpret_cast<uint64_t*>(bytes), format.magic, __ATOMIC_RELEASE);
  }
}

Status CheckMappedFileHeader(const void* header, size_t header_bytes, uint64_t file_size,
                             const MappedFileFormat& format, std::string_view label) {
  std::string prefix = std::string(label) + ": ";
  if (header_bytes < HeaderBytes(format)) {
    return Status::Error(prefix + "the file is " + std::to_string(file_size) +
                         " bytes long, too short to be " + format.description);
  }
  uint64_t magic = ReadMagic(header, format);
  if (magic != format.magic) {
    return Status::Error(prefix + "not " + format.description + " (its magic number is " +
                         Hex(magic) + ", not " + Hex(format.magic) + ")");
  }
  uint32_t version = 0;
  uint64_t size = 0;
  const auto* bytes = static_cast<const unsigned char*>(header);
  std::memcpy(&version, bytes + format.version_offset, sizeof version);
  std::memcpy(&size, bytes + format.size_offset, sizeof size);
  if (version != format.layout_version || size != format.size) {
    return Status::Error(prefix + "layout version " + std::to_string(version) + " (" +
                         std::to_string(size) + " bytes), but this program uses layout version " +
                         std::to_string(format.layout_version) + " (" +
                         std::to_string(format.size) + " bytes); " + format.remedy);
  }
  if (file_size < format.size) {
    return Status::Error(prefix + "the file is truncated: " + std::to_string(file_size) +
                         " bytes of its layout's " + std::to_string(format.size));
  }
  return Status::Ok();
}

Result<MappedFile> MappedFile::Open(const std::string& path, std::string_view label,
                                    const MappedFileFormat& format, bool create,
                                    Initializer initialize, void* context) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0666);
  if (fd < 0) {
    if (errno == ENOENT && !create) {
      return Status::Error(std::string(label) + ": there is no such file (is the path right, " +
                           "and has a process made " + format.description + " there?)");
    }
    return Status::Error(Errno(label, "cannot open", errno));
  }
  // Creation is serialised by a lock on the file itself, which the kernel drops if we die. The
  // flock must be dropped explicitly: a mapping keeps the open file description alive.
  if (::flock(fd, LOCK_EX) != 0) {
    Status error = Status::Error(Errno(label, "cannot lock the file", errno));
    ::close(fd);
    return error;
  }
  auto fail = [&](Status error) -> Result<MappedFile> {
    ::flock(fd, LOCK_UN);
    ::close(fd);
    return error;
  };
  struct stat info {};
  if (::fstat(fd, &info) != 0) return fail(Status::Error(Errno(label, "cannot stat", errno)));
  auto file_size = static_cast<uint64_t>(info.st_size);
  bool fresh = file_size == 0;
  if (fresh && !create) {
    return fail(Status::Error(std::string(label) + ": the file is empty (no process has made " +
                              format.description + " there yet)"));
  }
  if (!fresh) {
    unsigned char header[64] = {};
    size_t wanted = std::min(HeaderBytes(format), sizeof header);
    ssize_t got = ::pread(fd, header, wanted, 0);
    if (got < 0) return fail(Status::Error(Errno(label, "cannot read", errno)));
    // A creator that died before writing the header left a file of the right size without a
    // magic number: it is made again.
    bool unfinished = create && format.remake_unfinished && file_size == format.size &&
                      static_cast<size_t>(got) == wanted && ReadMagic(header, format) == 0;
    if (unfinished) {
      fresh = true;
    } else {
      Status checked =
          CheckMappedFileHeader(header, static_cast<size_t>(got), file_size, format, label);
      if (!checked.ok()) return fail(std::move(checked));
    }
  }
  if (fresh && ::ftruncate(fd, static_cast<off_t>(format.size)) != 0) {
    return fail(Status::Error(Errno(label, "cannot size the file", errno)));
  }
  void* mapping = ::mmap(nullptr, format.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) return fail(Status::Error(Errno(label, "cannot map", errno)));
  MappedFile file(mapping, format.size);
  if (fresh) {
    std::memset(mapping, 0, format.size);
    Status initialized = initialize(mapping, context);
    if (!initialized.ok()) {
      return fail(Status::Error(std::string(label) + ": " + initialized.message()));
    }
    WriteMappedFileHeader(mapping, format);
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
  return file;
}

Result<MappedFile> MappedFile::CreateAnonymous(const MappedFileFormat& format,
                                               Initializer initialize, void* context) {
  void* mapping =
      ::mmap(nullptr, format.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) {
    return Status::Error(Errno(std::string("private ") + format.description, "cannot map", errno));
  }
  MappedFile file(mapping, format.size);
  Status initialized = initialize(mapping, context);
  if (!initialized.ok()) return initialized;
  WriteMappedFileHeader(mapping, format);
  return file;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

Status InitializeRobustMutex(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attributes;
  int error = pthread_mutexattr_init(&attributes);
  if (error == 0) error = pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  if (error == 0) error = pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  if (error == 0) error = pthread_mutex_init(mutex, &attributes);
  pthread_mutexattr_destroy(&attributes);
  if (error != 0) {
    return Status::Error(std::string("cannot make a process-shared robust mutex: ") +
                         std::strerror(error));
  }
  return Status::Ok();
}

Result<RobustMutexLock> RobustMutexLock::Acquire(pthread_mutex_t* mutex, std::string_view label,
                                                 Repair repair, void* context) {
  int error = pthread_mutex_lock(mutex);
  if (error == 0) return RobustMutexLock(mutex);
  if (error == EOWNERDEAD) {
    // The holder died part way through an update: the state is repaired before it is used.
    Status repaired = repair(context);
    if (repaired.ok() && pthread_mutex_consistent(mutex) == 0) return RobustMutexLock(mutex);
    // Unlocked without being made consistent, the mutex is unrecoverable for every process:
    // state that could not be repaired is not used again.
    pthread_mutex_unlock(mutex);
    return Status::Error(
        std::string(label) + ": a process died holding its lock and the " +
        "state it left could not be repaired (" +
        (repaired.ok() ? std::string("pthread_mutex_consistent failed") : repaired.message()) +
        "); stop the processes using it and remove it");
  }
  if (error == ENOTRECOVERABLE) {
    return Status::Error(std::string(label) + ": its lock is unrecoverable (a process died " +
                         "holding it and the state it left was not repaired); stop the " +
                         "processes using it and remove it");
  }
  return Status::Error(std::string(label) + ": cannot take its lock: " + std::strerror(error));
}

RobustMutexLock::~RobustMutexLock() {
  if (mutex_ != nullptr) pthread_mutex_unlock(mutex_);
}

}  // namespace tessera
