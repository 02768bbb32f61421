#include "common/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace tessera {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(WriteJson, WritesNumbersThatAreNotFiniteAsNull) {
  Json value = {{"nan", kNaN}, {"inf", kInfinity}, {"minus_inf", -kInfinity}, {"one", 1.5}};
  EXPECT_EQ(WriteJson(value, JsonLayout::kOneLine),
            R"({"nan":null,"inf":null,"minus_inf":null,"one":1.5})");
  // What it wrote is JSON: it parses back, the non-finite numbers as null.
  Json parsed = Json::parse(WriteJson(value, JsonLayout::kIndented));
  EXPECT_TRUE(parsed["nan"].is_null());
  EXPECT_TRUE(parsed["minus_inf"].is_null());
  EXPECT_EQ(parsed["one"], 1.5);
}

TEST(WriteJson, KeepsKeysInTheOrderTheyWereAdded) {
  Json value;
  value["zebra"] = 1;
  value["apple"] = 2;
  EXPECT_EQ(WriteJson(value, JsonLayout::kOneLine), R"({"zebra":1,"apple":2})");
}

TEST(WriteJson, IndentedPutsEachMemberOnItsOwnLine) {
  Json value = {{"a", 1}, {"b", Json::array({2, 3})}, {"c", Json::array()}};
  EXPECT_EQ(WriteJson(value, JsonLayout::kIndented),
            "{\n  \"a\": 1,\n  \"b\": [\n    2,\n    3\n  ],\n  \"c\": []\n}");
}

TEST(WriteJson, QuotesStringsAndReplacesBytesThatAreNotUtf8) {
  Json value = {{"path", std::string("a\"b\\c\n\x01") + "\xff"}};
  EXPECT_EQ(WriteJson(value, JsonLayout::kOneLine),
            "{\"path\":\"a\\\"b\\\\c\\n\\u0001\xEF\xBF\xBD\"}");
}

TEST(RoundToDecimals, KeepsThePlacesAskedFor) {
  EXPECT_EQ(RoundToDecimals(1.41421356, 4), 1.4142);
  EXPECT_EQ(RoundToDecimals(2.00049, 3), 2.0);
  EXPECT_EQ(RoundToDecimals(-0.125, 2), -0.13);
  EXPECT_EQ(RoundToDecimals(1e300, 4), 1e300);
  EXPECT_TRUE(std::isnan(RoundToDecimals(kNaN, 4)));
  EXPECT_EQ(RoundToDecimals(kInfinity, 4), kInfinity);
  // Written by WriteJson, a rounded number shows only its places.
  EXPECT_EQ(WriteJson(Json(RoundToDecimals(45.384615384, 4)), JsonLayout::kOneLine), "45.3846");
}

TEST(RoundToSignificantDigits, KeepsTheDigitsAskedFor) {
  EXPECT_EQ(RoundToSignificantDigits(12345.6789, 6), 12345.7);
  EXPECT_EQ(RoundToSignificantDigits(0.000123456789, 3), 0.000123);
  EXPECT_EQ(RoundToSignificantDigits(-kInfinity, 6), -kInfinity);
  EXPECT_EQ(WriteJson(Json(RoundToSignificantDigits(2.0 / 3.0, 6)), JsonLayout::kOneLine),
            "0.666667");
}

}  // namespace
}  // namespace tessera
