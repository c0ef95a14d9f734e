#include "audit/internal/canonical.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::audit::internal {
namespace {

using core::Json;

// --- The reference: what ChainChecker did before (DOM parse, then re-serialize) -----------

struct Reference {
  bool ok = false;
  bool has_seq = false;
  int64_t seq = 0;
  bool has_ts = false;
  int64_t ts = 0;
  const Json* prev = nullptr;
};

Reference SlowScan(std::string_view line, size_t max_bytes, core::Result<Json>* holder) {
  Reference r;
  *holder = Json::Parse(line, max_bytes);
  if (!holder->ok() || !(*holder)->is_object() || (*holder)->Canonical() != line) return r;
  const Json& v = holder->value();
  r.ok = true;
  if (const Json* s = v.Find("seq"); s != nullptr && s->is_int()) {
    r.has_seq = true;
    r.seq = s->as_int();
  }
  if (const Json* t = v.Find("ts"); t != nullptr && t->is_int()) {
    r.has_ts = true;
    r.ts = t->as_int();
  }
  if (const Json* p = v.Find("prev"); p != nullptr && p->is_string()) r.prev = p;
  return r;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// Checks one line against the reference; returns whether it was canonical.
bool ExpectAgrees(std::string_view line, size_t max_bytes = core::kAuditRecordBytesMax) {
  core::Result<Json> holder = Json();
  const Reference want = SlowScan(line, max_bytes, &holder);
  const CanonicalScan got = ScanCanonicalRecord(line, max_bytes);
  EXPECT_EQ(got.ok, want.ok) << "line: " << Printable(line) << "\nscan problem: " << got.problem
                             << " at " << got.offset;
  if (got.ok != want.ok || !want.ok) {
    if (!got.ok) {
      EXPECT_FALSE(got.problem.empty());
    }
    return false;
  }
  EXPECT_TRUE(got.problem.empty());
  EXPECT_EQ(got.has_seq, want.has_seq) << Printable(line);
  if (want.has_seq) {
    EXPECT_EQ(got.seq, want.seq) << Printable(line);
  }
  EXPECT_EQ(got.has_ts, want.has_ts) << Printable(line);
  if (want.has_ts) {
    EXPECT_EQ(got.ts, want.ts) << Printable(line);
  }
  EXPECT_EQ(got.has_prev, want.prev != nullptr) << Printable(line);
  if (want.prev != nullptr && got.has_prev) {
    // The raw text, quoted, is the canonical writing of the value.
    std::string quoted;
    core::AppendJsonString(want.prev->as_string(), &quoted);
    EXPECT_EQ("\"" + std::string(got.prev) + "\"", quoted);
    EXPECT_GE(got.prev.data(), line.data());
    EXPECT_LE(got.prev.data() + got.prev.size(), line.data() + line.size());
  }
  return true;
}

// --- Deterministic random values ---------------------------------------------------------

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {  // splitmix64: the same sequence on every platform
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }
  bool OneIn(size_t n) { return Below(n) == 0; }

 private:
  uint64_t s_;
};

// Pieces strings are built from: plain text, every byte the writer escapes, multibyte UTF-8
// (first list), and byte sequences Parse refuses (second list: stray continuation, overlong
// forms, UTF-8-encoded surrogates, beyond U+10FFFF, truncated sequences, 0xff).
const std::vector<std::string>& ValidPieces() {
  static const std::vector<std::string> pieces = [] {
    std::vector<std::string> p = {"a",
                                  "seq",
                                  "ts",
                                  "prev",
                                  "Z",
                                  "0",
                                  " ",
                                  "/",
                                  "\"",
                                  "\\",
                                  "\x7f",
                                  "é",
                                  "€",
                                  "😀",
                                  "\xef\xbf\xbf",
                                  "\xf4\x8f\xbf\xbf",
                                  "\xed\x9f\xbf",
                                  "\xee\x80\x80",
                                  "\xc2\x80",
                                  "hello world"};
    for (int c = 0; c < 0x20; ++c) p.emplace_back(1, static_cast<char>(c));
    return p;
  }();
  return pieces;
}

const std::vector<std::string>& InvalidPieces() {
  static const std::vector<std::string> pieces = {"\x80",
                                                  "\xbf",
                                                  "\xc0\x80",
                                                  "\xc1\xbf",
                                                  "\xe0\x80\x80",
                                                  "\xe0\x9f\xbf",
                                                  "\xed\xa0\x80",
                                                  "\xed\xbf\xbf",
                                                  "\xf0\x80\x80\x80",
                                                  "\xf4\x90\x80\x80",
                                                  "\xf5\x80\x80\x80",
                                                  "\xe2\x82",
                                                  "\xf0\x9f\x98",
                                                  "\xff",
                                                  "\xfe",
                                                  "\xc3"};
  return pieces;
}

std::string RandomString(Rng& rng, bool allow_invalid) {
  std::string s;
  const size_t n = rng.Below(6);
  for (size_t i = 0; i < n; ++i) {
    const auto& pieces = allow_invalid && rng.OneIn(40) ? InvalidPieces() : ValidPieces();
    s += pieces[rng.Below(pieces.size())];
  }
  return s;
}

double RandomDouble(Rng& rng) {
  static const double kSpecial[] = {0.1,
                                    0.5,
                                    1.5,
                                    -2.25,
                                    1e-7,
                                    2.5e-5,
                                    1e21,
                                    1e300,
                                    -1e-300,
                                    5e-324,
                                    2.2250738585072014e-308,
                                    1.7976931348623157e308,
                                    9007199254740992.0,
                                    9007199254740994.0,
                                    0.30000000000000004,
                                    -0.0,
                                    123456.789,
                                    1e16,
                                    4503599627370495.5};
  switch (rng.Below(4)) {
    case 0:
      return kSpecial[rng.Below(sizeof(kSpecial) / sizeof(kSpecial[0]))];
    case 1: {
      double d = std::bit_cast<double>(rng.Next());
      return std::isfinite(d) ? d : 1.0;
    }
    case 2:
      return static_cast<double>(static_cast<int64_t>(rng.Next() % 2000000) - 1000000) / 1000.0;
    default:
      return static_cast<double>(rng.Next() >> rng.Below(64)) * (rng.OneIn(2) ? -1 : 1);
  }
}

int64_t RandomInt(Rng& rng) {
  static const int64_t kSpecial[] = {0,
                                     1,
                                     -1,
                                     9,
                                     10,
                                     INT64_MAX,
                                     INT64_MIN,
                                     INT64_MAX - 1,
                                     INT64_MIN + 1,
                                     1767000000000000,
                                     9007199254740993};
  if (rng.OneIn(3)) return kSpecial[rng.Below(sizeof(kSpecial) / sizeof(kSpecial[0]))];
  return static_cast<int64_t>(rng.Next()) >> rng.Below(64);
}

Json RandomValue(Rng& rng, size_t depth, bool allow_invalid);

Json RandomObject(Rng& rng, size_t depth, bool allow_invalid) {
  Json::Object obj;
  const size_t n = rng.Below(depth > 6 ? 2 : 6);
  for (size_t i = 0; i < n; ++i) {
    std::string key = rng.OneIn(3) ? std::string(1, static_cast<char>('a' + rng.Below(4)))
                                   : RandomString(rng, allow_invalid);
    bool duplicate = false;
    for (const auto& m : obj) duplicate = duplicate || m.first == key;
    // Mostly unique keys (Parse refuses duplicates); a duplicate now and then.
    if (duplicate && !(allow_invalid && rng.OneIn(4))) continue;
    obj.emplace_back(std::move(key), RandomValue(rng, depth + 1, allow_invalid));
  }
  return Json(std::move(obj));
}

Json RandomValue(Rng& rng, size_t depth, bool allow_invalid) {
  const size_t kind = depth > 8 ? rng.Below(6) : rng.Below(8);
  switch (kind) {
    case 0:
      return Json();
    case 1:
      return Json(rng.OneIn(2));
    case 2:
      return Json(RandomInt(rng));
    case 3:
      return Json(RandomDouble(rng));
    case 4:
    case 5:
      return Json(RandomString(rng, allow_invalid));
    case 6: {
      Json::Array arr;
      const size_t n = rng.Below(5);
      for (size_t i = 0; i < n; ++i) arr.push_back(RandomValue(rng, depth + 1, allow_invalid));
      return Json(std::move(arr));
    }
    default:
      return RandomObject(rng, depth, allow_invalid);
  }
}

// A record-shaped object: the log's three members plus random content (which may itself
// hold members named seq, ts or prev further down).
Json RandomRecord(Rng& rng, bool allow_invalid) {
  Json r = RandomObject(rng, 1, allow_invalid);
  if (!rng.OneIn(8))
    r.Set("seq", rng.OneIn(10) ? RandomValue(rng, 2, false) : Json(RandomInt(rng)));
  if (!rng.OneIn(8)) r.Set("ts", rng.OneIn(10) ? RandomValue(rng, 2, false) : Json(RandomInt(rng)));
  if (!rng.OneIn(8)) {
    r.Set("prev", rng.OneIn(10) ? RandomValue(rng, 2, false)
                                : Json(std::string("e91b623d7cfa7371a49f5e10bad69e2844e0f06ac4f4"
                                                   "afcb6a8296118fad15cd")));
  }
  return r;
}

// Textual edits that turn a canonical line into a nearby one: non-minimal escapes, other hex
// case, whitespace, number spellings, reordered or broken structure.
const std::vector<std::pair<std::string, std::string>>& Edits() {
  static const std::vector<std::pair<std::string, std::string>> edits = {
      {"\\n", "\\u000a"},
      {"\\u001f", "\\u001F"},
      {"\\u0000", "\\u0000\\u0000"},
      {"\\\\", "\\u005c"},
      {"\\\"", "\\u0022"},
      {"\\t", "\\u0009"},
      {"\\b", "\\u0008"},
      {"\\f", "\\u000c"},
      {"\\r", "\\u000d"},
      {"\\u001", "\\u00"},
      {"\\t", "\t"},
      {"a", "\\u0061"},
      {"/", "\\/"},
      {"é", "\\u00e9"},
      {"😀", "\\ud83d\\ude00"},
      {":", " :"},
      {":", ": "},
      {",", ", "},
      {",", ",\n"},
      {"{", "{ "},
      {"}", " }"},
      {"[", "[ "},
      {"0", "-0"},
      {"1", "01"},
      {"1", "1.0"},
      {"1", "1e0"},
      {"1", "+1"},
      {"e+", "e"},
      {"e-0", "e-"},
      {"e+", "E+"},
      {"e", "e+"},
      {"0.", "."},
      {"5", "50"},
      {"true", "tru"},
      {"null", "nul"},
      {"false", "False"},
      {"\"", "'"},
      {",", ""},
      {"\":", "\""},
      {"]", ""},
      {"}", ""},
      {"[]", "[,]"},
      {"{}", "{,}"},
      {",", ",,"},
      {"1", "12345678901234567890"},
      {"9", "99999999999"},
      {"-", ""},
      {"\"seq\":", "\"seq\":\"1\","},
  };
  return edits;
}

std::string Mutate(Rng& rng, const std::string& line) {
  std::string s = line;
  switch (rng.Below(6)) {
    case 0:
    case 1: {
      const auto& [from, to] = Edits()[rng.Below(Edits().size())];
      std::vector<size_t> at;
      for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + 1))
        at.push_back(p);
      if (at.empty()) return s + (rng.OneIn(2) ? " " : "x");
      s.replace(at[rng.Below(at.size())], from.size(), to);
      return s;
    }
    case 2: {  // a byte replaced by one from an alphabet of structural and odd bytes
      static constexpr char kBytes[] = "{}[]:,\"\\ \t\n0-1.eE+atfnu\x80\xc0\xed\xff";
      if (s.empty()) return "{";
      s[rng.Below(s.size())] = kBytes[rng.Below(sizeof(kBytes) - 1)];
      return s;
    }
    case 3:  // a byte deleted
      if (!s.empty()) s.erase(rng.Below(s.size()), 1);
      return s;
    case 4: {  // a byte duplicated
      if (s.empty()) return s;
      const size_t p = rng.Below(s.size());
      s.insert(p, 1, s[p]);
      return s;
    }
    default: {  // trailing bytes
      static const char* kTails[] = {" ", "\n", "x", "}", "{}", "\r", "\x00"};
      const char* t = kTails[rng.Below(7)];
      return s + (std::strlen(t) == 0 ? std::string(1, '\0') : std::string(t));
    }
  }
}

