#include "mandate/broker/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/encoding.h"

namespace mandate::broker {
namespace {

const char* FakeEnv(const char* name) {
  std::string n(name);
  if (n == "GH") return "ghp_supersecret123";
  if (n == "SHORT") return "abc";
  if (n == "EMPTY") return "";
  return nullptr;
}

TEST(Credentials, LoadsFromEnvAndFile) {
  std::string path = testing::TempDir() + "/cred_ok";
  {
    std::ofstream f(path);
    f << "file-secret-value\n";
  }
  chmod(path.c_str(), 0600);
  auto store = CredentialStore::Load({{"gh", "GH", ""}, {"f", "", path}}, FakeEnv);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(*(*store)->Get("gh"), "ghp_supersecret123");
  EXPECT_EQ(*(*store)->Get("f"), "file-secret-value");
  EXPECT_EQ((*store)->Get("nope").error().code, core::ErrorCode::kNotFound);
  // Both are in the store's scrubber, in their encoded forms too.
  EXPECT_EQ(
      (*store)->scrubber().Scrub("a ghp_supersecret123 b " + core::HexEncode("file-secret-value")),
      "a [REDACTED] b [REDACTED]");
}

TEST(Credentials, RefusesMissingShortOrExposedSecrets) {
  EXPECT_FALSE(CredentialStore::Load({{"x", "UNSET", ""}}, FakeEnv).ok());
  EXPECT_FALSE(CredentialStore::Load({{"x", "EMPTY", ""}}, FakeEnv).ok());
  auto short_secret = CredentialStore::Load({{"x", "SHORT", ""}}, FakeEnv);
  ASSERT_FALSE(short_secret.ok());
  EXPECT_NE(short_secret.error().message.find("shorter"), std::string::npos);
  EXPECT_FALSE(CredentialStore::Load({{"x", "", "/nonexistent/file"}}, FakeEnv).ok());
  std::string path = testing::TempDir() + "/cred_world";
  {
    std::ofstream f(path);
    f << "world-readable-secret";
  }
  chmod(path.c_str(), 0644);
  auto exposed = CredentialStore::Load({{"x", "", path}}, FakeEnv);
  ASSERT_FALSE(exposed.ok());
  EXPECT_NE(exposed.error().message.find("readable"), std::string::npos);
}

TEST(Credentials, RefusesOverlongSecrets) {
  std::string huge(kSecretBytesMax + 1, 'x');
  auto from_env =
      CredentialStore::Load({{"x", "HUGE", ""}}, [&](const char*) { return huge.c_str(); });
  ASSERT_FALSE(from_env.ok());
  EXPECT_NE(from_env.error().message.find("longer"), std::string::npos);

  std::string path = testing::TempDir() + "/cred_huge";
  {
    std::ofstream f(path);
    f << huge << "\n";
  }
  chmod(path.c_str(), 0600);
  auto from_file = CredentialStore::Load({{"x", "", path}}, FakeEnv);
  ASSERT_FALSE(from_file.ok());
  EXPECT_NE(from_file.error().message.find("longer"), std::string::npos);

  // The longest accepted secret, with a CRLF after it, loads (and its trailing CRLF is dropped).
  {
    std::ofstream f(path);
    f << huge.substr(1) << "\r\n";
  }
  auto longest = CredentialStore::Load({{"x", "", path}}, FakeEnv);
  ASSERT_TRUE(longest.ok()) << longest.error().message;
  EXPECT_EQ(*(*longest)->Get("x"), huge.substr(1));
}

TEST(Scrubber, RemovesEveryEncodingOfEverySecret) {
  Scrubber s;
  s.Add("ghp_supersecret/123");
  std::string text = "raw=ghp_supersecret/123 b64=" + core::Base64Encode("ghp_supersecret/123") +
                     " url=" + core::Base64UrlEncode("ghp_supersecret/123") +
                     " pct=ghp_supersecret%2F123";
  std::string out = s.Scrub(text);
  EXPECT_FALSE(s.ContainsSecret(out)) << out;
  EXPECT_EQ(out.find("supersecret"), std::string::npos) << out;
  EXPECT_NE(out.find("[REDACTED]"), std::string::npos);
}

TEST(Scrubber, ScrubsNestedJsonStringsAndKeys) {
  Scrubber s;
  s.Add("topsecret-token");
  auto j = core::Json::Parse(R"({"a":["x topsecret-token y",{"topsecret-token":1}],"n":5})");
  ASSERT_TRUE(j.ok());
  std::string out = s.ScrubJson(*j).Dump();
  EXPECT_EQ(out, R"({"a":["x [REDACTED] y",{"[REDACTED]":1}],"n":5})");
}

// --- Encoded forms ---------------------------------------------------------------------
//
// The checks below decode what the scrubber left behind rather than search for the encodings
// the scrubber itself knows: every run of base64 characters is decoded from each of its first
// four characters on (so every alignment of an embedded secret is tried), every run of hex
// digits from each of its first two. None of those decodings, nor the text itself, may hold
// kLeakBytes consecutive bytes of the secret. A missed core leaves all of it; a correct scrub
// leaves no bit of it, which the exact expected outputs below check on top (the base64
// characters mixing the secret's first or last bits with its neighbours' are gone too).

constexpr char kAwkwardSecret[] = "s3cr/t+ &=:?>~x9Q";
constexpr char kPlainSecret[] = "tok3nPLAINxyz9876w";
constexpr size_t kLeakBytes = 4;

int Base64Value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

// Lenient: decodes as many whole bytes as the characters carry, ignoring leftover bits.
std::string DecodeBase64Run(std::string_view run, bool url) {
  std::string out;
  uint32_t bits = 0;
  int nbits = 0;
  for (char c : run) {
    bits = (bits << 6) | static_cast<uint32_t>(Base64Value(c, url));
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xff));
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Maximal runs of characters for which `in_alphabet` holds.
template <typename F>
std::vector<std::string_view> Runs(std::string_view text, F in_alphabet) {
  std::vector<std::string_view> runs;
  size_t i = 0;
  while (i < text.size()) {
    if (!in_alphabet(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && in_alphabet(text[j])) ++j;
    runs.push_back(text.substr(i, j - i));
    i = j;
  }
  return runs;
}

// Every reading of the text a decoder could make: the text, each base64 run (either
// alphabet) from each of its first four characters, each hex run from each of its first two.
std::vector<std::string> Decodings(std::string_view text) {
  std::vector<std::string> out{std::string(text)};
  for (bool url : {false, true}) {
    for (std::string_view run : Runs(text, [&](char c) { return Base64Value(c, url) >= 0; })) {
      for (size_t skip = 0; skip < 4 && skip < run.size(); ++skip) {
        out.push_back(DecodeBase64Run(run.substr(skip), url));
      }
    }
  }
  for (std::string_view run : Runs(text, [](char c) { return HexValue(c) >= 0; })) {
    for (size_t skip = 0; skip < 2 && skip < run.size(); ++skip) {
      std::string bytes;
      for (size_t i = skip; i + 1 < run.size(); i += 2) {
        bytes.push_back(static_cast<char>(HexValue(run[i]) * 16 + HexValue(run[i + 1])));
      }
      out.push_back(bytes);
    }
  }
  return out;
}

// The first kLeakBytes-byte piece of the secret found in some decoding of the text, or "".
std::string LeakedPiece(std::string_view text, std::string_view secret) {
  for (const std::string& decoded : Decodings(text)) {
    for (size_t i = 0; i + kLeakBytes <= secret.size(); ++i) {
      std::string_view piece = secret.substr(i, kLeakBytes);
      if (decoded.find(piece) != std::string::npos) return std::string(piece);
    }
  }
  return "";
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string StripPadding(std::string s) {
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

// Hex (both cases) and base64/base64url (padded and not) of prefix + secret + suffix, for
// every prefix and suffix length from 0 to 5: every alignment of the secret in the encoding,
// and every way the encoding can end after it.
TEST(Scrubber, EncodedFormsAtEveryAlignmentAreScrubbed) {
  // Bytes that occur in neither secret, so that what is left of them cannot look like one.
  const std::string kPrefixBytes = "#[{|@";
  const std::string kSuffixBytes = "@|}]#";
  for (std::string secret : {kAwkwardSecret, kPlainSecret}) {
    Scrubber s;
    s.Add(secret);
    for (size_t p = 0; p <= 5; ++p) {
      for (size_t q = 0; q <= 5; ++q) {
        std::string bytes = kPrefixBytes.substr(0, p) + secret + kSuffixBytes.substr(0, q);
        std::string b64 = core::Base64Encode(bytes);
        std::string url = core::Base64UrlEncode(bytes);
        std::string hex = core::HexEncode(bytes);
        struct Form {
          const char* name;
          std::string encoded;
          size_t bits_per_char;
        };
        const Form forms[] = {
            {"base64", b64, 6},
            {"base64 unpadded", StripPadding(b64), 6},
            {"base64url", StripPadding(url), 6},
            {"base64url padded", StripPadding(url) + b64.substr(StripPadding(b64).size()), 6},
            {"hex", hex, 4},
            {"HEX", Upper(hex), 4},
        };
        for (const auto& [name, encoded, bits_per_char] : forms) {
          SCOPED_TRACE(std::string(name) + " of " + std::to_string(p) + " bytes + \"" + secret +
                       "\" + " + std::to_string(q) + " bytes: " + encoded);
          std::string text = "value=" + encoded + "&next=1";
          // The check is not vacuous: it finds the secret before scrubbing.
          ASSERT_NE(LeakedPiece(text, secret), "");
          ASSERT_TRUE(s.ContainsSecret(text));
          std::string out = s.Scrub(text);
          EXPECT_EQ(LeakedPiece(out, secret), "") << out;
          EXPECT_FALSE(s.ContainsSecret(out)) << out;
          EXPECT_NE(out.find(kRedacted), std::string::npos) << out;
          // Exactly the characters that carry a bit of the secret are gone: those wholly
          // inside the prefix's bits are kept before the marker, those wholly inside the
          // suffix's bits (and the padding) after it, and the delimiters are intact.
          size_t kept_before = 8 * p / bits_per_char;
          size_t first_after = (8 * (p + secret.size()) + bits_per_char - 1) / bits_per_char;
          EXPECT_EQ(out, "value=" + encoded.substr(0, kept_before) + std::string(kRedacted) +
                             encoded.substr(first_after) + "&next=1");
        }
      }
    }
  }
}

TEST(Scrubber, PercentEncodingsOfCommonEncodersAreScrubbed) {
  Scrubber s;
  s.Add(kAwkwardSecret);  // "s3cr/t+ &=:?>~x9Q"
  const char* forms[] = {
      "s3cr%2Ft%2B%20%26%3D%3A%3F%3E~x9Q",  // RFC 3986, encodeURIComponent
      "s3cr%2ft%2b%20%26%3d%3a%3f%3e~x9Q",  // the same, lowercase hex
      "s3cr%2Ft%2B+%26%3D%3A%3F%3E%7Ex9Q",  // URLSearchParams (WHATWG form encoding)
      "s3cr%2Ft%2B+%26%3D%3A%3F%3E~x9Q",    // Python quote_plus, Go QueryEscape
      "s3cr/t%2B%20%26%3D%3A%3F%3E~x9Q",    // Python quote
      "s3cr%2ft%2b+%26%3d%3a%3f%3e%7ex9q",  // lowercase hex, but the secret's own 'Q' too
  };
  for (size_t i = 0; i + 1 < std::size(forms); ++i) {
    std::string text = std::string("https://h/cb?token=") + forms[i] + "&x=1";
    EXPECT_EQ(s.Scrub(text), "https://h/cb?token=[REDACTED]&x=1") << forms[i];
  }
  // Lowercasing the secret's own letters makes it another string: not a form of the secret.
  std::string other = std::string("token=") + forms[std::size(forms) - 1];
  EXPECT_EQ(s.Scrub(other), other);
}

TEST(Scrubber, JsonEscapedSecretsAreScrubbed) {
  // A quote, a backslash, a slash and a control byte: each escaped in JSON.
  const std::string secret = "pa\"ss\\wo/rd\t42x";
  Scrubber s;
  s.Add(secret);

  // ScrubJson sees decoded strings: the raw form matches, whatever escaping the text used.
  auto parsed = core::Json::Parse(R"({"a":"pa\"ss\\wo\/rd\u000942x","pa\"ss\\wo/rd\t42x":1})");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(s.ScrubJson(*parsed).Dump(), R"({"a":"[REDACTED]","[REDACTED]":1})");

  // Scrub sees text, where the secret appears escaped: JSON logged as text, a JSON document
  // inside a JSON string (what MCP tools often return), PHP's escaped slashes.
  core::Json inner = core::Json::MakeObject();
  inner.Set("token", secret);
  std::string inner_text = inner.Dump();  // {"token":"pa\"ss\\wo/rd\t42x"}
  core::Json outer = core::Json::MakeObject();
  outer.Set("text", inner_text);
  std::string outer_text = outer.Dump();  // the secret escaped twice
  for (const std::string& text :
       {inner_text, outer_text, std::string(R"({"token":"pa\"ss\\wo\/rd\t42x"})")}) {
    std::string out = s.Scrub(text);
    EXPECT_EQ(out.find("rd"), std::string::npos) << out;
    EXPECT_FALSE(s.ContainsSecret(out)) << out;
    EXPECT_TRUE(core::Json::Parse(out).ok()) << "scrubbing broke the JSON: " << out;
  }
  EXPECT_EQ(s.Scrub(inner_text), R"({"token":"[REDACTED]"})");

  // The nested document through ScrubJson: the outer string is decoded once, so the inner
  // secret is matched in its singly escaped form.
  core::Json scrubbed = s.ScrubJson(outer);
  EXPECT_EQ(scrubbed.Dump().find("rd"), std::string::npos) << scrubbed.Dump();
  EXPECT_EQ(scrubbed.Dump(), R"({"text":"{\"token\":\"[REDACTED]\"}"})");
}

TEST(Scrubber, AdjacentAndNestedMatchesBecomeOneMarker) {
  Scrubber s;
  s.Add("outer-secret-INNER-SECRET-123");
  s.Add("INNER-SECRET");
  EXPECT_EQ(s.Scrub("a outer-secret-INNER-SECRET-123 b INNER-SECRET c"),
            "a [REDACTED] b [REDACTED] c");
  std::string secret = "adjacent-secret";
  s.Add(secret);
  EXPECT_EQ(s.Scrub("<" + secret + core::HexEncode(secret) + core::Base64Encode(secret) + ">"),
            "<[REDACTED]>");
}

// A hit at every byte (the worst case for the matcher's output): one marker, and the text is
// scanned once without keeping anything per hit.
TEST(Scrubber, TextThatMatchesEverywhereBecomesOneMarker) {
  Scrubber s;
  s.Add("aaaaaaaa");
  EXPECT_EQ(s.Scrub("<" + std::string(4 << 20, 'a') + ">"), "<[REDACTED]>");
  EXPECT_EQ(s.Scrub(core::HexEncode(std::string(1 << 20, 'a'))), "[REDACTED]");
}

TEST(Scrubber, LeavesUnrelatedTextAlone) {
  Scrubber s;
  s.Add(kAwkwardSecret);
  s.Add(kPlainSecret);
  s.Add("pa\"ss\\wo/rd\t42x");
  // Random bytes in every encoding the scrubber knows: a false positive would need 48 bits
  // of some core to match by chance.
  std::mt19937 rng(42);
  std::string random_bytes;
  for (int i = 0; i < 64 * 1024; ++i) random_bytes.push_back(static_cast<char>(rng() & 0xff));
  // Near misses: one byte in the middle of each secret changed.
  std::string near_awkward = kAwkwardSecret;
  near_awkward[8] = '*';
  std::string near_plain = kPlainSecret;
  near_plain[9] = 'Z';
  std::string text =
      "The quick brown fox jumps over the lazy dog. {\"id\":12345,\"ok\":true,\"path\":\"/a/b\"} "
      "https://example.com/search?q=s3cr%20t&page=2 "
      "tok3nPLAIN xyz9876w s3cr/t+ &=:? pa\"ss wo/rd\n" +
      core::Base64Encode(random_bytes) + "\n" + core::Base64UrlEncode(random_bytes) + "\n" +
      core::HexEncode(random_bytes) + "\n" + Upper(core::HexEncode(random_bytes)) + "\n" +
      near_awkward + " " + near_plain + " " + core::HexEncode(near_plain) + " " +
      core::Base64Encode(near_plain) + " " + core::Base64Encode("x" + near_plain + "y") + " " +
      core::Base64Encode("xy" + near_awkward);
  EXPECT_FALSE(s.ContainsSecret(text));
  EXPECT_EQ(s.Scrub(text), text);
}

TEST(Scrubber, ShortSecretsAreScrubbedInRawFormOnly) {
  // Below what CredentialStore accepts; Add takes it, but only forms of at least
  // kScrubFormCharsMin characters are matched, and the raw form always.
  Scrubber s;
  s.Add("k3y!");
  EXPECT_EQ(s.Scrub("use k3y! now"), "use [REDACTED] now");
  EXPECT_EQ(s.Scrub("hex " + core::HexEncode("k3y!")), "hex [REDACTED]");  // 8 characters
  std::string b64 = core::Base64Encode("k3y!");                            // 6 significant
  EXPECT_EQ(s.Scrub("b64 " + b64), "b64 " + b64);
  s.Add("abc");
  EXPECT_EQ(s.Scrub("abcabc YWJj"), "[REDACTED] YWJj");  // adjacent matches: one marker
  // The empty secret is ignored rather than matched everywhere.
  Scrubber none;
  none.Add("");
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.Scrub("text"), "text");
}

// Printed, not asserted (timing is not deterministic): scrubbing is one pass whatever the
// number of secrets, so 4 MiB costs about 4 times 1 MiB, and each byte costs a small multiple
// of what one std::string_view::find pass for a single needle costs.
TEST(Scrubber, ScrubbingTimeIsLinearInTheText) {
  Scrubber s;
  std::mt19937 rng(1);
  const std::string alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::vector<std::string> secrets;
  for (int i = 0; i < 16; ++i) {
    std::string secret = "sk_";
    for (int j = 0; j < 32; ++j) secret.push_back(alnum[rng() % alnum.size()]);
    s.Add(secret);
    secrets.push_back(secret);
  }
  auto make_text = [&](size_t bytes) {
    std::string text;
    while (text.size() < bytes) {
      for (int j = 0; j < 4000; ++j) text.push_back(alnum[rng() % alnum.size()]);
      const std::string& secret = secrets[rng() % secrets.size()];
      text += " " + secret + " " + core::Base64Encode("x" + secret) + " " +
              core::HexEncode(secret) + " ";
    }
    return text;
  };
  // The best of five runs: the machine may be busy with other work.
  auto time_ms = [](auto&& fn) {
    double best = 0;
    for (int run = 0; run < 5; ++run) {
      auto start = std::chrono::steady_clock::now();
      fn();
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      if (run == 0 || ms < best) best = ms;
    }
    return best;
  };
  std::string one = make_text(1 << 20);
  std::string four = make_text(4 << 20);
  std::string out_one;
  std::string out_four;
  double one_ms = time_ms([&] { out_one = s.Scrub(one); });
  double four_ms = time_ms([&] { out_four = s.Scrub(four); });
  size_t found = 0;
  double find_ms = time_ms([&] { found = std::string_view(one).find("sk_not-in-the-text"); });
  EXPECT_EQ(found, std::string::npos);
  EXPECT_FALSE(s.ContainsSecret(out_one));
  EXPECT_FALSE(s.ContainsSecret(out_four));
  std::printf(
      "Scrub, 16 secrets: 1 MiB %.2f ms, 4 MiB %.2f ms (ratio %.2f, linear is 4); "
      "1 MiB vs one std::string_view::find pass (%.3f ms): ratio %.1f\n",
      one_ms, four_ms, four_ms / one_ms, find_ms, one_ms / find_ms);
}

}  // namespace
}  // namespace mandate::broker
