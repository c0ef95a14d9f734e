#include "mandate/core/json.h"

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "mandate/core/limits.h"

namespace mandate::core {
namespace {

TEST(Json, ParsesAndDumpsInInsertionOrder) {
  auto j = Json::Parse(R"({"b":1,"a":[true,null,"x"],"c":{"d":-2.5}})");
  ASSERT_TRUE(j.ok()) << j.error().message;
  EXPECT_EQ(j->Dump(), R"({"b":1,"a":[true,null,"x"],"c":{"d":-2.5}})");
  EXPECT_EQ(j->Canonical(), R"({"a":[true,null,"x"],"b":1,"c":{"d":-2.5}})");
}

TEST(Json, KeepsInt64Exact) {
  auto j = Json::Parse(R"({"n":9007199254740993})");
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE(j->Find("n")->is_int());
  EXPECT_EQ(j->Find("n")->as_int(), 9007199254740993LL);
}

TEST(Json, HugeNumbersRoundTrip) {
  // Found by fuzz/json_parse: 3.4e19 was written as a 20-digit integer literal that simdjson
  // refuses to parse back.
  for (const char* text : {"344444453399998e5", "18446744073709551615", "1e300", "-9.5e40"}) {
    auto j = Json::Parse(text);
    ASSERT_TRUE(j.ok()) << text;
    auto again = Json::Parse(j->Dump());
    ASSERT_TRUE(again.ok()) << j->Dump();
    EXPECT_EQ(*again, *j) << text;
  }
}

TEST(Json, CheckSerializableAgreesWithARoundTrip) {
  Json ok = *Json::Parse(R"({"a":[1,{"b":"\u00e9"}],"c":null})");
  EXPECT_TRUE(ok.CheckSerializable().ok());
  Json bad_utf8 = Json::MakeObject();
  bad_utf8.Set("s", std::string("\xff"));
  EXPECT_FALSE(bad_utf8.CheckSerializable().ok());
  EXPECT_FALSE(Json::Parse(bad_utf8.Dump()).ok());
  Json bad_key = Json::MakeObject();
  bad_key.Set(std::string("\xc3"), 1);
  EXPECT_FALSE(bad_key.CheckSerializable().ok());
  Json dup(Json::Object{{"a", 1}, {"a", 2}});
  EXPECT_FALSE(dup.CheckSerializable().ok());
  EXPECT_FALSE(Json::Parse(dup.Dump()).ok());
  Json deep = Json::MakeArray();
  for (size_t i = 1; i < kJsonDepthMax; ++i) deep = Json(Json::Array{deep});
  EXPECT_TRUE(deep.CheckSerializable().ok());   // kJsonDepthMax levels
  EXPECT_TRUE(Json::Parse(deep.Dump()).ok());
  Json deeper(Json::Array{deep});
  EXPECT_FALSE(deeper.CheckSerializable().ok());
  EXPECT_FALSE(Json::Parse(deeper.Dump()).ok());
}

TEST(Json, CheckedCanonicalAgreesWithTheParserAndCanonical) {
  // The checked walk (which CheckSerializable also is) passes exactly when the parser reads
  // its output back to the same value, and then writes Canonical's bytes: on values that fail
  // at every level and in every way.
  const auto object_of = [](std::initializer_list<std::pair<std::string, Json>> members) {
    Json::Object o;
    for (const auto& [k, v] : members) o.emplace_back(k, v);
    return Json(std::move(o));
  };
  Json deep = Json::MakeArray();
  for (size_t i = 1; i < kJsonDepthMax; ++i) deep = Json(Json::Array{deep});
  std::vector<Json> cases = {
      *Json::Parse(R"({"z":[1,{"b":"\u00e9","a":true}],"c":null,"a\"":-2.5e-7})"),
      Json("plain"),
      Json(std::string("\xff")),
      object_of({{"s", Json(std::string("ok \xc3\xa9"))}}),
      object_of({{"s", Json(std::string("\xc3"))}}),
      object_of({{std::string("\xc3"), Json(1)}}),
      object_of({{"a", Json(1)}, {"b", Json(2)}, {"a", Json(3)}}),  // apart in insertion order
      object_of({{"x", object_of({{"k", Json(1)}, {"k", Json(1)}})}}),
      Json(Json::Array{Json(1), object_of({{"q", Json(std::string("\xe2\x80"))}})}),
      deep,
      Json(Json::Array{deep}),
      object_of({{"d", deep}}),  // the deepest array one level down: too deep
  };
  size_t passing = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Json& j = cases[i];
    auto back = Json::Parse(j.Canonical());
    const bool reads_back = back.ok() && *back == j;
    std::string out;
    const auto st = j.CheckedCanonicalTo(&out);
    EXPECT_EQ(st.ok(), reads_back) << "case " << i;
    EXPECT_EQ(j.CheckSerializable().ok(), reads_back) << "case " << i;
    if (reads_back && st.ok()) {
      EXPECT_EQ(out, j.Canonical()) << "case " << i;
      ++passing;
    }
  }
  EXPECT_EQ(passing, 4u);  // the parsed object, "plain", "ok \xc3\xa9" and kJsonDepthMax levels
  // depth: a member value of a root object is at depth 2.
  std::string out;
  EXPECT_TRUE(deep.CheckedCanonicalTo(&out, 1).ok());
  out.clear();
  EXPECT_FALSE(deep.CheckedCanonicalTo(&out, 2).ok());
}