// --- Behaviour ---------------------------------------------------------------------------

TEST(ScanCanonicalRecord, AcceptsTheDocumentedExampleLines) {
  const std::string lines[] = {
      R"({"files":3,"prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"ts":1767000000000000,"type":"policy.loaded"})",
      R"({"agent":"triage-bot","human":"alice","prev":"e91b623d7cfa7371a49f5e10bad69e2844e0f06ac4f4afcb6a8296118fad15cd","seq":1,"sid":"ses_01jq","ts":1767000000001500,"type":"session.started"})",
  };
  for (const auto& line : lines) {
    const CanonicalScan scan = ScanCanonicalRecord(line);
    ASSERT_TRUE(scan.ok) << scan.problem;
    EXPECT_TRUE(ExpectAgrees(line));
    EXPECT_TRUE(scan.has_seq && scan.has_ts && scan.has_prev);
  }
  const CanonicalScan second = ScanCanonicalRecord(lines[1]);
  EXPECT_EQ(second.seq, 1);
  EXPECT_EQ(second.ts, 1767000000001500);
  EXPECT_EQ(second.prev, "e91b623d7cfa7371a49f5e10bad69e2844e0f06ac4f4afcb6a8296118fad15cd");
}

TEST(ScanCanonicalRecord, ExtractsSeqTsAndPrevOnlyAtTheTopLevel) {
  const std::string nested =
      R"({"a":{"prev":"ff","seq":5,"ts":6},"b":[{"seq":7}],"c":"\"seq\":8"})";
  const CanonicalScan scan = ScanCanonicalRecord(nested);
  ASSERT_TRUE(scan.ok) << scan.problem;
  EXPECT_FALSE(scan.has_seq);
  EXPECT_FALSE(scan.has_ts);
  EXPECT_FALSE(scan.has_prev);
  EXPECT_TRUE(ExpectAgrees(nested));

  const std::string both = R"({"a":{"seq":5},"prev":"ab","seq":-3,"ts":9223372036854775807})";
  const CanonicalScan top = ScanCanonicalRecord(both);
  ASSERT_TRUE(top.ok) << top.problem;
  EXPECT_TRUE(top.has_seq);
  EXPECT_EQ(top.seq, -3);
  EXPECT_EQ(top.ts, INT64_MAX);
  EXPECT_EQ(top.prev, "ab");
  EXPECT_TRUE(ExpectAgrees(both));
}

