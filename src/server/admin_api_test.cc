// The admin API's authentication of approvers: an approver token is accepted by the approvals
// endpoints only, acts as its own human only, sees its own groups' approvals only; the admin
// token keeps working with "as"; the approvals page is static, public and under a strict CSP.
#include "server/admin_api.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/temp_dir_test_util.h"
#include "mandate/approval/approval.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/store/sqlite_store.h"
#include "server/ui_assets.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;
using core::testing::TempDir;

constexpr char kAdminToken[] = "mdt_admin_token_for_tests_0123456789abcdef";
constexpr char kGroup[] = "finance-approvers";

class AdminApiApproverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.tokens.issuer = "http://mandate.test";
    config_.tokens.audience = "mandate";
    auto keys = identity::SigningKeys::LoadOrCreate(tmp_.Sub("keys"), identity::Alg::kEdDSA);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(*keys);
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);
    auto store = store::SqliteStore::Open(tmp_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(*store);
    AddHuman("alice", {kGroup});  // the requester, in the group: exclude_requester stops her
    AddHuman("bob", {kGroup});
    AddHuman("carol", {kGroup});
    AddHuman("dave", {"auditors"});
    auto revocations = revocation::RevocationSet::Load(*store_);
    ASSERT_TRUE(revocations.ok());
    revocations_ = std::move(*revocations);

    approval::ApprovalGroup g;
    g.name = kGroup;
    g.min_approvers = 2;
    g.exclude_requester = true;
    auto book = approval::ApprovalBook::Create({g}, clock_);
    ASSERT_TRUE(book.ok()) << book.error().message;
    book_ = std::move(*book);

    ApproverTokenDeps deps;
    deps.config = &config_;
    deps.clock = &clock_;
    deps.keys = keys_.get();
    deps.issuer = issuer_.get();
    deps.revocations = revocations_.get();
    deps.directory = &directory_;
    deps.record = [](Json) { return core::OkStatus(); };
    auto tokens = ApproverTokens::Create(std::move(deps));
    ASSERT_TRUE(tokens.ok()) << tokens.error().message;
    tokens_ = std::move(*tokens);

    AdminContext ctx;
    ctx.config = &config_;
    ctx.admin_token = kAdminToken;
    ctx.clock = &clock_;
    ctx.store = store_.get();
    ctx.issuer = issuer_.get();
    ctx.revocations = revocations_.get();
    ctx.directory = &directory_;
    ctx.approvals = book_.get();
    ctx.approver_tokens = tokens_.get();
    api_ = std::make_unique<AdminApi>(std::move(ctx));

    approval::ApprovalRequest r;
    r.run = "ses_run";
    r.sid = "ses_run";
    r.agent = "triage-bot";
    r.human = "alice";
    r.task = "T-pay";
    r.action_id = "rec:record";
    r.args_sha256 = core::HexEncode(core::RandomBytes(32));
    r.args_display = Json::MakeObject();
    r.args_display.Set("note", "<img src=x onerror=alert(1)>");
    r.group = kGroup;
    r.policy = "pay-needs-approval";
    auto ticket = book_->Request(r);
    ASSERT_TRUE(ticket.ok()) << ticket.error().message;
    approval_id_ = ticket->id;
  }

  void AddHuman(const std::string& name, std::vector<std::string> groups) {
    store::Human h;
    h.name = name;
    h.groups = groups;
    ASSERT_TRUE(store_->PutHuman(h).ok());
    directory_.PutHuman(name, std::move(groups));
  }

  std::string TokenOf(const std::string& human) {
    net::HttpRequest req;
    req.method = "POST";
    req.path = req.target = "/admin/v1/humans/" + human + "/approver-token";
    req.headers = {{"Authorization", std::string("Bearer ") + kAdminToken}};
    req.body = R"({"ttl_seconds":3600})";
    auto res = api_->Handle(req);
    EXPECT_EQ(res.status, 201) << res.body;
    auto j = Json::Parse(res.body);
    return j.ok() ? j->GetString("token") : std::string();
  }

  net::HttpResponse Call(const std::string& method, const std::string& target,
                         const std::string& bearer, const std::string& body = "") {
    net::HttpRequest req;
    req.method = method;
    req.target = target;
    req.path = target.substr(0, target.find('?'));
    if (!bearer.empty()) req.headers = {{"Authorization", "Bearer " + bearer}};
    req.body = body;
    return api_->Handle(req);
  }

  static Json Body(const net::HttpResponse& res) {
    auto j = Json::Parse(res.body);
    EXPECT_TRUE(j.ok()) << res.body;
    return j.ok() ? *j : Json();
  }

  static std::string ErrorCodeOf(const net::HttpResponse& res) {
    const Json body = Body(res);
    const Json* e = body.FindObject("error");
    return e ? e->GetString("code") : "";
  }
  static std::string ErrorMessageOf(const net::HttpResponse& res) {
    const Json body = Body(res);
    const Json* e = body.FindObject("error");
    return e ? e->GetString("message") : "";
  }

  TempDir tmp_{"mandate-admin-api"};
  Config config_;
  core::FakeClock clock_;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  gateway::Directory directory_;
  std::unique_ptr<approval::ApprovalBook> book_;
  std::unique_ptr<ApproverTokens> tokens_;
  std::unique_ptr<AdminApi> api_;
  std::string approval_id_;
};

