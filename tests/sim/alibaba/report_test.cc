#include "sim/alibaba/report.h"

#include <gtest/gtest.h>

namespace tessera::sim::alibaba {
namespace {

ReplayResult Seed(uint64_t seed, double allocated_at_full) {
  ReplayResult r;
  r.seed = seed;
  r.allocated_pct.assign(kCurveMaxPercent + 1, allocated_at_full);
  r.frag_amount_pct.assign(kCurveMaxPercent + 1, 1.0);
  r.frag_rate_pct.assign(kCurveMaxPercent + 1, 10.0);
  return r;
}

VariantReport Report() {
  VariantReport report;
  report.variant = "default";
  report.policies.push_back({"fgd", {Seed(42, 95), Seed(43, 97)}});
  report.policies.push_back({"bestfit", {Seed(42, 93)}});
  return report;
}

TEST(PolicySummary, MeanAndSampleSdOverSeeds) {
  PolicySummary s = Report().policies[0];
  EXPECT_DOUBLE_EQ(s.UnallocatedMean(100), 4.0);
  EXPECT_NEAR(s.UnallocatedSd(100), 1.41421356, 1e-6);
  EXPECT_DOUBLE_EQ(Report().policies[1].UnallocatedSd(100), 0.0);
}

TEST(FormatJson, OneVariantHasTheDocumentedKeys) {
  std::string json = FormatJson("/data", {Report()});
  EXPECT_EQ(json.rfind("{\"trace\":\"/data\",\"variant\":\"default\",\"policies\":[", 0), 0u)
      << json.substr(0, 80);
  EXPECT_NE(json.find("\"name\":\"fgd\",\"unallocated_pct_mean\":4.0000,"
                      "\"unallocated_pct_sd\":1.4142"),
            std::string::npos);
  EXPECT_NE(json.find("\"seeds\":[{\"seed\":42,"), std::string::npos);
}

TEST(FormatJson, SeveralVariantsNestUnderVariants) {
  std::string json = FormatJson("/data", {Report(), Report()});
  EXPECT_NE(json.find("\"variant\":\"all\",\"variants\":[{\"variant\":\"default\""),
            std::string::npos);
}

TEST(RenderSvg, DrawsTwoCurvesPerPolicyAndALegend) {
  std::string svg = RenderSvg({Report()});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 1u + 2u * 2u);  // the ideal line, then full and zoomed per policy
  // Every polyline is complete: its points end where the curve ends (arrived 130 %).
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    size_t end = svg.find("/>", at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(svg.find('<', at + 1), svg.find('\n', at) + 1) << svg.substr(at, 80);
  }
  EXPECT_NE(svg.find(">bestfit 7.00%<"), std::string::npos);
}

TEST(FormatText, ListsEveryPolicy) {
  std::string text = FormatText({Report()});
  EXPECT_NE(text.find("fgd"), std::string::npos);
  EXPECT_NE(text.find("bestfit"), std::string::npos);
  EXPECT_NE(text.find("4.00 ± 1.41"), std::string::npos);
}

}  // namespace
}  // namespace tessera::sim::alibaba
