#include "common/mapped_file.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace tessera {
namespace {

// A small layout with the region's header shape.
struct TestLayout {
  uint32_t magic;
  uint32_t layout_version;
  uint64_t size;
  pthread_mutex_t lock;
  uint64_t value;
  uint64_t initialized_by;
};

constexpr MappedFileFormat kFormat = {
    "a test file",
    "make it again",
    0x54534554,
    sizeof(uint32_t),
    3,
    offsetof(TestLayout, layout_version),
    offsetof(TestLayout, size),
    sizeof(TestLayout),
    /*remake_unfinished=*/true,
};

class MappedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tessera-mapped-file-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
    path_ = directory_ + "/file";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    rmdir(directory_.c_str());
  }
  // Opens the file; a file that is made gets `value` and this process's pid.
  Result<MappedFile> Open(bool create, uint64_t value = 7) {
    return MappedFile::Open(path_, "test file " + path_, kFormat, create, [value](void* mapping) {
      auto* layout = static_cast<TestLayout*>(mapping);
      layout->value = value;
      layout->initialized_by = static_cast<uint64_t>(getpid());
      return InitializeRobustMutex(&layout->lock);
    });
  }
  static TestLayout* LayoutOf(const MappedFile& file) {
    return static_cast<TestLayout*>(file.data());
  }
  void Write(const void* bytes, size_t length) {
    std::ofstream file(path_, std::ios::binary | std::ios::trunc);
    file.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(length));
  }
  // The header of a well-made file, with `edit` applied.
  template <typename F>
  void WriteEdited(F edit) {
    TestLayout layout{};
    layout.magic = 0x54534554;
    layout.layout_version = 3;
    layout.size = sizeof(TestLayout);
    edit(layout);
    Write(&layout, sizeof layout);
  }
  std::string Refusal(bool create) {
    Result<MappedFile> file = Open(create);
    EXPECT_FALSE(file.ok());
    return file.ok() ? "" : file.status().message();
  }

  std::string directory_;
  std::string path_;
};

TEST_F(MappedFileTest, MakesAMissingFileWithItsHeaderAndReopensItUnchanged) {
  {
    Result<MappedFile> made = Open(/*create=*/true, 42);
    ASSERT_TRUE(made.ok()) << made.status().message();
    TestLayout* layout = LayoutOf(*made);
    EXPECT_EQ(layout->magic, 0x54534554u);
    EXPECT_EQ(layout->layout_version, 3u);
    EXPECT_EQ(layout->size, sizeof(TestLayout));
    EXPECT_EQ(layout->value, 42u);
    layout->value = 43;
  }
  Result<MappedFile> again = Open(/*create=*/true, 99);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(LayoutOf(*again)->value, 43u) << "an existing file is never made again";
  Result<MappedFile> reader = Open(/*create=*/false);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  EXPECT_EQ(LayoutOf(*reader)->value, 43u);
}

TEST_F(MappedFileTest, AMissingOrEmptyFileIsAnErrorWithoutCreate) {
  EXPECT_NE(Refusal(false).find("test file " + path_), std::string::npos);
  Write("", 0);
  std::string message = Refusal(false);
  EXPECT_NE(message.find("empty"), std::string::npos) << message;
}

TEST_F(MappedFileTest, RefusesAFileOfAnotherLayoutVersionSayingWhatDiffers) {
  WriteEdited([](TestLayout& layout) { layout.layout_version = 9; });
  std::string message = Refusal(/*create=*/true);
  EXPECT_NE(message.find(path_), std::string::npos) << message;
  EXPECT_NE(message.find("layout version 9"), std::string::npos) << message;
  EXPECT_NE(message.find("uses layout version 3"), std::string::npos) << message;
  EXPECT_NE(message.find("make it again"), std::string::npos) << message;
  std::ifstream file(path_, std::ios::binary);
  uint32_t header[2] = {};
  file.read(reinterpret_cast<char*>(header), sizeof header);
  EXPECT_EQ(header[1], 9u) << "a refused file is left as it was";
}

TEST_F(MappedFileTest, RefusesAFileOfAnotherSize) {
  WriteEdited([](TestLayout& layout) { layout.size = 12; });
  std::string message = Refusal(/*create=*/true);
  EXPECT_NE(message.find("(12 bytes)"), std::string::npos) << message;
}

TEST_F(MappedFileTest, RefusesAFileWithAnotherMagicNumber) {
  WriteEdited([](TestLayout& layout) { layout.magic = 0x12345678; });
  std::string message = Refusal(/*create=*/true);
  EXPECT_NE(message.find("not a test file"), std::string::npos) << message;
  EXPECT_NE(message.find("0x12345678"), std::string::npos) << message;
}