TEST_F(AdminApiApproverTest, ApproverTokenListsAndApprovesAsItsHuman) {
  const std::string bob = TokenOf("bob");
  auto list = Call("GET", "/admin/v1/approvals", bob);
  ASSERT_EQ(list.status, 200) << list.body;
  Json j = Body(list);
  EXPECT_EQ(j.GetString("approver"), "bob");
  ASSERT_EQ(j.FindArray("approvals")->as_array().size(), 1u);
  EXPECT_EQ(j.FindArray("approvals")->as_array()[0].GetString("id"), approval_id_);
  ASSERT_EQ(Call("GET", "/admin/v1/approvals/" + approval_id_, bob).status, 200);

  auto vote = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", bob, "{}");
  ASSERT_EQ(vote.status, 200) << vote.body;
  EXPECT_EQ(Body(vote).GetString("state"), "pending");
  EXPECT_EQ(Body(vote).FindArray("approvers")->as_array()[0].as_string(), "bob");
  // "as" naming the token's own human is fine.
  auto carol = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", TokenOf("carol"),
                    R"({"as":"carol"})");
  ASSERT_EQ(carol.status, 200) << carol.body;
  EXPECT_EQ(Body(carol).GetString("state"), "granted");
}

TEST_F(AdminApiApproverTest, ApproverTokenCannotActAsAnotherHuman) {
  auto r = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", TokenOf("bob"),
                R"({"as":"carol"})");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "policy_denied");
  EXPECT_NE(ErrorMessageOf(r).find("cannot act as carol"), std::string::npos) << r.body;
  auto shown = book_->Get(approval_id_);
  ASSERT_TRUE(shown);
  EXPECT_TRUE(shown->FindArray("approvers")->as_array().empty());
}

TEST_F(AdminApiApproverTest, TheRequestersTokenIsRefusedByExcludeRequester) {
  auto r = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", TokenOf("alice"), "{}");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(ErrorMessageOf(r).find("excludes the requester"), std::string::npos) << r.body;
  // Denying is never an escalation: the requester may deny.
  auto d = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/deny", TokenOf("alice"),
                R"({"reason":"changed my mind"})");
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(Body(d).GetString("state"), "denied");
  EXPECT_EQ(book_->Get(approval_id_)->GetString("denied_by"), "alice");
}

TEST_F(AdminApiApproverTest, ApproverSeesOnlyTheApprovalsOfTheirGroups) {
  const std::string dave = TokenOf("dave");
  auto list = Call("GET", "/admin/v1/approvals?state=all", dave);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_TRUE(Body(list).FindArray("approvals")->as_array().empty()) << list.body;
  EXPECT_EQ(Call("GET", "/admin/v1/approvals/" + approval_id_, dave).status, 404);
  EXPECT_EQ(Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", dave, "{}").status,
            404);
}

TEST_F(AdminApiApproverTest, ApproverTokenIsRefusedByEveryOtherEndpoint) {
  const std::string bob = TokenOf("bob");
  for (const auto& [method, target] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/admin/v1/humans"},
           {"POST", "/admin/v1/humans"},
           {"GET", "/admin/v1/sessions"},
           {"POST", "/admin/v1/sessions"},
           {"POST", "/admin/v1/revocations"},
           {"GET", "/admin/v1/audit"},
           {"GET", "/admin/v1/keys"},
           {"POST", "/admin/v1/humans/bob/approver-token"},
           {"GET", "/admin/v1/approvalsx"}}) {
    auto r = Call(method, target, bob, "{}");
    EXPECT_EQ(r.status, 401) << method << " " << target << ": " << r.body;
    EXPECT_EQ(ErrorCodeOf(r), "unauthenticated") << target;
  }
}

