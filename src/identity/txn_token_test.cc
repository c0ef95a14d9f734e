// TxnTokenIssuer: the token's bytes against a Json tree of the documented layout (txn_token.h),
// its signature and header, and the refusals of bad members.
#include "mandate/identity/txn_token.h"

#include <gtest/gtest.h>

#include <string>

#include "core/temp_dir_test_util.h"
#include "identity/identity_test_util.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::identity {
namespace {

using core::ErrorCode;
using core::Json;
using core::testing::TempDir;
using testing::Segments;

constexpr char kIssuer[] = "https://mandate.example";
constexpr int64_t kNow = 1'790'000'000;

TxnTokenRequest BaseRequest() {
  TxnTokenRequest r;
  r.audience = "https://up.example";
  r.txn = "dec_0123456789abcdef";
  r.sub = "alice";
  r.agent = "bot";
  r.action = "up:get_doc";
  r.args_sha256 = std::string(64, 'a');
  r.run = "ses_root";
  r.sid = "ses_child";
  r.task = "SUP-1";
  r.chain = {"planner", "bot"};
  return r;
}

// The claims as a Json tree, in the layout txn_token.h documents: what Mint wrote before it
// wrote the text directly, and the reference its bytes are held to.
Json ReferenceClaims(const TxnTokenRequest& r, int64_t now) {
  Json tctx = Json::MakeObject();
  tctx.Set("action", r.action);
  tctx.Set("args_sha256", r.args_sha256);
  tctx.Set("run", r.run);
  tctx.Set("sid", r.sid);
  tctx.Set("task", r.task);
  tctx.Set("chain", Json::StringArray(r.chain));
  Json claims = Json::MakeObject();
  claims.Set("iss", kIssuer);
  claims.Set("aud", r.audience);
  claims.Set("iat", now);
  claims.Set("exp", now + core::kTxnTokenTtlSecondsDefault);
  claims.Set("txn", r.txn);
  claims.Set("sub", r.sub);
  claims.Set("scope", r.action);
  claims.Set("req_wl", r.agent);
  claims.Set("tctx", std::move(tctx));
  return claims;
}

class TxnTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = SigningKeys::LoadOrCreate(tmp_.Sub("keys"), Alg::kEdDSA);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(*keys);
    issuer_ = std::make_unique<TxnTokenIssuer>(*keys_, kIssuer);
  }

  // Mints `r` and checks the token whole: three segments, the header's exact bytes, the
  // payload's exact bytes against the reference tree, and the signature with the active key.
  void ExpectMintedAsReference(const TxnTokenRequest& r) {
    auto token = issuer_->Mint(r, kNow);
    ASSERT_TRUE(token.ok()) << token.error().message;
    std::vector<std::string> seg = Segments(*token);
    ASSERT_EQ(seg.size(), 3u) << *token;
    std::shared_ptr<const JwsKey> key = keys_->Active();
    Json header = Json::MakeObject();
    header.Set("alg", std::string(AlgName(key->alg())));
    header.Set("typ", std::string(kTxnTokenTyp));
    header.Set("kid", key->kid());
    EXPECT_EQ(core::Base64UrlDecode(seg[0]).value_or(""), header.Dump());
    EXPECT_EQ(core::Base64UrlDecode(seg[1]).value_or(""), ReferenceClaims(r, kNow).Dump());
    auto sig = core::Base64UrlDecode(seg[2]);
    ASSERT_TRUE(sig.has_value());
    EXPECT_TRUE(key->Verify(seg[0] + "." + seg[1], *sig));
  }

  TempDir tmp_;
  std::unique_ptr<SigningKeys> keys_;
  std::unique_ptr<TxnTokenIssuer> issuer_;
};

TEST_F(TxnTokenTest, TheTokenIsTheDocumentedLayoutByteForByte) {
  ExpectMintedAsReference(BaseRequest());
}

TEST_F(TxnTokenTest, MembersThatNeedEscapingAreWrittenAsJsonWritesThem) {
  TxnTokenRequest r = BaseRequest();
  r.sub = "al\"ice\\";
  r.agent = "bot\n\t\x01\x1f";
  r.task = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 </script>";
  r.chain = {"a\"b", "\x7f", "\\u0000"};
  ExpectMintedAsReference(r);
}

TEST_F(TxnTokenTest, OptionalMembersMayBeEmptyAndTheChainMayHaveNoAgent) {
  TxnTokenRequest r = BaseRequest();
  r.args_sha256.clear();
  r.run.clear();
  r.sid.clear();
  r.task.clear();
  r.chain.clear();
  ExpectMintedAsReference(r);
}

TEST_F(TxnTokenTest, ExtremeTimesAndALongChainStayExact) {
  TxnTokenRequest r = BaseRequest();
  r.chain.assign(core::kDelegationDepthMax + 1, "agent");
  ExpectMintedAsReference(r);
  auto t = issuer_->Mint(r, 0);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(testing::DecodeSegment(Segments(*t)[1]).GetInt("iat", -1), 0);
}

TEST_F(TxnTokenTest, BadMembersAreRefusedAndNamed) {
  struct Case {
    const char* name;
    void (*edit)(TxnTokenRequest*);
    ErrorCode code;
  };
  const Case cases[] = {
      {"aud", [](TxnTokenRequest* r) { r->audience.clear(); }, ErrorCode::kBadRequest},
      {"txn", [](TxnTokenRequest* r) { r->txn.clear(); }, ErrorCode::kBadRequest},
      {"sub", [](TxnTokenRequest* r) { r->sub.clear(); }, ErrorCode::kBadRequest},
      {"req_wl", [](TxnTokenRequest* r) { r->agent.clear(); }, ErrorCode::kBadRequest},
      {"scope", [](TxnTokenRequest* r) { r->action.clear(); }, ErrorCode::kBadRequest},
      {"tctx", [](TxnTokenRequest* r) { r->task = "\xff"; }, ErrorCode::kBadRequest},
      {"tctx", [](TxnTokenRequest* r) { r->run.assign(core::kTxnTokenFieldBytesMax + 1, 'r'); },
       ErrorCode::kBadRequest},
      {"tctx.chain", [](TxnTokenRequest* r) { r->chain.push_back(""); }, ErrorCode::kBadRequest},
      {"sub", [](TxnTokenRequest* r) { r->sub = "a\xc0\xafz"; }, ErrorCode::kBadRequest},
  };
  for (const Case& c : cases) {
    TxnTokenRequest r = BaseRequest();
    c.edit(&r);
    auto t = issuer_->Mint(r, kNow);
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_EQ(t.error().code, c.code) << c.name;
    EXPECT_NE(t.error().message.find(c.name), std::string::npos) << t.error().message;
  }
}

TEST_F(TxnTokenTest, ATokenOverTheSizeLimitIsRefusedNotTruncated) {
  TxnTokenRequest r = BaseRequest();
  // Every member at its limit: far beyond kTokenBytesMax once encoded.
  r.task.assign(core::kTxnTokenFieldBytesMax, 't');
  r.chain.assign(64, std::string(core::kTxnTokenFieldBytesMax, 'c'));
  auto t = issuer_->Mint(r, kNow);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kPayloadTooLarge);
}

}  // namespace
}  // namespace mandate::identity
