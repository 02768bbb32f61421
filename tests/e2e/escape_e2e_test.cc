// The limits file end to end: a container's processes cannot lift the limit it sets, whatever
// they write to their environment, their region or any file they can open. Real processes with
// LD_PRELOAD=libtessera-cuda.so on the fake GPU.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "fake_node.h"
#include "region/region.h"
#include "tests/support/child_process.h"

namespace tessera {
namespace {

using testing::Child;
using testing::Fields;
using testing::Number;

constexpr long long kMiB = 1ll << 20;
constexpr const char* kFixedPath = "/etc/tessera/limits";

bool Exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

class LimitsFile : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(node_.ok());
    if (Exists(kFixedPath)) GTEST_SKIP() << kFixedPath << " exists on this machine and governs";
    for (const char* directory : {"run", "cwd", "tmp", "etc", "ns"}) {
      ASSERT_EQ(::mkdir(node_.Path(directory).c_str(), 0755), 0) << directory;
    }
    WriteLimits(
        "# tessera-node: pod default/escape-0, container main\n"
        "CUDA_DEVICE_MEMORY_LIMIT_0=256m\n"
        "CUDA_DEVICE_SM_LIMIT_0=0\n");
  }

  std::string LimitsPath() const { return node_.Path("etc/limits"); }
  std::string RegionPath() const { return node_.Path("run/region"); }
  void WriteLimits(const std::string& text) const { std::ofstream(LimitsPath()) << text; }

  // The environment of a process in the container: the shim, the region, and what the
  // container itself tries (`extra`).
  std::vector<std::string> Environment(const std::vector<std::string>& extra) const {
    std::vector<std::string> environment = {std::string("LD_PRELOAD=") + TESSERA_SHIM_PATH,
                                            "CUDA_DEVICE_MEMORY_SHARED_CACHE=" + RegionPath()};
    environment.insert(environment.end(), extra.begin(), extra.end());
    return node_.Environment(environment);
  }