TEST_F(MappedFileTest, RefusesAFileTooShortForItsHeaderOrItsLayout) {
  Write("abc", 3);
  EXPECT_NE(Refusal(/*create=*/true).find("too short"), std::string::npos);
  TestLayout layout{};
  layout.magic = 0x54534554;
  layout.layout_version = 3;
  layout.size = sizeof(TestLayout);
  Write(&layout, offsetof(TestLayout, value));
  EXPECT_NE(Refusal(/*create=*/true).find("truncated"), std::string::npos);
}

TEST_F(MappedFileTest, MakesAgainAFileWhoseCreatorDiedBeforeWritingTheHeader) {
  std::vector<char> zeros(sizeof(TestLayout), 0);
  Write(zeros.data(), zeros.size());
  EXPECT_FALSE(Open(/*create=*/false).ok()) << "a reader never takes it for made";
  Result<MappedFile> made = Open(/*create=*/true, 5);
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(LayoutOf(*made)->value, 5u);
}

TEST_F(MappedFileTest, AFileWithoutAMagicNumberIsRefusedWhenTheFormatSaysSo) {
  std::vector<char> zeros(sizeof(TestLayout), 0);
  Write(zeros.data(), zeros.size());
  MappedFileFormat strict = kFormat;
  strict.remake_unfinished = false;
  Result<MappedFile> file = MappedFile::Open(path_, "test file " + path_, strict, true,
                                             [](void*) { return Status::Ok(); });
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("not a test file"), std::string::npos)
      << file.status().message();
}

TEST_F(MappedFileTest, AFailedInitialisationIsReturnedAndLeavesNoHeader) {
  Result<MappedFile> failed = MappedFile::Open(path_, "test file " + path_, kFormat, true,
                                               [](void*) { return Status::Error("no memory"); });
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("no memory"), std::string::npos);
  Result<MappedFile> made = Open(/*create=*/true, 6);
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(LayoutOf(*made)->value, 6u);
}

// ---- RobustMutexLock ---------------------------------------------------------------------------
class RobustMutexLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = MappedFile::CreateAnonymous(kFormat, [](void* mapping) {
      return InitializeRobustMutex(&static_cast<TestLayout*>(mapping)->lock);
    });
    ASSERT_TRUE(made.ok()) << made.status().message();
    file_.emplace(std::move(made).value());
    layout_ = static_cast<TestLayout*>(file_->data());
  }
  // A child process takes the lock and dies holding it.
  void DieHoldingTheLock() {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(pthread_mutex_lock(&layout_->lock) == 0 ? 0 : 1);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  Result<RobustMutexLock> Acquire(int* repairs, bool repair_succeeds = true) {
    return RobustMutexLock::Acquire(&layout_->lock, "test file", [repairs, repair_succeeds] {
      ++*repairs;
      return repair_succeeds ? Status::Ok() : Status::Error("the totals do not add up");
    });
  }

  std::optional<MappedFile> file_;
  TestLayout* layout_ = nullptr;
};

TEST_F(RobustMutexLockTest, RepairsOnceAfterAHolderDied) {
  int repairs = 0;
  { ASSERT_TRUE(Acquire(&repairs).ok()); }
  EXPECT_EQ(repairs, 0) << "no repair without a dead holder";
  DieHoldingTheLock();
  { ASSERT_TRUE(Acquire(&repairs).ok()); }
  EXPECT_EQ(repairs, 1);
  { ASSERT_TRUE(Acquire(&repairs).ok()); }
  EXPECT_EQ(repairs, 1) << "consistent again after the repair";
}

TEST_F(RobustMutexLockTest, IsReleasedWhenTheGuardGoes) {
  int repairs = 0;
  {
    Result<RobustMutexLock> held = Acquire(&repairs);
    ASSERT_TRUE(held.ok());
    EXPECT_EQ(pthread_mutex_trylock(&layout_->lock), EBUSY);
    RobustMutexLock moved = std::move(held).value();
    EXPECT_EQ(pthread_mutex_trylock(&layout_->lock), EBUSY) << "a move hands the lock on";
  }
  ASSERT_EQ(pthread_mutex_trylock(&layout_->lock), 0);
  pthread_mutex_unlock(&layout_->lock);
}

TEST_F(RobustMutexLockTest, AFailedRepairIsAnErrorAndTheLockIsNeverHadAgain) {
  DieHoldingTheLock();
  int repairs = 0;
  Result<RobustMutexLock> failed = Acquire(&repairs, /*repair_succeeds=*/false);
  ASSERT_FALSE(failed.ok()) << "the lock was handed over with the state unrepaired";
  EXPECT_NE(failed.status().message().find("the totals do not add up"), std::string::npos)
      << failed.status().message();
  EXPECT_EQ(repairs, 1);
  Result<RobustMutexLock> later = Acquire(&repairs);
  ASSERT_FALSE(later.ok());
  EXPECT_NE(later.status().message().find("unrecoverable"), std::string::npos)
      << later.status().message();
  EXPECT_NE(later.status().message().find("test file"), std::string::npos);
  EXPECT_EQ(repairs, 1) << "nothing to repair: the lock is not taken";
}

}  // namespace
}  // namespace tessera