TEST(Json, EscapesControlCharacters) {
  Json j(std::string("a\"b\\c\n\x01"));
  EXPECT_EQ(j.Dump(), R"("a\"b\\c\n\u0001")");
}

TEST(Json, EscapesEveryByteWhereverItSitsInTheString) {
  // Each ASCII byte alone, at the start, in the middle and at the end of plain runs: the
  // serializer copies plain runs whole, so escapes at every position must split them right.
  for (int b = 0; b < 0x80; ++b) {
    const char c = static_cast<char>(b);
    std::string want;
    switch (c) {
      case '"': want = "\\\""; break;
      case '\\': want = "\\\\"; break;
      case '\b': want = "\\b"; break;
      case '\f': want = "\\f"; break;
      case '\n': want = "\\n"; break;
      case '\r': want = "\\r"; break;
      case '\t': want = "\\t"; break;
      default: {
        if (b < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          want = std::string("\\u00") + kHex[b >> 4] + kHex[b & 15];
        } else {
          want = std::string(1, c);
        }
      }
    }
    for (const auto& [in, out] : std::vector<std::pair<std::string, std::string>>{
             {std::string(1, c), want},
             {std::string(1, c) + "ab", want + "ab"},
             {"ab" + std::string(1, c) + "cd", "ab" + want + "cd"},
             {"ab" + std::string(1, c), "ab" + want},
             {std::string(2, c), want + want}}) {
      std::string got;
      AppendJsonString(in, &got);
      EXPECT_EQ(got, "\"" + out + "\"") << "byte " << b;
      auto back = Json::Parse(got);
      ASSERT_TRUE(back.ok()) << "byte " << b;
      EXPECT_EQ(back->as_string(), in) << "byte " << b;
    }
  }
  // Non-ASCII bytes pass through unescaped.
  std::string got;
  AppendJsonString("caf\xc3\xa9 \xe2\x80\x94\n", &got);
  EXPECT_EQ(got, "\"caf\xc3\xa9 \xe2\x80\x94\\n\"");
  // Runs of plain bytes are copied whole: every byte value at every position of a 20-byte
  // string, against a round trip through the parser.
  for (int b = 0; b < 0x100; ++b) {
    for (size_t at = 0; at < 20; ++at) {
      std::string in(20, 'x');
      in[at] = static_cast<char>(b);
      if (b >= 0x80) in[at ^ 1] = static_cast<char>(b);  // a high byte among plain ones
      std::string out;
      AppendJsonString(in, &out);
      if (b >= 0x80) {
        EXPECT_EQ(out, "\"" + in + "\"") << "byte " << b << " at " << at;
        continue;  // not valid UTF-8 alone: the parser would refuse it
      }
      auto back = Json::Parse(out);
      ASSERT_TRUE(back.ok()) << "byte " << b << " at " << at;
      EXPECT_EQ(back->as_string(), in) << "byte " << b << " at " << at;
      EXPECT_EQ(out.size() > in.size() + 2, b < 0x20 || b == '"' || b == '\\')
          << "byte " << b << " at " << at;
    }
  }
}

TEST(Json, EscapesAgreeWithAByteLoopAcrossEightByteChunks) {
  // AppendJsonString skips plain bytes eight at a time: two chosen bytes at every pair of
  // neighbouring positions, and at a position and the last byte, of strings around the chunk
  // size, against the byte-by-byte rule. The bytes include each escaped byte's neighbours and
  // high bytes, whose borrows could fool a word-wide test.
  const auto reference = [](std::string_view in) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char ch : in) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += ch;
      } else if (c == '\b') {
        out += "\\b";
      } else if (c == '\f') {
        out += "\\f";
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20) {
        out += std::string("\\u00") + kHex[c >> 4] + kHex[c & 15];
      } else {
        out += ch;
      }
    }
    return out + "\"";
  };
  const unsigned char bytes[] = {0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b,
                                 0x5c, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xe0, 0xff};
  for (size_t len : {1, 7, 8, 9, 15, 16, 17, 24, 25}) {
    for (size_t i = 0; i < len; ++i) {
      for (size_t j : {i + 1, len - 1}) {
        if (j >= len || j == i) continue;
        for (unsigned char a : bytes) {
          for (unsigned char b : bytes) {
            std::string in(len, 'x');
            in[i] = static_cast<char>(a);
            in[j] = static_cast<char>(b);
            std::string got;
            AppendJsonString(in, &got);
            ASSERT_EQ(got, reference(in)) << "len " << len << ", " << int{a} << " at " << i
                                          << ", " << int{b} << " at " << j;
          }
        }
      }
    }
  }
}

