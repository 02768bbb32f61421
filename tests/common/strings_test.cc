#include "common/strings.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace tessera {
namespace {

using Pieces = std::vector<std::string_view>;

TEST(Split, KeepsEmptyPiecesAtEveryPlace) {
  EXPECT_EQ(Split("a,,b", ','), (Pieces{"a", "", "b"}));
  EXPECT_EQ(Split(",a,", ','), (Pieces{"", "a", ""}));
  EXPECT_EQ(Split("", ','), (Pieces{""}));
  EXPECT_EQ(Split(",", ','), (Pieces{"", ""}));
}

TEST(Split, SplitsOnlyAtTheSeparatorGiven) {
  EXPECT_EQ(Split("V100M16|V100M32", '|'), (Pieces{"V100M16", "V100M32"}));
  EXPECT_EQ(Split("a,b|c", '|'), (Pieces{"a,b", "c"}));
  EXPECT_EQ(Split("abc", ','), (Pieces{"abc"}));
}

TEST(Split, PiecesPointIntoTheText) {
  constexpr std::string_view kText = "x,yz";
  Pieces pieces = Split(kText, ',');
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1].data(), kText.data() + 2);
}

TEST(Trim, DropsSpaceAtBothEndsOnly) {
  EXPECT_EQ(Trim("  a b \t\n"), "a b");
  EXPECT_EQ(Trim(" \t "), "");
}

TEST(Format, FormatsLikePrintf) {
  EXPECT_EQ(Format("%-5s|%6.2f|%d%%", "ab", 3.14159, 7), "ab   |  3.14|7%");
  EXPECT_EQ(Format("%s", ""), "");
}

// One of the two copies this replaced wrote into a 512-byte buffer and cut the rest off.
TEST(Format, WritesTextLongerThanAnyFixedBuffer) {
  const std::string long_name(5000, 'x');
  EXPECT_EQ(Format("<%s>", long_name.c_str()), "<" + long_name + ">");
}

}  // namespace
}  // namespace tessera