TEST_F(AdminApiApproverTest, AgentSessionTokenIsRefusedByTheApprovals) {
  identity::Claims c;
  c.iss = config_.tokens.issuer;
  c.aud = {config_.tokens.audience};
  c.sub = "bob";
  c.client_id = "triage-bot";
  c.sid = "ses_x";
  c.jti = "tok_x";
  c.act = {{"agent:triage-bot", "ses_x"}};
  c.iat = clock_.NowUnixSeconds();
  c.nbf = c.iat;
  c.exp = c.iat + 900;
  auto session = issuer_->Mint(c);
  ASSERT_TRUE(session.ok());
  auto r = Call("GET", "/admin/v1/approvals", *session);
  EXPECT_EQ(r.status, 401) << r.body;
  auto v = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", *session, "{}");
  EXPECT_EQ(v.status, 401) << v.body;
  EXPECT_EQ(Call("GET", "/admin/v1/approvals", "").status, 401);
}

TEST_F(AdminApiApproverTest, RevokedOrExpiredApproverTokenIsRefused) {
  const std::string bob = TokenOf("bob");
  const std::string carol = TokenOf("carol");
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kHuman, "bob", "gone", 0).ok());
  auto r = Call("GET", "/admin/v1/approvals", bob);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(ErrorCodeOf(r), "token_revoked");
  clock_.AdvanceSeconds(3600 + core::kTokenClockSkewSeconds);
  auto e = Call("GET", "/admin/v1/approvals", carol);
  EXPECT_EQ(e.status, 401) << e.body;
  EXPECT_EQ(ErrorCodeOf(e), "token_expired");
}