TEST(Json, IsValidUtf8AcceptsAndRejectsShortAndLongStrings) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("ab\xc3"));          // truncated sequence
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));    // a surrogate
  const std::string long_ascii(200, 'a');
  EXPECT_TRUE(IsValidUtf8(long_ascii));
  EXPECT_TRUE(IsValidUtf8(long_ascii + "\xc3\xa9"));
  EXPECT_FALSE(IsValidUtf8(long_ascii + "\xc3"));
  // Exactly at and around the short-string fast path's bound (64 bytes).
  for (size_t n : {63u, 64u, 65u}) {
    EXPECT_TRUE(IsValidUtf8(std::string(n, 'x'))) << n;
    EXPECT_FALSE(IsValidUtf8(std::string(n - 1, 'x') + "\x80")) << n;
  }
}

TEST(Json, RejectsInvalidInput) {
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\xff\"", "nul"}) {
    auto j = Json::Parse(bad);
    EXPECT_FALSE(j.ok()) << bad;
    if (!j.ok()) {
      EXPECT_EQ(j.error().code, ErrorCode::kBadRequest);
    }
  }
}

TEST(Json, RejectsDuplicateKeys) {
  auto j = Json::Parse(R"({"a":1,"a":2})");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().message.find("duplicate"), std::string::npos);
}

TEST(Json, RejectsExcessiveDepth) {
  std::string deep(kJsonDepthMax + 1, '[');
  deep += std::string(kJsonDepthMax + 1, ']');
  auto j = Json::Parse(deep);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, ErrorCode::kBadRequest);
  std::string ok(kJsonDepthMax, '[');
  ok += std::string(kJsonDepthMax, ']');
  EXPECT_TRUE(Json::Parse(ok).ok());
}

TEST(Json, RejectsOversizeInput) {
  auto j = Json::Parse("[1,2,3]", 3);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, ErrorCode::kPayloadTooLarge);
}

// ParseMembers(text, pointers) for a text Parse accepts: the members of Parse's value at those
// pointers, each at its place, nothing else.
Json Projected(std::string_view text, std::vector<std::string_view> pointers) {
  auto j = Json::ParseMembers(text, pointers);
  EXPECT_TRUE(j.ok()) << j.error().message;
  return j.ok() ? std::move(*j) : Json();
}

TEST(Json, ParseMembersBuildsOnlyTheMembersAtThePointers) {
  const std::string text =
      R"({"seq":7,"type":"call.decided","args":{"x":[1,2,{"y":null}]},)"
      R"("decision":{"checks":[{"a":1}],"decision":"allow","reason":"r"},"n":1.5})";
  EXPECT_EQ(Projected(text, {"/seq", "/type"}), *Json::Parse(R"({"seq":7,"type":"call.decided"})"));
  EXPECT_EQ(Projected(text, {"/decision/decision", "/seq"}),
            *Json::Parse(R"({"decision":{"decision":"allow"},"seq":7})"));
  // Absent members, and pointers through a scalar or an array, give nothing (no empty object
  // on the way either).
  EXPECT_EQ(Projected(text, {"/missing", "/seq/x", "/args/x/0", "/decision/none"}),
            Json::MakeObject());
  // An empty list still checks the text.
  EXPECT_EQ(Projected(text, {}), Json::MakeObject());
  EXPECT_FALSE(Json::ParseMembers(R"({"a":)", {}).ok());
  // A whole object and one of its members, in either order: the whole object.
  const Json whole = *Json::Parse(R"({"decision":{"checks":[{"a":1}],"decision":"allow","reason":"r"}})");
  EXPECT_EQ(Projected(text, {"/decision", "/decision/decision"}), whole);
  EXPECT_EQ(Projected(text, {"/decision/decision", "/decision"}), whole);
  // Numbers, nulls, nested values are built as Parse builds them.
  EXPECT_EQ(Projected(text, {"/args", "/n"}), *Json::Parse(R"({"args":{"x":[1,2,{"y":null}]},"n":1.5})"));
}