TEST(ScanCanonicalRecord, LeavesOutMembersOfTheWrongType) {
  for (const std::string line :
       {R"({"prev":1,"seq":"1","ts":1.5})", R"({"prev":null,"seq":[],"ts":{"x":1}})",
        R"({"prev":"a\nb","seq":true,"ts":1e+300})"}) {
    const CanonicalScan scan = ScanCanonicalRecord(line);
    ASSERT_TRUE(scan.ok) << line << ": " << scan.problem;
    EXPECT_FALSE(scan.has_seq) << line;
    EXPECT_FALSE(scan.has_ts) << line;
    EXPECT_TRUE(ExpectAgrees(line));
  }
  const CanonicalScan escaped = ScanCanonicalRecord(R"({"prev":"a\nb"})");
  ASSERT_TRUE(escaped.has_prev);
  EXPECT_EQ(escaped.prev, "a\\nb");  // raw text: a string with an escape is never hex
}

TEST(ScanCanonicalRecord, RejectsWhatIsNotACanonicalObject) {
  for (const std::string& line : std::vector<std::string>{"",
                                                          " ",
                                                          "[]",
                                                          "1",
                                                          "\"x\"",
                                                          "null",
                                                          "{",
                                                          "}",
                                                          "{} ",
                                                          " {}",
                                                          "{\"a\":1,\"a\":2}",
                                                          "{\"b\":1,\"a\":2}",
                                                          "{\"a\" :1}",
                                                          "{\"a\":1.0}",
                                                          "{\"a\":-0}",
                                                          "{\"a\":01}",
                                                          "{\"a\":1E2}",
                                                          "{\"a\":\"\\u0041\"}",
                                                          "{\"a\":\"\\/\"}",
                                                          "{\"a\":\"\\u001F\"}",
                                                          "{\"a\":\"\\u000a\"}",
                                                          "{\"a\":\"\x01\"}",
                                                          "{\"a\":\"\xed\xa0\x80\"}",
                                                          "{\"a\":\"\xc0\x80\"}",
                                                          "{\"a\":9223372036854775808}",
                                                          "{\"a\":-9223372036854775809}",
                                                          "{\"a\":18446744073709551615}",
                                                          "{\"a\":1e400}",
                                                          "{\"a\":tru}",
                                                          "{}x",
                                                          std::string("{}\0", 3)}) {
    const CanonicalScan scan = ScanCanonicalRecord(line);
    EXPECT_FALSE(scan.ok) << Printable(line);
    EXPECT_FALSE(scan.problem.empty()) << Printable(line);
    EXPECT_LE(scan.offset, line.size());
    ExpectAgrees(line);
  }
}