TEST_F(AdminApiApproverTest, AdminTokenStillDecidesWithAs) {
  auto missing =
      Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", kAdminToken, "{}");
  EXPECT_EQ(missing.status, 400) << missing.body;
  auto r = Call("POST", "/admin/v1/approvals/" + approval_id_ + "/approve", kAdminToken,
                R"({"as":"bob"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r).FindArray("approvers")->as_array()[0].as_string(), "bob");
  auto list = Call("GET", "/admin/v1/approvals", kAdminToken);
  EXPECT_EQ(Body(list).Find("approver"), nullptr);
}

TEST_F(AdminApiApproverTest, MintingRefusesUnknownHumansAndBadTtls) {
  auto unknown = Call("POST", "/admin/v1/humans/mallory/approver-token", kAdminToken, "{}");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  auto too_long =
      Call("POST", "/admin/v1/humans/bob/approver-token", kAdminToken, R"({"ttl_seconds":86401})");
  EXPECT_EQ(too_long.status, 400) << too_long.body;
  auto not_int =
      Call("POST", "/admin/v1/humans/bob/approver-token", kAdminToken, R"({"ttl_seconds":"1h"})");
  EXPECT_EQ(not_int.status, 400) << not_int.body;
  EXPECT_EQ(Call("GET", "/admin/v1/humans/bob/approver-token", kAdminToken).status, 400);
  EXPECT_EQ(Call("POST", "/admin/v1/humans/a%2Fb/approver-token", kAdminToken, "{}").status, 400);
  EXPECT_EQ(Call("POST", "/admin/v1/humans/bo%/approver-token", kAdminToken, "{}").status, 400);
  // Percent-encoded names are decoded.
  AddHuman("erin smith", {kGroup});
  auto spaced = Call("POST", "/admin/v1/humans/erin%20smith/approver-token", kAdminToken, "{}");
  ASSERT_EQ(spaced.status, 201) << spaced.body;
  EXPECT_EQ(Body(spaced).GetString("human"), "erin smith");
}

TEST_F(AdminApiApproverTest, ThePageIsStaticPublicAndUnderAStrictCsp) {
  for (const char* path : {"/ui/", "/ui/app.js", "/ui/app.css", "/ui/index.html"}) {
    auto r = Call("GET", path, "");
    ASSERT_EQ(r.status, 200) << path;
    const std::string* csp = net::FindHeader(r.headers, "content-security-policy");
    ASSERT_NE(csp, nullptr) << path;
    EXPECT_NE(csp->find("default-src 'none'"), std::string::npos);
    EXPECT_NE(csp->find("script-src 'self'"), std::string::npos);
    EXPECT_NE(csp->find("frame-ancestors 'none'"), std::string::npos);
    EXPECT_EQ(csp->find("unsafe"), std::string::npos);
    const std::string* nosniff = net::FindHeader(r.headers, "x-content-type-options");
    ASSERT_NE(nosniff, nullptr);
    EXPECT_EQ(*nosniff, "nosniff");
  }
  auto html = Call("GET", "/ui/", "");
  EXPECT_EQ(*net::FindHeader(html.headers, "content-type"), "text/html; charset=utf-8");
  // No inline script: the only <script> is app.js, and no handler attributes.
  EXPECT_NE(html.body.find(R"(<script src="app.js" defer></script>)"), std::string::npos);
  EXPECT_EQ(html.body.find("<script>"), std::string::npos);
  for (const char* inline_code :
       {"onclick", "onload", "onerror", "onsubmit", "javascript:", "style="}) {
    EXPECT_EQ(html.body.find(inline_code), std::string::npos) << inline_code;
  }
  EXPECT_EQ(*net::FindHeader(Call("GET", "/ui/app.js", "").headers, "content-type"),
            "text/javascript; charset=utf-8");
  // The script renders server values as text only.
  EXPECT_EQ(Call("GET", "/ui/app.js", "").body.find("innerHTML"), std::string::npos);

  auto redirect = Call("GET", "/ui", "");
  EXPECT_EQ(redirect.status, 308);
  EXPECT_EQ(*net::FindHeader(redirect.headers, "location"), "/ui/");
  EXPECT_EQ(Call("GET", "/ui/secrets.json", "").status, 404);
  EXPECT_EQ(Call("POST", "/ui/", "").status, 405);
}

// GET /admin/v1/policies/schema answers the source it is given and the Cedar schema built from
// it, behind the admin token; a source that cannot be built is an internal error, not a crash.
TEST(AdminApiPolicySchema, AnswersTheSourceAndItsCedarSchema) {
  policy::SchemaSource source;
  source.upstreams.push_back(policy::UpstreamSource{"jira", "", true, {}, "", {}});
  policy::ToolSource tool;
  tool.name = "get_issue";
  tool.action_class = core::ActionClass::kRead;
  tool.input_schema = *Json::Parse(R"({"type":"object","properties":{"key":{"type":"string"}},"required":["key"]})");
  source.upstreams[0].tools.push_back(tool);
  Config config;
  AdminContext ctx;
  ctx.config = &config;
  ctx.admin_token = kAdminToken;
  ctx.policy_schema_source = [&] { return source; };
  AdminApi api(std::move(ctx));
  auto get = [&](const std::string& bearer) {
    net::HttpRequest req;
    req.method = "GET";
    req.path = req.target = "/admin/v1/policies/schema";
    if (!bearer.empty()) req.headers = {{"Authorization", "Bearer " + bearer}};
    return api.Handle(req);
  };
  auto res = get(kAdminToken);
  ASSERT_EQ(res.status, 200) << res.body;
  auto body = Json::Parse(res.body);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->GetInt("tools", 0), 1);
  EXPECT_EQ(body->FindObject("source")->Dump(), source.ToJson().Dump());
  const Json* args = body->FindObject("schema")->FindObject("")->FindObject("actions")->FindObject("jira:get_issue")
                         ->FindObject("appliesTo")->FindObject("context")->FindObject("attributes")->FindObject("args");
  ASSERT_NE(args, nullptr) << res.body;
  EXPECT_EQ(args->Dump(), R"({"type":"Record","attributes":{"key":{"type":"String"}}})");
  EXPECT_EQ(get("").status, 401);
  EXPECT_EQ(get("not-the-token").status, 401);

  source.upstreams[0].name = "read";  // reserved: the schema cannot be built
  res = get(kAdminToken);
  EXPECT_EQ(res.status, 500) << res.body;
  EXPECT_NE(res.body.find("reserved"), std::string::npos) << res.body;

  AdminContext none;
  none.config = &config;
  none.admin_token = kAdminToken;
  AdminApi without(std::move(none));
  net::HttpRequest req;
  req.method = "GET";
  req.path = req.target = "/admin/v1/policies/schema";
  req.headers = {{"Authorization", std::string("Bearer ") + kAdminToken}};
  EXPECT_EQ(without.Handle(req).status, 404);
}

}  // namespace
}  // namespace mandate::server