  static std::vector<std::string> Client(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {TESSERA_CLIENT, "dlopen"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  testing::FakeNode node_{
      "device name=\"Tessera Fake H100\" memory=16GiB sms=132 "
      "context_memory=2MiB\n"};
};

size_t Count(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
    ++count;
  }
  return count;
}

TEST_F(LimitsFile, TheEnvironmentCannotLiftOrDisableTheFilesLimit) {
  Child client(Client({"fill", "16M"}),
               Environment({"TESSERA_LIMITS_FILE=" + LimitsPath(), "CUDA_DEVICE_MEMORY_LIMIT=1t",
                            "CUDA_DEVICE_MEMORY_LIMIT_0=1t", "CUDA_DISABLE_CONTROL=true"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  // 256 MiB less the 2 MiB context: 15 blocks of 16 MiB.
  EXPECT_EQ(Number(fields, "allocated"), 15 * 16 * kMiB) << client.output();
  EXPECT_EQ(Number(fields, "refused"), 2) << "CUDA_ERROR_OUT_OF_MEMORY";
  EXPECT_EQ(Number(fields, "total"), 256 * kMiB);
  EXPECT_EQ(Number(fields, "device_total"), 256 * kMiB);
  EXPECT_EQ(Number(fields, "nvml_total"), 256 * kMiB);
  EXPECT_EQ(Count(client.output(), "CUDA_DISABLE_CONTROL in the environment is ignored"), 1u)
      << client.output();
}

TEST_F(LimitsFile, ARegionForgedBeforehandDoesNotRaiseTheLimit) {
  region::RegionConfig huge;
  for (auto& device : huge.devices) device.memory_bytes = 1ull << 40;
  {
    auto forged = region::Region::Open(RegionPath(), &huge);
    ASSERT_TRUE(forged.ok()) << forged.status().message();
  }
  Child client(Client({"fill", "16M"}), Environment({"TESSERA_LIMITS_FILE=" + LimitsPath()}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  auto fields = Fields(client.output());
  EXPECT_EQ(Number(fields, "allocated"), 15 * 16 * kMiB) << client.output();
  EXPECT_EQ(Number(fields, "total"), 256 * kMiB);
  auto region = region::Region::Open(RegionPath(), nullptr);
  ASSERT_TRUE(region.ok());
  EXPECT_EQ((*region)->Limits(0).memory_bytes, 256u * kMiB)
      << "the shim puts the file's limit back into the region for `tessera status`";
}

TEST_F(LimitsFile, ABadLineRefusesCudaNamingTheFileAndTheLine) {
  WriteLimits("CUDA_DEVICE_MEMORY_LIMIT_0=256m\nCUDA_DISABLE_CONTROL=true\n");
  Child client(Client({"info"}),
               Environment({"TESSERA_LIMITS_FILE=" + LimitsPath(), "CUDA_DISABLE_CONTROL=true"}));
  EXPECT_EQ(client.Finish(), 4) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "init"), 800) << "CUDA_ERROR_NOT_PERMITTED";
  EXPECT_NE(client.output().find(LimitsPath() + ":2: CUDA_DISABLE_CONTROL"), std::string::npos)
      << client.output();
}

TEST_F(LimitsFile, AFileThatCannotBeReadRefusesCuda) {
  Child client(Client({"info"}), Environment({"TESSERA_LIMITS_FILE=" + node_.Path("etc/missing"),
                                              "CUDA_DISABLE_CONTROL=true"}));
  EXPECT_EQ(client.Finish(), 4) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "init"), 800);
  EXPECT_NE(client.output().find(node_.Path("etc/missing")), std::string::npos) << client.output();
}

// Everything a process of the container can write, it forges; then it lifts its environment,
// re-execs itself and tries to pass the limit. The limits file lies outside its reach here as
// it does in a container, where it is mounted read-only (with TESSERA_LIMITS_FILE the file
// must be, since the test runs as root: its directory is not among the roots).
TEST_F(LimitsFile, AProcessThatForgesEveryFileItCanWriteStaysWithinItsLimit) {
  std::vector<std::string> argv = {TESSERA_ESCAPE_ATTEMPT, "256M", node_.Path("run"),
                                   node_.Path("cwd"), node_.Path("tmp")};
  Child attempt(argv, Environment({"TESSERA_LIMITS_FILE=" + LimitsPath()}));
  EXPECT_EQ(attempt.Finish(), 0) << attempt.output();
  const std::string& output = attempt.output();
  auto fields = Fields(output);
  EXPECT_EQ(Number(fields, "failures"), 0) << output;
  EXPECT_NE(output.find("forged_region=" + RegionPath()), std::string::npos) << output;
  EXPECT_EQ(Number(fields, "forge.within_limit"), 0) << output;
  EXPECT_EQ(Number(fields, "forge-child.within_limit"), 0) << output;
  EXPECT_EQ(Number(fields, "private-child.within_limit"), 0) << output;
  EXPECT_EQ(Number(fields, "truncate-child.within_limit"), 0) << output;
  EXPECT_EQ(Number(fields, "forge-child.total"), 256 * kMiB) << output;
  // A garbled region is refused outright: fail closed.
  EXPECT_EQ(Number(fields, "zeros-child.init"), 800) << output;
  EXPECT_EQ(Number(fields, "garbage-child.init"), 800) << output;
}

// The real fixed path, in a private mount namespace: /etc gets a throwaway overlay (its upper
// layer on a tmpfs in the test's directory), /etc/tessera/limits a read-only bind of the test's
// file. Nothing of it is visible outside the namespace, and the host's /etc is never written.
// The environment's TESSERA_LIMITS_FILE (naming a file that says 1t) must be ignored.
const char kNamespaceSetup[] =
    "set -e\n"
    "mount -t tmpfs tessera-e2e \"$NS\"\n"
    "mkdir \"$NS/upper\" \"$NS/work\"\n"
    "mount -t overlay overlay -o lowerdir=/etc,upperdir=\"$NS/upper\",workdir=\"$NS/work\" /etc\n"
    "mkdir -p /etc/tessera\n"
    ": > /etc/tessera/limits\n"
    "mount --bind \"$LIMITS\" /etc/tessera/limits\n"
    "mount -o remount,bind,ro /etc/tessera/limits\n"
    "cd \"$CWD\"\n"
    "exec \"$@\"\n";

TEST_F(LimitsFile, InAContainerTheFixedPathCannotBeRedirectedFromTheEnvironment) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  std::vector<std::string> setup = {"NS=" + node_.Path("ns"), "LIMITS=" + LimitsPath(),
                                    "CWD=" + node_.Path("cwd")};
  {
    std::vector<std::string> probe = {"/usr/bin/unshare", "-m",      "--propagation", "private",
                                      "/bin/sh",          "-c",      kNamespaceSetup, "sh",
                                      "/bin/cat",         kFixedPath};
    Child check(probe, node_.Environment(setup));
    int status = check.Finish();
    if (status != 0 ||
        check.output().find("CUDA_DEVICE_MEMORY_LIMIT_0=256m") == std::string::npos) {
      GTEST_SKIP() << "no private mount namespace with overlayfs here: " << check.output();
    }
  }
  ASSERT_FALSE(Exists("/etc/tessera")) << "the namespace leaked onto the host";
  std::ofstream(node_.Path("tmp/lifted")) << "CUDA_DEVICE_MEMORY_LIMIT=1t\n";
  std::vector<std::string> argv = {"/usr/bin/unshare",
                                   "-m",
                                   "--propagation",
                                   "private",
                                   "/bin/sh",
                                   "-c",
                                   kNamespaceSetup,
                                   "sh",
                                   TESSERA_ESCAPE_ATTEMPT,
                                   "256M",
                                   "--redirect-limits-file",
                                   "/etc/tessera",
                                   node_.Path("run"),
                                   node_.Path("cwd"),
                                   node_.Path("tmp")};
  std::vector<std::string> extra = setup;
  extra.push_back("TESSERA_LIMITS_FILE=" + node_.Path("tmp/lifted"));
  Child attempt(argv, Environment(extra));
  EXPECT_EQ(attempt.Finish(), 0) << attempt.output();
  const std::string& output = attempt.output();
  auto fields = Fields(output);
  EXPECT_EQ(Number(fields, "failures"), 0) << output;
  EXPECT_NE(output.find("unwritable=/etc/tessera/limits"), std::string::npos)
      << "the read-only mount held: " << output;
  EXPECT_NE(output.find("TESSERA_LIMITS_FILE is ignored"), std::string::npos) << output;
  EXPECT_EQ(Number(fields, "forge-child.total"), 256 * kMiB) << output;
  EXPECT_EQ(Number(fields, "forge-child.within_limit"), 0) << output;
  EXPECT_EQ(Number(fields, "zeros-child.init"), 800) << output;
  EXPECT_FALSE(Exists("/etc/tessera")) << "the namespace leaked onto the host";
  std::ifstream limits(LimitsPath());
  std::string first_line;
  std::getline(limits, first_line);
  EXPECT_EQ(first_line, "# tessera-node: pod default/escape-0, container main")
      << "the limits file itself was never written";
}

}  // namespace
}  // namespace tessera
