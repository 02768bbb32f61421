#include "node/shared_state.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "shim/config.h"

namespace tessera::node {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

mode_t ModeOf(const std::string& path) {
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/tessera-node-state-XXXXXX";
    if (mkdtemp(pattern) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf " + path_).c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(MemoryLedger, RefusesTheShareThatWouldPassTheGpusMemory) {
  MemoryLedger ledger({{"GPU-1", 80 * kGiB}, {"GPU-2", 80 * kGiB}});
  ASSERT_TRUE(ledger.Set("a", {{"GPU-1", 50 * kGiB}}).ok());
  ASSERT_TRUE(ledger.Set("b", {{"GPU-1", 30 * kGiB}, {"GPU-2", 10 * kGiB}}).ok());
  // 50 + 30 + 1 GiB > 80 GiB: refused, and nothing changes.
  Status refused = ledger.Set("c", {{"GPU-2", 1 * kGiB}, {"GPU-1", 1 * kGiB}});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("GPU-1"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("82944 MiB, more than its 81920 MiB"), std::string::npos)
      << refused.message();
  EXPECT_EQ(ledger.Sums(),
            (std::map<std::string, uint64_t>{{"GPU-1", 80 * kGiB}, {"GPU-2", 10 * kGiB}}));
  // Setting a key again replaces its limits rather than adding to them (a container restart).
  EXPECT_TRUE(ledger.Set("a", {{"GPU-1", 50 * kGiB}}).ok());
  ledger.Release("a");
  EXPECT_TRUE(ledger.Set("c", {{"GPU-1", 40 * kGiB}}).ok());
  EXPECT_EQ(ledger.Sums().at("GPU-1"), 70 * kGiB);
  EXPECT_FALSE(ledger.Set("d", {{"GPU-9", 1}}).ok());
}

TEST(AllocationStore, MakesADirectoryPerContainerWithTheModesTheContainerNeeds) {
  TempDir dir;
  auto store = AllocationStore::Open(dir.path() + "/state");
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ(Read(store->preload_path()), "/usr/lib/tessera/libtessera-cuda.so\n");
  EXPECT_EQ(ModeOf(store->preload_path()), 0444u);
  auto first = store->Create({"GPU-1::0", "GPU-2::4"});
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = store->Create({"GPU-1::1"});
  ASSERT_TRUE(second.ok());
  EXPECT_LT(first->id, second->id);  // names sort by creation
  EXPECT_EQ(Read(first->path + "/devices"), "GPU-1::0\nGPU-2::4\n");
  EXPECT_EQ(Read(first->path + "/limits"), kPendingLimits);
  {
    // What the shim makes of it: 1 MiB on every GPU, not "no limits".
    shim::Config pending =
        shim::ParseConfigWithLimitsFile({}, shim::kLimitsFilePath, kPendingLimits);
    ASSERT_TRUE(pending.errors.empty()) << pending.errors[0];
    EXPECT_TRUE(pending.any_limit);
    EXPECT_EQ(pending.limits.devices[0].memory_bytes, 1u << 20);
    EXPECT_EQ(pending.limits.devices[7].memory_bytes, 1u << 20);
  }
  EXPECT_EQ(ModeOf(first->path + "/limits"), 0444u);
  EXPECT_EQ(ModeOf(first->path + "/region"), 0777u);

  IdentifiedContainer owner{"ns", "p", "main", {{"GPU-1", 1000, 10}, {"GPU-2", 2000, 0}}};
  ASSERT_TRUE(store->Claim(*first, owner, "CUDA_DEVICE_MEMORY_LIMIT_0=1000m\n").ok());
  EXPECT_EQ(Read(first->path + "/limits"), "CUDA_DEVICE_MEMORY_LIMIT_0=1000m\n");
  EXPECT_EQ(ModeOf(first->path + "/limits"), 0444u);

  auto listed = store->List();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id, first->id);
  EXPECT_EQ(listed[0].device_ids, (std::vector<std::string>{"GPU-1::0", "GPU-2::4"}));
  ASSERT_TRUE(listed[0].owner);
  EXPECT_EQ(listed[0].owner->pod, "p");
  EXPECT_EQ(listed[0].owner->gpus, owner.gpus);
  EXPECT_FALSE(listed[1].owner);

  ASSERT_TRUE(store->Remove(*first).ok());
  EXPECT_EQ(ModeOf(first->path), 0u);
  EXPECT_EQ(store->List().size(), 1u);
}

TEST(AllocationStore, ARelativeStateDirIsRefused) {
  auto store = AllocationStore::Open("var/lib/tessera");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("--state-dir"), std::string::npos);
}

TEST(OwnerFile, RoundTripsAndRefusesWhatItCannotRead) {
  IdentifiedContainer owner{"ns", "p", "main", {{"GPU-1", 1000, 10}}};
  auto parsed = ParseOwnerFile(OwnerFileText(owner));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->namespace_name, "ns");
  EXPECT_EQ(parsed->container, "main");
  EXPECT_EQ(parsed->gpus, owner.gpus);
  EXPECT_FALSE(ParseOwnerFile("pod=ns/p\ncontainer=c\ngpu=GPU-1 lots 10\n").ok());
  EXPECT_FALSE(ParseOwnerFile("container=c\n").ok());
}

}  // namespace
}  // namespace tessera::node