TEST(ScanCanonicalRecord, AcceptsEdgeValuesTheWriterProduces) {
  for (const std::string line :
       {"{}", "{\"\":\"\"}", "{\"a\":[]}", "{\"a\":{}}", "{\"a\":-9223372036854775808}",
        "{\"a\":0.1}", "{\"a\":1e-07}", "{\"a\":1e+300}", "{\"a\":9.007199254740992e+15}",
        "{\"a\":5e-324}", "{\"a\":-1.7976931348623157e+308}", "{\"a\":\"\\u0000\\u001f\x7f\"}",
        "{\"a\":\"\\\"\\\\\\b\\f\\n\\r\\t\"}", "{\"a\":\"é€😀\xf4\x8f\xbf\xbf\"}",
        "{\"a\":[true,false,null]}"}) {
    EXPECT_TRUE(ScanCanonicalRecord(line).ok) << Printable(line);
    EXPECT_TRUE(ExpectAgrees(line)) << Printable(line);
  }
}

TEST(ScanCanonicalRecord, OrdersKeysByTheirDecodedBytes) {
  // '"' (0x22) sorts before '#' (0x23) although its escape starts with '\' (0x5c); a key
  // with an escaped control byte sorts before plain text; a prefix sorts first.
  for (const std::string line :
       {R"({"\"":1,"#":2})", R"({"":1,"\u0000":2})", R"({"\u0001":1,"\n":2,"\u000b":3})",
        R"({"a":1,"a\u0000":2,"ab":3})", R"({"\\":1,"]":2,"é":3})",
        "{\"\x7f\":1,\"\xc2\x80\":2}"}) {
    EXPECT_TRUE(ScanCanonicalRecord(line).ok) << line;
    EXPECT_TRUE(ExpectAgrees(line)) << line;
  }
  for (const std::string line : {R"({"#":1,"\"":2})", R"({"\u0000":1,"":2})",
                                 R"({"a\u0000":1,"a":2})", R"({"\n":1,"\n":2})"}) {
    EXPECT_FALSE(ScanCanonicalRecord(line).ok) << line;
    ExpectAgrees(line);
  }
}

