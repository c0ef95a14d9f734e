#include "broker/internal/multi_match.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace mandate::broker::internal {
namespace {

// The reference: every pattern tried at every end position.
std::vector<Hit> BruteForce(const std::vector<Pattern>& patterns, std::string_view text) {
  std::vector<Hit> hits;
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t longest = 0;
    size_t reach = 0;
    uint8_t slack_right = 0;
    for (const Pattern& p : patterns) {
      size_t n = p.bytes.size();
      if (n > end || text.substr(end - n, n) != p.bytes) continue;
      longest = std::max(longest, n);
      reach = std::max(reach, n + p.slack_left);
      slack_right = std::max(slack_right, p.slack_right);
    }
    if (longest != 0) {
      hits.push_back(Hit{end - longest, end, static_cast<uint8_t>(reach - longest), slack_right});
    }
  }
  return hits;
}

std::string Describe(const std::vector<Hit>& hits) {
  std::string out;
  for (const Hit& h : hits) {
    out += "[" + std::to_string(h.begin) + "," + std::to_string(h.end) + ") -" +
           std::to_string(h.slack_left) + " +" + std::to_string(h.slack_right) + "\n";
  }
  return out;
}

TEST(MultiMatcher, FindsOverlappingPatternsInOnePass) {
  MultiMatcher m({{"he"}, {"she"}, {"his"}, {"hers"}});
  std::vector<Hit> hits = m.FindAll("ushers");
  ASSERT_EQ(hits.size(), 2u) << Describe(hits);
  EXPECT_EQ(hits[0].begin, 1u);  // "she" (and "he" inside it) end at 4
  EXPECT_EQ(hits[0].end, 4u);
  EXPECT_EQ(hits[1].begin, 2u);  // "hers"
  EXPECT_EQ(hits[1].end, 6u);
  EXPECT_TRUE(m.ContainsAny("a his b"));
  EXPECT_FALSE(m.ContainsAny("hhh eee sss"));
}

TEST(MultiMatcher, EmptyMatcherMatchesNothing) {
  MultiMatcher m;
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(m.FindAll("anything").empty());
  EXPECT_FALSE(m.ContainsAny("anything"));
  EXPECT_TRUE(MultiMatcher(std::vector<Pattern>{}).empty());
}

TEST(MultiMatcher, DuplicatePatternsKeepTheLargestSlacks) {
  MultiMatcher m({{"abc", 1, 0}, {"abc", 0, 2}, {"bc", 3, 0}});
  std::vector<Hit> hits = m.FindAll("xabc");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].begin, 1u);
  // "bc" widened by 3 reaches 2 bytes before "abc"; "abc" itself only 1.
  EXPECT_EQ(hits[0].slack_left, 2);
  EXPECT_EQ(hits[0].slack_right, 2);
}

TEST(MultiMatcher, HandlesEveryByteValue) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  MultiMatcher m({{std::string("\0\xff", 2)}, {std::string("\x80\x81")}});
  std::vector<Hit> hits = m.FindAll(all + std::string("\0\xff", 2));
  ASSERT_EQ(hits.size(), 2u) << Describe(hits);
  EXPECT_EQ(hits[0].end, 0x82u);
  EXPECT_EQ(hits[1].end, 258u);
}

// Differential: random pattern sets over a small alphabet (so patterns overlap, nest and
// share suffixes a lot) against the brute-force reference.
TEST(MultiMatcher, AgreesWithBruteForce) {
  std::mt19937 rng(20240601);
  for (int round = 0; round < 500; ++round) {
    std::uniform_int_distribution<int> letter(0, round % 2 == 0 ? 1 : 3);
    std::uniform_int_distribution<int> length(1, 7);
    std::uniform_int_distribution<int> slack(0, 3);
    std::vector<Pattern> patterns(1 + round % 12);
    for (Pattern& p : patterns) {
      int n = length(rng);
      for (int i = 0; i < n; ++i) p.bytes.push_back(static_cast<char>('a' + letter(rng)));
      p.slack_left = static_cast<uint8_t>(slack(rng));
      p.slack_right = static_cast<uint8_t>(slack(rng));
    }
    std::string text;
    for (int i = 0; i < 300; ++i) text.push_back(static_cast<char>('a' + letter(rng)));
    MultiMatcher m(patterns);
    std::vector<Hit> got = m.FindAll(text);
    std::vector<Hit> want = BruteForce(patterns, text);
    ASSERT_EQ(Describe(got), Describe(want)) << "round " << round;
    EXPECT_EQ(m.ContainsAny(text), !want.empty());
  }
}

// Printed, not asserted: a text built to make naive matchers backtrack (long runs that
// almost match every pattern) costs about as much per byte as plain text.
TEST(MultiMatcher, AdversarialTextStaysLinear) {
  std::vector<Pattern> patterns;
  for (int i = 0; i < 32; ++i)
    patterns.push_back({std::string(200, 'a') + static_cast<char>('A' + i)});
  MultiMatcher m(patterns);
  // The best of five runs: the machine may be busy with other work.
  auto time_ms = [&](const std::string& text) {
    double best = 0;
    for (int run = 0; run < 5; ++run) {
      auto start = std::chrono::steady_clock::now();
      size_t hits = m.FindAll(text).size();
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      EXPECT_EQ(hits, 0u);
      if (run == 0 || ms < best) best = ms;
    }
    return best;
  };
  std::string plain;
  std::mt19937 rng(7);
  for (int i = 0; i < (1 << 20); ++i) plain.push_back(static_cast<char>('a' + rng() % 26));
  double plain_ms = time_ms(plain);
  double adversarial_ms = time_ms(std::string(1 << 20, 'a'));
  std::printf(
      "MultiMatcher, 1 MiB: random letters %.2f ms, 'aaa...' against 32 patterns a^200X %.2f ms"
      " (ratio %.2f)\n",
      plain_ms, adversarial_ms, adversarial_ms / plain_ms);
}

}  // namespace
}  // namespace mandate::broker::internal