TEST(Json, ParseMembersChecksWhatItBuildsAsParseDoes) {
  // A duplicate key on a pointer's way, or inside a member built, is refused.
  for (const char* text : {R"({"a":1,"a":2})", R"({"d":{"x":1},"d":{"x":2}})",
                           R"({"d":{"x":1,"x":2}})", R"({"a":{"b":1,"b":1}})"}) {
    auto j = Json::ParseMembers(text, std::vector<std::string_view>{"/a", "/d/x"});
    ASSERT_FALSE(j.ok()) << text;
    EXPECT_EQ(j.error().code, ErrorCode::kBadRequest) << text;
    EXPECT_NE(j.error().message.find("duplicate"), std::string::npos) << text;
  }
  // Inside a member not built, it is not looked for (Parse refuses the text).
  const std::string dup_elsewhere = R"({"a":1,"other":{"k":1,"k":2}})";
  EXPECT_FALSE(Json::Parse(dup_elsewhere).ok());
  EXPECT_EQ(Projected(dup_elsewhere, {"/a"}), *Json::Parse(R"({"a":1})"));
  // Syntax and UTF-8 are checked over the whole text, built or not.
  for (std::string bad : {std::string(R"({"a":1,"b":[1,}")"), std::string("{\"a\":1,\"b\":\"\xff\"}"),
                          std::string(R"({"a":1} x)")}) {
    auto j = Json::ParseMembers(bad, std::vector<std::string_view>{"/a"});
    ASSERT_FALSE(j.ok()) << bad;
    EXPECT_EQ(j.error().code, ErrorCode::kBadRequest) << bad;
  }
  // Not an object.
  for (const char* text : {"[1]", "\"a\"", "3", "null"}) {
    auto j = Json::ParseMembers(text, std::vector<std::string_view>{"/a"});
    ASSERT_FALSE(j.ok()) << text;
    EXPECT_EQ(j.error().code, ErrorCode::kBadRequest) << text;
  }
  // The size limit.
  auto big = Json::ParseMembers(R"({"a":1})", std::vector<std::string_view>{"/a"}, 3);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::kPayloadTooLarge);
}

TEST(Json, ParseMembersAbortsOnAPointerItDoesNotSupport) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (std::string_view bad : {"", "/", "seq", "/a~1b"}) {
    EXPECT_DEATH((void)Json::ParseMembers(R"({"a":1})", std::vector<std::string_view>{bad}),
                 "MANDATE_CHECK failed")
        << bad;
  }
}

TEST(Json, ParseMembersCountsDepthFromTheRoot) {
  // {"a":{"b":[[...]]}}: the value of "b" starts at depth 3 (the root is at 1), so it may be
  // kJsonDepthMax - 2 arrays deep, as in Parse.
  auto text = [](size_t inner) {
    return R"({"a":{"b":)" + std::string(inner, '[') + std::string(inner, ']') + "}}";
  };
  const std::string ok = text(kJsonDepthMax - 2);
  const std::string deep = text(kJsonDepthMax - 1);
  ASSERT_TRUE(Json::Parse(ok).ok());
  ASSERT_FALSE(Json::Parse(deep).ok());
  EXPECT_TRUE(Json::ParseMembers(ok, std::vector<std::string_view>{"/a/b"}).ok());
  auto j = Json::ParseMembers(deep, std::vector<std::string_view>{"/a/b"});
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, ErrorCode::kBadRequest);
  // Not built, not checked.
  EXPECT_TRUE(Json::ParseMembers(deep, std::vector<std::string_view>{"/c"}).ok());
}

TEST(Json, SetReplacesAndErases) {
  Json j;
  j.Set("a", 1);
  j.Set("b", "x");
  j.Set("a", 2);
  EXPECT_EQ(j.Dump(), R"({"a":2,"b":"x"})");
  j.Erase("a");
  EXPECT_EQ(j.Dump(), R"({"b":"x"})");
  EXPECT_EQ(j.GetString("b"), "x");
  EXPECT_EQ(j.GetInt("missing", 7), 7);
}

TEST(Json, EqualityIgnoresMemberOrder) {
  EXPECT_EQ(*Json::Parse(R"({"a":1,"b":2})"), *Json::Parse(R"({"b":2,"a":1.0})"));
  EXPECT_NE(*Json::Parse(R"({"a":1})"), *Json::Parse(R"({"a":"1"})"));
}

}  // namespace
}  // namespace mandate::core

namespace mandate::core {
namespace {
TEST(Json, StringArrayKeepsOrderAndDuplicates) {
  EXPECT_EQ(Json::StringArray({"b", "a", "b"}).Dump(), R"(["b","a","b"])");
  EXPECT_EQ(Json::StringArray({}).Dump(), "[]");
}
}  // namespace
}  // namespace mandate::core
