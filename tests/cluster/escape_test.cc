// A container on a shared GPU cannot raise its memory limit: tessera-escape-attempt
// (tests/e2e/escape_attempt.cc) runs in a pod that tessera-scheduler placed and tessera-node set
// up, attacks every Tessera file the container is given (the limits file, /etc/ld.so.preload and
// the shim, mounted read-only; the region directory, writable) and its environment, and re-execs
// itself after each round; then a second CUDA program (tessera-gpu-report) asks for just past
// the limit and just within it.
//
// What this does not cover (docs/memory-limits.md, "What still gets through"): the processes of
// one container that forge the region's shared totals can each reach the limit (the program's
// children get their full limit while it holds half of it); and a container with CAP_SYS_ADMIN
// or the node's filesystem in reach — as every tessera-cri container has, running as root on
// the node's filesystem — can remount or unmount the limits file, or write its copy on the node.
#include <sys/stat.h>

#include "tests/cluster/cluster_fixture.h"
#include "tests/support/child_process.h"

namespace tessera::cluster_test {
namespace {

using testing::Fields;
using testing::Number;

constexpr long long kLimitMiB = 2000;
constexpr long long kMiB = 1ll << 20;
constexpr int kOutOfMemory = 2;  // CUDA_ERROR_OUT_OF_MEMORY

size_t Count(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++count;
  }
  return count;
}

class ContainerEscape : public ClusterTest {};

TEST_F(ContainerEscape, AProcessThatWritesEveryTesseraFileItCanReachCannotPassItsLimit) {
  // The container's /etc is the node's with /etc/tessera added in the container only; were it
  // the node's own directory, the program would wreck the node's files there.
  struct stat info {};
  if (::stat("/etc/tessera", &info) == 0) GTEST_SKIP() << "/etc/tessera exists on this machine";
  const std::string name = Unique("escape");
  const std::string report = TESSERA_GPU_REPORT;
  const std::string command =
      std::string("[\"/bin/sh\", \"-c\", \"") + TESSERA_ESCAPE_ATTEMPT + " " +
      std::to_string(kLimitMiB) +
      "M --container --redirect-limits-file /etc/tessera /run/tessera; echo escape.exit=$?; " +
      report + " --allocate " + std::to_string(kLimitMiB + 1) + "; " + report + " --allocate " +
      std::to_string(WithinLimitMiB(kLimitMiB)) + "; cat /etc/tessera/limits\"]";
  ASSERT_TRUE(Apply(PodManifest(name, command,
                                "    resources: {limits: {nvidia.com/gpu: 1, nvidia.com/gpumem: " +
                                    std::to_string(kLimitMiB) + "}}\n")));
  EXPECT_EQ(WaitFinished(name), "Succeeded") << Logs(name);
  const std::string logs = Logs(name);
  KubectlHere({"delete", "pod", name, "--wait=false"});
  auto fields = Fields(logs);

  // Every attempt on the limits file failed, and so did opening the preload file and the shim
  // for writing.
  for (const char* attempt : {"limits.write", "limits.truncate", "limits.rename", "limits.unlink",
                              "preload.open", "shim.open"}) {
    const std::string key = std::string("attempt.") + attempt;
    ASSERT_EQ(fields.count(key), 1u) << key << " not tried:\n" << logs;
    EXPECT_NE(fields[key], "ok") << key << "\n" << logs;
  }
  // Each of the five rounds found the limits file and could not write it, but forged the region.
  EXPECT_EQ(Count(logs, "unwritable=/etc/tessera/limits "), 5u) << logs;
  EXPECT_NE(logs.find("forged_region=/run/tessera/region"), std::string::npos) << logs;
  EXPECT_NE(logs.find("\nCUDA_DEVICE_MEMORY_LIMIT_0=" + std::to_string(kLimitMiB) + "m\n"),
            std::string::npos)
      << "the limits file still says the pod's limit:\n"
      << logs;

  // After all of it, the limit holds and allocations within it work.
  EXPECT_EQ(Number(fields, "escape.exit"), 0) << logs;
  EXPECT_EQ(Number(fields, "failures"), 0) << logs;
  for (const char* round : {"forge-child", "private-child", "truncate-child", "final-child"}) {
    SCOPED_TRACE(round);
    EXPECT_EQ(Number(fields, std::string(round) + ".total"), kLimitMiB * kMiB) << logs;
    EXPECT_EQ(Number(fields, std::string(round) + ".over_limit"), kOutOfMemory) << logs;
    EXPECT_EQ(Number(fields, std::string(round) + ".within_limit"), 0) << logs;
  }
  EXPECT_NE(logs.find("allocate " + std::to_string(kLimitMiB + 1) + " MiB on device 0: refused"),
            std::string::npos)
      << logs;
  EXPECT_NE(
      logs.find("allocate " + std::to_string(WithinLimitMiB(kLimitMiB)) + " MiB on device 0: ok"),
      std::string::npos)
      << logs;
}

}  // namespace
}  // namespace tessera::cluster_test
