// The compute limiter under many threads of one process: every launch, capture and graph launch
// succeeds, and the share is not what is judged here (limiter_e2e_test does that). `make
// test-tsan` builds the shim, the fake GPU and the client with ThreadSanitizer and runs this, so
// a data race in the limiter's bookkeeping fails it (the race report is on the output).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fake_node.h"
#include "tests/support/child_process.h"

namespace tessera {
namespace {

using testing::Child;
using testing::Fields;
using testing::Number;

class LimiterThreads : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(node_.ok()); }

  std::vector<std::string> Environment(const std::vector<std::string>& extra) const {
    std::vector<std::string> environment = {
        "CUDA_DEVICE_MEMORY_SHARED_CACHE=" + node_.Path("region"),
        "TESSERA_NODE_BOARD=" + node_.Path("node-board"),
        std::string("LD_PRELOAD=") + TESSERA_SHIM_PATH,
    };
    environment.insert(environment.end(), extra.begin(), extra.end());
    return node_.Environment(environment);
  }

  testing::FakeNode node_{"device memory=16GiB sms=132 context_memory=32MiB\n"};
};

TEST_F(LimiterThreads, EightThreadsLaunchAndCaptureThroughTheLimiterTogether) {
  Child client({TESSERA_LIMITER_THREADS_CLIENT, "8", "200"},
               Environment({"CUDA_DEVICE_SM_LIMIT=50"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  EXPECT_EQ(Number(Fields(client.output()), "failures"), 0) << client.output();
  EXPECT_EQ(client.output().find("ThreadSanitizer"), std::string::npos) << client.output();
}

TEST_F(LimiterThreads, WorkConservingAndPriorityPathsToo) {
  Child client({TESSERA_LIMITER_THREADS_CLIENT, "8", "100"},
               Environment({"CUDA_DEVICE_SM_LIMIT=30", "TESSERA_SM_WORK_CONSERVING=true",
                            "CUDA_TASK_PRIORITY=1"}));
  ASSERT_EQ(client.Finish(), 0) << client.output();
  EXPECT_EQ(client.output().find("ThreadSanitizer"), std::string::npos) << client.output();
}

}  // namespace
}  // namespace tessera