std::string NestedArrays(size_t levels, const std::string& leaf) {
  return std::string(levels, '[') + leaf + std::string(levels, ']');
}

TEST(ScanCanonicalRecord, EnforcesTheDepthLimitAsParseDoes) {
  const size_t max = core::kJsonDepthMax;
  // The root object is depth 1, its member's value depth 2: levels + 1 arrays deep, the
  // innermost array sits at depth levels + 1 and its elements one deeper.
  for (size_t levels : {max - 3, max - 2, max - 1, max, max + 1}) {
    for (const std::string leaf : {"", "1", "[]", "{}", "{\"k\":null}"}) {
      const std::string line = "{\"a\":" + NestedArrays(levels, leaf) + "}";
      ExpectAgrees(line);
    }
  }
  const std::string at_limit = "{\"a\":" + NestedArrays(max - 2, "1") + "}";  // 1 at depth 64
  EXPECT_TRUE(ScanCanonicalRecord(at_limit).ok);
  const std::string over = "{\"a\":" + NestedArrays(max - 1, "1") + "}";  // 1 at depth 65
  const CanonicalScan scan = ScanCanonicalRecord(over);
  EXPECT_FALSE(scan.ok);
  EXPECT_NE(scan.problem.find("deeper"), std::string_view::npos);
  // Deep objects, and far deeper than the limit (the recursion must stop at the limit).
  std::string objects = "1";
  for (size_t i = 0; i < max + 1; ++i) {
    objects = "{\"k\":" + objects + "}";
    ExpectAgrees(objects);
  }
  EXPECT_FALSE(ScanCanonicalRecord("{\"a\":" + NestedArrays(100000, "") + "}").ok);
}

