#include "kube/watch_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tessera::kube {
namespace {

std::string Line(const std::string& type, const std::string& name, const std::string& version) {
  return R"({"type":")" + type + R"(","object":{"kind":"Pod","metadata":{"name":")" + name +
         R"(","resourceVersion":")" + version + "\"}}}\n";
}

struct Collected {
  std::vector<WatchEvent> events;
  std::function<void(WatchEvent&&)> sink() {
    return [this](WatchEvent&& event) { events.push_back(std::move(event)); };
  }
};

TEST(WatchStreamParser, ParsesEveryEventType) {
  WatchStreamParser parser;
  Collected got;
  std::string stream =
      Line("ADDED", "a", "1") + Line("MODIFIED", "a", "2") + Line("DELETED", "a", "3") +
      Line("BOOKMARK", "", "4") +
      R"({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}})"
      "\n";
  ASSERT_TRUE(parser.Feed(stream, got.sink()).ok());
  ASSERT_EQ(got.events.size(), 5u);
  EXPECT_EQ(got.events[0].type, EventType::kAdded);
  EXPECT_EQ(got.events[1].type, EventType::kModified);
  EXPECT_EQ(got.events[2].type, EventType::kDeleted);
  EXPECT_EQ(got.events[3].type, EventType::kBookmark);
  EXPECT_EQ(got.events[4].type, EventType::kError);
  EXPECT_EQ(got.events[4].object["code"], 410);
  EXPECT_EQ(ResourceVersionOf(got.events[2].object), "3");
  EXPECT_EQ(got.events[0].object["metadata"]["name"], "a");
  EXPECT_EQ(parser.events(), 5u);
  EXPECT_TRUE(parser.Finish().ok());
}

TEST(WatchStreamParser, AnEventSplitAtAnyByteArrivesOnceAndWhole) {
  std::string stream = Line("ADDED", "first", "10") + Line("MODIFIED", "second", "11");
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    WatchStreamParser parser;
    Collected got;
    ASSERT_TRUE(parser.Feed(stream.substr(0, cut), got.sink()).ok()) << cut;
    ASSERT_TRUE(parser.Feed(stream.substr(cut), got.sink()).ok()) << cut;
    ASSERT_EQ(got.events.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(got.events[0].object["metadata"]["name"], "first");
    EXPECT_EQ(got.events[1].object["metadata"]["name"], "second");
    EXPECT_TRUE(parser.Finish().ok());
  }
}

TEST(WatchStreamParser, ByteByByteFeedingGivesTheSameEvents) {
  std::string stream = Line("ADDED", "a", "1") + Line("DELETED", "a", "2");
  WatchStreamParser parser;
  Collected got;
  for (char c : stream) ASSERT_TRUE(parser.Feed(std::string(1, c), got.sink()).ok());
  ASSERT_EQ(got.events.size(), 2u);
  EXPECT_EQ(got.events[1].type, EventType::kDeleted);
}

TEST(WatchStreamParser, IgnoresBlankLinesAndCarriageReturns) {
  WatchStreamParser parser;
  Collected got;
  std::string event = Line("ADDED", "a", "1");
  event.insert(event.size() - 1, "\r");
  ASSERT_TRUE(parser.Feed("\n  \n" + event + "\r\n\n", got.sink()).ok());
  EXPECT_EQ(got.events.size(), 1u);
  EXPECT_TRUE(parser.Finish().ok());
}

TEST(WatchStreamParser, AMalformedEventFailsTheStreamAndNamesTheEvent) {
  WatchStreamParser parser;
  Collected got;
  Status status =
      parser.Feed(Line("ADDED", "a", "1") + "{not json\n" + Line("ADDED", "b", "2"), got.sink());
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("event 2"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("not JSON"), std::string::npos) << status.message();
  EXPECT_EQ(got.events.size(), 1u) << "events after the bad one must not be delivered";
  EXPECT_FALSE(parser.Feed(Line("ADDED", "c", "3"), got.sink()).ok()) << "stays failed";
  EXPECT_EQ(got.events.size(), 1u);
  EXPECT_FALSE(parser.Finish().ok());
}

TEST(WatchStreamParser, RefusesEventsOfTheWrongShape) {
  for (const char* line : {
           R"([1,2])",
           R"({"object":{}})",
           R"({"type":3,"object":{}})",
           R"({"type":"CREATED","object":{}})",
           R"({"type":"ADDED"})",
           R"({"type":"ADDED","object":"pod"})",
       }) {
    WatchStreamParser parser;
    Collected got;
    EXPECT_FALSE(parser.Feed(std::string(line) + "\n", got.sink()).ok()) << line;
    EXPECT_TRUE(got.events.empty()) << line;
  }
}

TEST(WatchStreamParser, AnEventLongerThanTheLimitFails) {
  WatchStreamParser parser(/*max_event_bytes=*/64);
  Collected got;
  Status status = parser.Feed(std::string(40, ' ') + "{", got.sink());
  ASSERT_TRUE(status.ok());
  status = parser.Feed(std::string(40, 'x'), got.sink());
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("longer than 64 bytes"), std::string::npos) << status.message();
}

TEST(WatchStreamParser, FinishReportsAStreamThatEndedInsideAnEvent) {
  WatchStreamParser parser;
  Collected got;
  std::string event = Line("ADDED", "a", "1");
  ASSERT_TRUE(parser.Feed(event + event.substr(0, 20), got.sink()).ok());
  EXPECT_EQ(got.events.size(), 1u);
  Status finished = parser.Finish();
  ASSERT_FALSE(finished.ok());
  EXPECT_NE(finished.message().find("ended inside event 2"), std::string::npos)
      << finished.message();
}

TEST(ParseWatchEvent, NamesTheTypeItDoesNotKnow) {
  auto event = ParseWatchEvent(R"({"type":"RENAMED","object":{}})");
  ASSERT_FALSE(event.ok());
  EXPECT_NE(event.status().message().find("\"RENAMED\""), std::string::npos);
}

TEST(ResourceVersionOf, IsEmptyWithoutAStringVersion) {
  EXPECT_EQ(ResourceVersionOf(nlohmann::json::parse(R"({"metadata":{"resourceVersion":"7"}})")),
            "7");
  EXPECT_EQ(ResourceVersionOf(nlohmann::json::parse(R"({"metadata":{"resourceVersion":7}})")), "");
  EXPECT_EQ(ResourceVersionOf(nlohmann::json::parse(R"({"metadata":[]})")), "");
  EXPECT_EQ(ResourceVersionOf(nlohmann::json::parse("3")), "");
}

TEST(EventTypeName, SpellsTheWireNames) {
  EXPECT_EQ(EventTypeName(EventType::kAdded), "ADDED");
  EXPECT_EQ(EventTypeName(EventType::kBookmark), "BOOKMARK");
  EXPECT_EQ(EventTypeName(EventType::kError), "ERROR");
}

}  // namespace
}  // namespace tessera::kube
