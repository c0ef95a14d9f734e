#include <gtest/gtest.h>

#include <set>

#include "mandate/core/action.h"
#include "mandate/core/crypto.h"
#include "mandate/core/decision.h"
#include "mandate/core/encoding.h"
#include "mandate/core/error_code.h"

namespace mandate::core {
namespace {

TEST(ErrorCode, RoundTripsEveryPublicName) {
  for (int i = 0; i <= static_cast<int>(ErrorCode::kInternal); ++i) {
    auto code = static_cast<ErrorCode>(i);
    auto back = ErrorCodeFromPublic(PublicCode(code));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, code);
    EXPECT_GE(HttpStatus(code), 400);
  }
  EXPECT_EQ(PublicCode(ErrorCode::kTokenRevoked), "token_revoked");
  EXPECT_FALSE(ErrorCodeFromPublic("nope").has_value());
}

TEST(Encoding, Base64UrlRoundTripsAndRejectsNonCanonical) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00"}) {
    auto enc = Base64UrlEncode(s);
    EXPECT_EQ(enc.find('='), std::string::npos);
    auto dec = Base64UrlDecode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=").has_value());  // padding
  EXPECT_FALSE(Base64UrlDecode("Zm+v").has_value());   // standard alphabet
  EXPECT_FALSE(Base64UrlDecode("Zh").has_value());     // non-zero trailing bits
  EXPECT_FALSE(Base64UrlDecode("A").has_value());      // impossible length
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
}

TEST(Encoding, Base64StdRequiresExactPaddingAndCanonicalBits) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xfb\xff\x00"}) {
    auto dec = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(dec.has_value()) << Base64Encode(s);
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(*Base64Decode("+/8="), "\xfb\xff");
  EXPECT_FALSE(Base64Decode("Zm8").has_value());     // padding missing
  EXPECT_FALSE(Base64Decode("Zm8==").has_value());   // too much padding
  EXPECT_FALSE(Base64Decode("Zg==Zg==").has_value()); // padding in the middle
  EXPECT_FALSE(Base64Decode("Zh==").has_value());    // non-zero trailing bits
  EXPECT_FALSE(Base64Decode("-_8=").has_value());    // url alphabet
  EXPECT_FALSE(Base64Decode("Zm9 v").has_value());   // whitespace
  EXPECT_FALSE(Base64Decode("====").has_value());
}

TEST(Encoding, HexRoundTrips) {
  EXPECT_EQ(HexEncode("\x01\xab"), "01ab");
  EXPECT_EQ(*HexDecode("01AB"), "\x01\xab");
  EXPECT_FALSE(HexDecode("0g").has_value());
  EXPECT_FALSE(HexDecode("abc").has_value());
}

TEST(Crypto, Sha256MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, NewIdIsPrefixedAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewId("ses");
    EXPECT_EQ(id.size(), 4u + 26u);
    EXPECT_EQ(id.rfind("ses_", 0), 0u);
    EXPECT_TRUE(seen.insert(id).second);
  }
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
}

TEST(Action, ClassesAndEntityLiterals) {
  EXPECT_EQ(ActionClassFromName("write"), ActionClass::kWrite);
  EXPECT_FALSE(ActionClassFromName("delete").has_value());
  EXPECT_EQ((EntityRef{"Upstream", "ji\"ra"}).ToString(), R"(Upstream::"ji\"ra")");
  Action a;
  a.upstream = "github";
  a.name = "create_issue";
  EXPECT_EQ(a.Id(), "github:create_issue");
  EXPECT_EQ(a.cls, ActionClass::kDestructive);  // fail closed
}

TEST(Decision, DefaultsToDenyAndSerializes) {
  Decision d;
  EXPECT_FALSE(d.allowed());
  d.action = "x:y";
  PrincipalCheck c;
  c.principal = R"(Human::"alice")";
  c.permits = {"p1"};
  d.checks.push_back(c);
  Json j = d.ToJson();
  EXPECT_EQ(j.GetString("decision"), "deny");
  EXPECT_EQ(j.GetString("code"), "policy_denied");
  EXPECT_EQ(j.FindArray("checks")->as_array().size(), 1u);
}

}  // namespace
}  // namespace mandate::core