TEST(ScanCanonicalRecord, EnforcesTheSizeLimitAsParseDoes) {
  const std::string line = R"({"a":"0123456789"})";
  EXPECT_TRUE(ScanCanonicalRecord(line, line.size()).ok);
  const CanonicalScan over = ScanCanonicalRecord(line, line.size() - 1);
  EXPECT_FALSE(over.ok);
  EXPECT_FALSE(over.problem.empty());
  for (size_t max : {line.size() - 1, line.size(), line.size() + 1}) ExpectAgrees(line, max);
}

TEST(ScanCanonicalRecord, NumberSpellingsAgreeWithTheWriter) {
  const char* tokens[] = {"0",
                          "-0",
                          "00",
                          "1",
                          "-1",
                          "1.0",
                          "1.",
                          ".5",
                          "0.5",
                          "-0.5",
                          "0.50",
                          "1e2",
                          "1E2",
                          "1e+2",
                          "100",
                          "1e-07",
                          "1e-7",
                          "1E-07",
                          "1e+300",
                          "1e300",
                          "1.0e+300",
                          "1e+16",
                          "10000000000000000",
                          "9007199254740992",
                          "9007199254740993",
                          "9.007199254740992e+15",
                          "9007199254740991",
                          "9.007199254740991e+15",
                          "18446744073709551615",
                          "18446744073709551616",
                          "9223372036854775807",
                          "9223372036854775808",
                          "-9223372036854775808",
                          "-9223372036854775809",
                          "92233720368547758070",
                          "5e-324",
                          "4.9406564584124654e-324",
                          "1e-400",
                          "1e400",
                          "-1e400",
                          "0.30000000000000004",
                          "0.3000000000000000444",
                          "2.5e-05",
                          "0.000025",
                          "123456.789",
                          "1234567.5",
                          "1e21",
                          "1e+21",
                          "-1.7976931348623157e+308",
                          "1.7976931348623157e+309",
                          "0e0",
                          "-0.0",
                          "0.0",
                          "1.5e+00",
                          "+1",
                          "--1",
                          "1-",
                          "0x10",
                          "1_000",
                          "Infinity",
                          "NaN",
                          "-",
                          "1e",
                          "1e+",
                          "4503599627370495.5",
                          "2.2250738585072014e-308",
                          "2.225073858507201e-308"};
  size_t accepted = 0;
  for (const char* token : tokens) {
    accepted += ExpectAgrees(std::string("{\"n\":") + token + "}");
    accepted += ExpectAgrees(std::string("{\"n\":[") + token + "]}");
  }
  EXPECT_GT(accepted, 10u);
}

TEST(ScanCanonicalRecord, AgreesWithParseAndCanonicalOnRandomRecords) {
  Rng rng(0x6d616e64617465);  // "mandate"
  size_t cases = 0;
  size_t canonical = 0;
  for (int i = 0; i < 12000; ++i) {
    const Json record = RandomRecord(rng, /*allow_invalid=*/i % 2 == 1);
    const std::string line = record.Canonical();
    canonical += ExpectAgrees(line);
    ExpectAgrees(record.Dump());  // insertion order: unsorted keys now and then
    cases += 2;
    for (int m = 0; m < 4; ++m) {
      std::string mutated = Mutate(rng, line);
      if (rng.OneIn(3)) mutated = Mutate(rng, mutated);
      ExpectAgrees(mutated);
      ++cases;
    }
    if (i % 200 == 0) {  // every prefix of a sample
      for (size_t n = 0; n < line.size(); ++n) ExpectAgrees(std::string_view(line).substr(0, n));
      cases += line.size();
    }
    if (::testing::Test::HasFailure()) break;  // one disagreement tells the story
  }
  std::printf("[ differential ] %zu lines compared with Parse + Canonical, %zu canonical\n", cases,
              canonical);
  EXPECT_GT(canonical, 3000u);  // the generator is not degenerate
}

