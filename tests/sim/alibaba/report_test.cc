#include "sim/alibaba/report.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "common/json.h"

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
  const std::string text = FormatJson("/data", {Report()});
  EXPECT_EQ(text.rfind("{\"trace\":\"/data\",\"variant\":\"default\",\"policies\":[", 0), 0u)
      << text.substr(0, 80);
  EXPECT_EQ(text.find('\n'), text.size() - 1);  // one object, one line
  const Json json = Json::parse(text);
  ASSERT_EQ(json["policies"].size(), 2u);
  const Json& fgd = json["policies"][0];
  EXPECT_EQ(fgd["name"], "fgd");
  EXPECT_EQ(fgd["unallocated_pct_mean"], 4.0);
  EXPECT_EQ(fgd["unallocated_pct_sd"], 1.4142);  // rounded to 4 places
  EXPECT_EQ(fgd["unallocated_130_pct_mean"], 4.0);
  EXPECT_EQ(fgd["frag_rate_pct"]["80"], 10.0);
  ASSERT_EQ(fgd["seeds"].size(), 2u);
  EXPECT_EQ(fgd["seeds"][0]["seed"], 42u);
  EXPECT_EQ(fgd["seeds"][1]["unallocated_pct"], 3.0);
  EXPECT_EQ(fgd["curve"]["arrived_pct"], "0..130");
  EXPECT_EQ(fgd["curve"]["allocated_pct"].size(), static_cast<size_t>(kCurveMaxPercent + 1));
  EXPECT_EQ(fgd["curve"]["allocated_pct"][100], 96.0);
  // The keys come in the documented order.
  std::vector<std::string> keys;
  for (const auto& item : fgd.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"name", "unallocated_pct_mean", "unallocated_pct_sd",
                                            "unallocated_130_pct_mean", "frag_rate_pct",
                                            "seconds_per_run", "seeds", "curve"}));
}

TEST(FormatJson, SeveralVariantsNestUnderVariants) {
  const std::string text = FormatJson("/data", {Report(), Report()});
  EXPECT_NE(text.find("\"variant\":\"all\",\"variants\":[{\"variant\":\"default\""),
            std::string::npos);
  const Json json = Json::parse(text);
  EXPECT_EQ(json["variants"].size(), 2u);
  EXPECT_FALSE(json.contains("policies"));
}

// JSON has no NaN or infinity: a number that is not finite is written as null, and the report
// stays JSON that a parser takes.
TEST(FormatJson, WritesNumbersThatAreNotFiniteAsNull) {
  VariantReport report = Report();
  report.policies[1].runs[0].allocated_pct[100] = std::numeric_limits<double>::quiet_NaN();
  report.policies[1].runs[0].frag_rate_pct[50] = std::numeric_limits<double>::infinity();
  const std::string text = FormatJson("/data", {report});
  EXPECT_EQ(text.find("nan"), std::string::npos) << text;
  EXPECT_EQ(text.find("inf"), std::string::npos) << text;
  const Json json = Json::parse(text);
  const Json& bestfit = json["policies"][1];
  EXPECT_TRUE(bestfit["unallocated_pct_mean"].is_null());
  EXPECT_TRUE(bestfit["seeds"][0]["unallocated_pct"].is_null());
  EXPECT_TRUE(bestfit["frag_rate_pct"]["50"].is_null());
  EXPECT_TRUE(bestfit["curve"]["allocated_pct"][100].is_null());
  EXPECT_EQ(bestfit["curve"]["allocated_pct"][99], 93.0);
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