// --- Throughput (printed, not asserted) --------------------------------------------------

std::string TypicalRecord(int64_t seq) {
  Json r = Json::MakeObject();
  r.Set("type", "call.decided");
  r.Set("run", "run_01jq8m3x7v4k2p9d5t6w");
  r.Set("sid", "ses_01jq8m3x7v4k2p9d5t6w");
  r.Set("chain", Json::StringArray({"orchestrator", "triage-bot"}));
  r.Set("agent", "triage-bot");
  r.Set("human", "alice@example.com");
  r.Set("task", "Triage incoming support tickets");
  r.Set("action", "mcp:tools/call:github.create_issue");
  r.Set("protocol", "mcp");
  r.Set("decision_id", "dec_01jq8m3x7v4k2p9d5t6w8y");
  r.Set("resource", "repo:acme/widgets");
  Json args = Json::MakeObject();
  args.Set("title", "Crash when saving — see log");
  args.Set("body", "Steps:\n1. open\n2. save\n\"boom\"");
  args.Set("labels", Json::StringArray({"bug", "p2"}));
  r.Set("args", std::move(args));
  r.Set("args_hash", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Json decision = Json::MakeObject();
  decision.Set("decision", "allow");
  decision.Set("reason", "policy permit-triage matched");
  decision.Set("policies", Json::StringArray({"permit-triage"}));
  r.Set("decision", std::move(decision));
  r.Set("seq", seq);
  r.Set("ts", int64_t{1767000000000000} + seq * 1500);
  r.Set("prev", "e91b623d7cfa7371a49f5e10bad69e2844e0f06ac4f4afcb6a8296118fad15cd");
  return r.Canonical();
}

TEST(ScanCanonicalRecord, ReportsThroughputAgainstParseAndCanonical) {
  std::vector<std::string> lines;
  size_t bytes = 0;
  for (int64_t i = 0; i < 64; ++i) {
    lines.push_back(TypicalRecord(1000000 + i));
    bytes += lines.back().size();
  }
  using Clock = std::chrono::steady_clock;
  bool all_ok = true;
  auto measure = [&](auto&& check) {  // seconds per pass over `lines`, best of a few runs
    double best = 1e9;
    for (int run = 0; run < 5; ++run) {
      const auto start = Clock::now();
      int passes = 0;
      do {
        for (const auto& line : lines) all_ok = check(line) && all_ok;
        ++passes;
      } while (Clock::now() - start < std::chrono::milliseconds(60));
      const double s = std::chrono::duration<double>(Clock::now() - start).count() / passes;
      best = std::min(best, s);
    }
    return best;
  };
  const double scan_s = measure([](const std::string& l) { return ScanCanonicalRecord(l).ok; });
  const double slow_s = measure([](const std::string& l) {
    auto v = Json::Parse(l, core::kAuditRecordBytesMax);
    return v.ok() && v->Canonical() == l;
  });
  EXPECT_TRUE(all_ok);
  const double n = static_cast<double>(lines.size());
  std::printf(
      "[ throughput ] %zu-byte records: ScanCanonicalRecord %.0f MB/s (%.2fM records/s); "
      "Parse + Canonical %.0f MB/s (%.2fM records/s); ratio %.1fx\n",
      bytes / lines.size(), static_cast<double>(bytes) / scan_s / 1e6, n / scan_s / 1e6,
      static_cast<double>(bytes) / slow_s / 1e6, n / slow_s / 1e6, slow_s / scan_s);
}

}  // namespace
}  // namespace mandate::audit::internal
