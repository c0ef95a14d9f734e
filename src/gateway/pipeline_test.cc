// Tests of the governed-call pipeline (DESIGN.md sections 1, 3 and 5) with real components:
// signing keys, issuer and verifier on a FakeClock, a SQLite store behind the revocation set,
// Cedar policies, the hash-chained audit log and the secret scrubber. Only the upstream is a
// fake, and it counts its calls: a refused call must never reach it.
#include "mandate/gateway/pipeline.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "mandate/approval/approval.h"
#include "mandate/audit/audit_log.h"
#include "mandate/audit/merkle_log.h"
#include "mandate/broker/credentials.h"
#include "mandate/core/forward_gate.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/plan/plan.h"
#include "mandate/policy/policy_set.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"

namespace mandate::gateway {
namespace {

namespace fs = std::filesystem;
using core::ActionClass;
using core::Decision;
using core::ErrorCode;
using core::Json;

constexpr char kIssuer[] = "https://mandate.test";
constexpr char kAudience[] = "mandate";
constexpr char kSecret[] = "sk_live_0123456789abcdef";
constexpr char kRootSid[] = "ses_root";

using core::testing::TempDir;

// An upstream that records every call it receives and answers with `outcome`. `on_invoke`,
// when set, runs first (e.g. to inspect the audit log at the moment of forwarding).
class RecordingInvoker final : public UpstreamInvoker {
 public:
  core::Outcome Invoke(const core::Action& action, const Caller&, const Forwarding& forwarding) override {
    const std::string& decision_id = forwarding.decision_id;
    {
      std::lock_guard lock(mu_);
      txn_tokens_.push_back(forwarding.txn_token);
      calls_.push_back(action.Id());
      decision_ids_.push_back(decision_id);
    }
    if (on_invoke) on_invoke(action, decision_id);
    return outcome;
  }
  size_t calls() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  std::vector<std::string> decision_ids() const {
    std::lock_guard lock(mu_);
    return decision_ids_;
  }
  std::vector<std::string> txn_tokens() const {
    std::lock_guard lock(mu_);
    return txn_tokens_;
  }

  core::Outcome outcome = [] {
    core::Outcome o;
    o.ok = true;
    o.result = Json::MakeObject();
    Json content = Json::MakeArray();
    Json text = Json::MakeObject();
    text.Set("type", "text");
    text.Set("text", "done");
    content.Push(std::move(text));
    o.result.Set("content", std::move(content));
    return o;
  }();
  std::function<void(const core::Action&, const std::string&)> on_invoke;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::vector<std::string> decision_ids_;
  std::vector<std::string> txn_tokens_;
};

// An audit log that refuses every append, as a log whose disk failed would.
class FailingAuditLog final : public audit::AuditLog {
 public:
  core::Result<uint64_t> Append(const Json&) override {
    ++appends;
    return core::MakeError(ErrorCode::kInternal, "disk on fire");
  }
  core::Status Submit(const Json&) override {
    ++appends;
    return core::MakeError(ErrorCode::kInternal, "disk on fire");
  }
  void Close() override {}
  std::atomic<int> appends{0};
};

// Polls `done` every millisecond for at most 10 s.
bool WaitUntil(const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// An audit log on a disk the test controls: AppendThen returns at once and keeps its callback
// until Fire reports every pending record durable (or failed); Append fires what is pending
// first (its record comes after those in the log) and is durable at once; Submit queues.
class ManualDurabilityLog final : public audit::AuditLog {
 public:
  core::Result<uint64_t> Append(const Json& record) override {
    Fire(core::OkStatus());
    std::lock_guard lock(mu_);
    Keep(record);
    return next_++;
  }
  core::Status Submit(const Json& record) override {
    std::lock_guard lock(mu_);
    Keep(record);
    ++next_;
    return core::OkStatus();
  }
  core::Result<uint64_t> AppendThen(const Json& record, DurableCallback on_durable) override {
    std::lock_guard lock(mu_);
    Keep(record);
    pending_.push_back(std::move(on_durable));
    return next_++;
  }
  void Close() override {}
  // Reports every pending record: durable when `durable` is ok, else failed with it.
  void Fire(const core::Status& durable) {
    std::vector<DurableCallback> fns;
    {
      std::lock_guard lock(mu_);
      fns.swap(pending_);
    }
    for (auto& fn : fns) fn(durable);
  }
  size_t pending() const {
    std::lock_guard lock(mu_);
    return pending_.size();
  }
  std::vector<std::string> types() const {
    std::lock_guard lock(mu_);
    return types_;
  }
  // The last record of `type` (null when none).
  Json Last(const std::string& type) const {
    std::lock_guard lock(mu_);
    for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
      if (it->GetString("type") == type) return *it;
    }
    return Json();
  }

 private:
  void Keep(const Json& record) {
    types_.push_back(record.GetString("type"));
    records_.push_back(record);
  }
  mutable std::mutex mu_;
  std::vector<DurableCallback> pending_;
  std::vector<std::string> types_;
  std::vector<Json> records_;
  uint64_t next_ = 0;
};

// An upstream that hands its send to the gate and then gives up before the gate opens, as
// net::HttpClient does when the call is cancelled or its deadline passes while the decision
// record syncs: on the call's cancel signal (`on_cancel`) or after 20 ms (else).
class GivingUpInvoker final : public UpstreamInvoker {
 public:
  explicit GivingUpInvoker(bool on_cancel) : on_cancel_(on_cancel) {}
  core::Outcome Invoke(const core::Action&, const Caller&, const Forwarding&) override {
    core::ForwardGate* gate = core::CurrentForwardGate();
    core::Outcome o;
    o.ok = false;
    if (gate == nullptr) return o;
    std::atomic<bool> sent{false};
    gate->WhenDecided([&](const core::Status& durable) { sent = durable.ok(); });
    if (on_cancel_) {
      std::atomic<bool> cancelled{false};
      core::CancelRegistration r(core::CurrentCancelSignal(), [&] { cancelled = true; });
      entered = true;
      while (!cancelled) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      entered = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    withdrawn = gate->Withdraw();
    o.error = on_cancel_ ? ErrorCode::kUpstreamUnavailable : ErrorCode::kUpstreamTimeout;
    o.message = "gave up before the gate opened";
    sent_anyway = sent.load();
    return o;
  }
  bool HonoursForwardGate() const override { return true; }

  std::atomic<bool> entered{false};
  std::atomic<bool> withdrawn{false};
  std::atomic<bool> sent_anyway{false};

 private:
  const bool on_cancel_;
};

// An upstream whose sends pass the thread's forward gate, as the MCP HTTP upstream's do: it
// hands its "send" to the gate and then waits for it, the way net::HttpClient waits for the
// answer. `at_invoke` runs first, with the gate it found.
class GateHonouringInvoker final : public UpstreamInvoker {
 public:
  core::Outcome Invoke(const core::Action&, const Caller&, const Forwarding&) override {
    core::ForwardGate* gate = core::CurrentForwardGate();
    gate_seen = gate != nullptr;
    if (gate == nullptr) return Failed("no gate");
    gate_undecided_at_invoke = !gate->decided().has_value();
    std::atomic<int> sent{0};  // 1 sent, -1 not (the gate closed)
    gate->WhenDecided([&](const core::Status& durable) { sent = durable.ok() ? 1 : -1; });
    if (at_invoke) at_invoke();
    while (sent.load() == 0) std::this_thread::yield();
    if (sent.load() < 0) return Failed("not sent: the gate closed");
    ++sends;
    core::Outcome o;
    o.ok = true;
    o.result = Json::MakeObject();
    return o;
  }
  bool HonoursForwardGate() const override { return true; }

  std::function<void()> at_invoke;
  bool gate_seen = false;
  bool gate_undecided_at_invoke = false;
  int sends = 0;

 private:
  static core::Outcome Failed(const std::string& why) {
    core::Outcome o;
    o.ok = false;
    o.error = ErrorCode::kInternal;
    o.message = why;
    return o;
  }
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = identity::SigningKeys::LoadOrCreate(dir_.Sub("keys"));
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(keys).value();
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);
    identity::VerifierOptions vopts;
    vopts.issuer = kIssuer;
    vopts.audience = kAudience;
    auto verifier = identity::TokenVerifier::Create(vopts, *keys_, clock_);
    ASSERT_TRUE(verifier.ok()) << verifier.error().message;
    verifier_ = std::move(verifier).value();

    auto store = store::SqliteStore::Open(dir_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->PutHuman({"alice", {"finance"}, 1}).ok());
    ASSERT_TRUE(store_->PutAgent({"bot", "alice", {"support-agents"}, 1}).ok());
    ASSERT_TRUE(store_->PutAgent({"helper", "alice", {}, 1}).ok());
    ASSERT_TRUE(store_->CreateSession(StoreSession(kRootSid, "", "bot")).ok());

    auto revocations = revocation::RevocationSet::Load(*store_);
    ASSERT_TRUE(revocations.ok()) << revocations.error().message;
    revocations_ = std::move(revocations).value();

    auto log = audit::OpenAuditLog(AuditDir(), clock_);
    ASSERT_TRUE(log.ok()) << log.error().message;
    audit_ = std::move(log).value();

    scrubber_.Add(kSecret);
    directory_.PutHuman("alice", {"finance"});
    directory_.PutAgent("bot", "alice", {"support-agents"});
    directory_.PutAgent("helper", "alice", {});
    pipeline_ = MakePipeline(audit_.get());
  }

  // The fixture's dependencies, for a test to add budgets, breakers or audit rules to.
  PipelineDeps Deps(audit::AuditLog* log) {
    PipelineDeps deps;
    deps.clock = &clock_;
    deps.verifier = verifier_.get();
    deps.revocations = revocations_.get();
    deps.policies = &policies_;
    deps.directory = &directory_;
    deps.audit = log;
    deps.scrubber = &scrubber_;
    return deps;
  }

  std::unique_ptr<Pipeline> MakePipeline(audit::AuditLog* log) {
    return std::make_unique<Pipeline>(Deps(log));
  }
  // A pipeline over `log` whose upstream "up" has `breaker`, which must outlive it.
  std::unique_ptr<Pipeline> MakePipelineWithBreaker(audit::AuditLog* log, CircuitBreaker* breaker) {
    breakers_ = {{"up", breaker}};
    PipelineDeps deps = Deps(log);
    deps.breakers = &breakers_;
    return std::make_unique<Pipeline>(deps);
  }
  // A breaker that one upstream failure opens: a call wrongly blamed on the upstream shows.
  static CircuitBreakerOptions OneFailureOpens() {
    CircuitBreakerOptions o;
    o.failure_threshold = 1;
    return o;
  }

  std::string AuditDir() const { return dir_.Sub("audit"); }

  static store::Session StoreSession(const std::string& sid, const std::string& parent,
                                     const std::string& agent) {
    store::Session s;
    s.sid = sid;
    s.parent_sid = parent;
    s.root_sid = parent.empty() ? sid : kRootSid;
    s.agent = agent;
    s.human = "alice";
    s.task = "SUP-1";
    s.scope = {"*"};
    s.model = Json();
    s.depth = parent.empty() ? 0 : 1;
    s.created_at = 1767000000;
    s.expires_at = 1767000000 + 3600;
    return s;
  }

  void SetPolicies(std::string_view text) {
    auto set = policy::PolicySet::Parse(text, "test.cedar");
    ASSERT_TRUE(set.ok()) << set.error().message;
    policies_.Set(std::make_shared<const policy::PolicySet>(std::move(set).value()));
  }

  // Root-session claims for bot acting for alice.
  identity::Claims RootClaims(std::vector<std::string> scope = {"*"}) const {
    identity::Claims c;
    c.iss = kIssuer;
    c.aud = {kAudience};
    c.sub = "alice";
    c.client_id = "bot";
    c.sid = kRootSid;
    c.jti = "tok_" + std::to_string(++jti_);
    c.act = {identity::Actor{"agent:bot", kRootSid}};
    c.task = "SUP-1";
    c.scope = std::move(scope);
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + 900;
    return c;
  }

  std::string Mint(const identity::Claims& c) const {
    auto token = issuer_->Mint(c);
    EXPECT_TRUE(token.ok()) << token.error().message;
    return token.ok() ? *token : "";
  }

  Caller MustAuthenticate(const identity::Claims& c) const {
    auto caller = pipeline_->Authenticate(Mint(c));
    EXPECT_TRUE(caller.ok()) << caller.error().message;
    if (!caller.ok()) return Caller{std::make_shared<identity::Claims>(c), {}};
    return std::move(caller).value();
  }

  static core::Action MakeAction(std::string tool, ActionClass cls = ActionClass::kRead,
                                 Json args = Json::MakeObject(), std::string upstream = "up") {
    core::Action a;
    a.protocol = "mcp";
    a.upstream = std::move(upstream);
    a.name = std::move(tool);
    a.cls = cls;
    a.args = std::move(args);
    a.resource = core::EntityRef{"Upstream", a.upstream};
    a.method = "tools/call";
    a.path = "/mcp/" + a.upstream;
    return a;
  }

  // Makes every record queued so far durable: call.completed is submitted without waiting,
  // and a durable Append returns only after everything queued before it. The barrier
  // records are left out of AuditRecords().
  void SyncAudit() const {
    Json barrier = Json::MakeObject();
    barrier.Set("type", "test.barrier");
    (void)audit_->Append(barrier);
  }

  // Every record of the audit log, parsed.
  std::vector<Json> AuditRecords() const {
    SyncAudit();
    std::vector<Json> out;
    auto lines = audit::TailLog(AuditDir(), 1000);
    EXPECT_TRUE(lines.ok()) << lines.error().message;
    if (!lines.ok()) return out;
    for (const std::string& l : *lines) {
      auto j = Json::Parse(l);
      EXPECT_TRUE(j.ok()) << l;
      if (j.ok() && j->GetString("type") != "test.barrier") out.push_back(std::move(j).value());
    }
    return out;
  }

  std::vector<std::string> AuditLines() const {
    SyncAudit();
    auto lines = audit::TailLog(AuditDir(), 1000);
    EXPECT_TRUE(lines.ok());
    return lines.ok() ? *lines : std::vector<std::string>{};
  }

  // The record of `type` for `decision_id`, or null.
  Json FindRecord(const std::string& type, const std::string& decision_id) const {
    for (Json& r : AuditRecords()) {
      if (r.GetString("type") == type && r.GetString("decision_id") == decision_id) return r;
    }
    return Json();
  }

  // One call of the root session (action up:refund) parked in its own thread on an approval
  // of group "g", which parks far longer than any test: only a revocation or a shutdown ends
  // the wait. The pipeline uses the fixture's dependencies plus that approval book.
  struct ParkedCall {
    std::unique_ptr<approval::ApprovalBook> book;
    std::unique_ptr<Pipeline> pipeline;
    Caller caller;
    RecordingInvoker invoker;
    Pipeline::CallResult result;
    std::thread thread;
    ~ParkedCall() {
      if (thread.joinable()) thread.join();
    }
  };
  void Park(ParkedCall* parked) {
    SetPolicies(R"(@id("needs-approval") @approval("g") permit (principal, action, resource);)");
    approval::ApprovalGroup group;
    group.name = "g";
    group.wait_micros = 60'000'000;
    group.expiry_micros = 120'000'000;
    auto book = approval::ApprovalBook::Create({group}, clock_);
    ASSERT_TRUE(book.ok()) << book.error().message;
    parked->book = std::move(book).value();
    PipelineDeps deps = Deps(audit_.get());
    deps.approvals = parked->book.get();
    parked->pipeline = std::make_unique<Pipeline>(deps);
    parked->caller = MustAuthenticate(RootClaims());
    parked->thread = std::thread([parked] {
      parked->result = parked->pipeline->Call(parked->caller, MakeAction("refund", ActionClass::kWrite), parked->invoker);
    });
    for (int i = 0; i < 2000 && parked->book->List(approval::ListFilter::kPending).FindArray("approvals")->as_array().empty();
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  TempDir dir_;
  core::FakeClock clock_;
  mutable int jti_ = 0;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<identity::TokenVerifier> verifier_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  std::unique_ptr<audit::AuditLog> audit_;
  std::map<std::string, CircuitBreaker*, std::less<>> breakers_;  // MakePipelineWithBreaker's
  broker::Scrubber scrubber_;
  PolicyHolder policies_;
  Directory directory_;
  std::unique_ptr<Pipeline> pipeline_;
};

constexpr std::string_view kHumanAndAgentPermit = R"(
@id("human-read") permit (principal == Human::"alice", action, resource);
@id("agent-read") permit (principal == Agent::"bot", action, resource);
)";

// --- authorization ------------------------------------------------------------------------------

TEST_F(PipelineTest, AllowsCallPermittedForHumanAndAgent) {
  SetPolicies(kHumanAndAgentPermit);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_TRUE(r.decision.allowed()) << r.decision.reason;
  EXPECT_TRUE(r.decision.scope_ok);
  EXPECT_TRUE(r.outcome.ok);
  EXPECT_EQ(invoker.calls(), 1u);
  ASSERT_EQ(invoker.decision_ids().size(), 1u);
  EXPECT_EQ(invoker.decision_ids()[0], r.decision.id);
  EXPECT_EQ(r.decision.action, "up:get_doc");
  EXPECT_EQ(r.decision.resource, "Upstream::\"up\"");
}

TEST_F(PipelineTest, DeniesWhenOnlyHumanPermits) {
  SetPolicies(R"(@id("human-only") permit (principal == Human::"alice", action, resource);)");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  EXPECT_NE(r.decision.reason.find("Agent::\"bot\""), std::string::npos) << r.decision.reason;
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kPolicyDenied);
  EXPECT_EQ(invoker.calls(), 0u);
}

TEST_F(PipelineTest, DeniesWhenOnlyAgentPermits) {
  SetPolicies(R"(@id("agent-only") permit (principal == Agent::"bot", action, resource);)");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  EXPECT_NE(r.decision.reason.find("Human::\"alice\""), std::string::npos) << r.decision.reason;
  EXPECT_EQ(invoker.calls(), 0u);
}

TEST_F(PipelineTest, SubAgentNeverExceedsItsParent) {
  // The parent agent (bot) may not call the tool; the delegated helper may. Denied.
  ASSERT_TRUE(store_->CreateSession(StoreSession("ses_child", kRootSid, "helper")).ok());
  SetPolicies(R"(
    permit (principal == Human::"alice", action, resource);
    permit (principal == Agent::"helper", action, resource);
  )");
  identity::Claims c = RootClaims();
  c.client_id = "helper";
  c.sid = "ses_child";
  c.act = {identity::Actor{"agent:helper", "ses_child"}, identity::Actor{"agent:bot", kRootSid}};
  Caller caller = MustAuthenticate(c);
  EXPECT_EQ(caller.chain, (std::vector<std::string>{"bot", "helper"}));
  EXPECT_EQ(caller.run(), kRootSid);
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  EXPECT_FALSE(r.decision.allowed());
  EXPECT_EQ(r.decision.checks.size(), 3u);  // human, bot, helper
  EXPECT_EQ(invoker.calls(), 0u);
}

TEST_F(PipelineTest, DelegationNeedsThePermissionOfTheHumanAndEveryAgentOfTheChain) {
  Caller caller = MustAuthenticate(RootClaims());
  // No policy: default deny.
  auto none = pipeline_->DecideDelegation(caller, "helper");
  EXPECT_FALSE(none.allowed());
  EXPECT_EQ(none.action, "mandate:delegate");
  EXPECT_EQ(none.resource, "Agent::\"helper\"");
  // The agent alone may delegate: not enough, the human must permit it too.
  SetPolicies(R"(@id("bot-delegates") permit (principal == Agent::"bot", action == Action::"mandate:delegate", resource == Agent::"helper");)");
  EXPECT_FALSE(pipeline_->DecideDelegation(caller, "helper").allowed());
  SetPolicies(R"(
    @id("humans-delegate") permit (principal is Human, action in Action::"mandate", resource);
    @id("bot-delegates") permit (principal == Agent::"bot", action == Action::"mandate:delegate", resource == Agent::"helper");
    @id("not-to-bots") forbid (principal, action, resource in Group::"support-agents");
  )");
  auto ok = pipeline_->DecideDelegation(caller, "helper");
  EXPECT_TRUE(ok.allowed()) << ok.reason;
  ASSERT_EQ(ok.checks.size(), 2u);
  EXPECT_EQ(ok.checks[1].permits, (std::vector<std::string>{"bot-delegates"}));
  // The child's groups are its parents as a resource: delegating to a support agent is forbidden.
  auto to_bot = pipeline_->DecideDelegation(caller, "bot");
  EXPECT_FALSE(to_bot.allowed());
  EXPECT_EQ(to_bot.checks[0].forbids, (std::vector<std::string>{"not-to-bots"}));
  // An unknown child is a denial, never an error.
  EXPECT_FALSE(pipeline_->DecideDelegation(caller, "ghost").allowed());
}

TEST_F(PipelineTest, ADelegatedScopeNeverExceedsItsParents) {
  EXPECT_TRUE(ScopeCovers({"*"}, {"*"}));
  EXPECT_TRUE(ScopeCovers({"*"}, {"up:*", "other:get"}));
  EXPECT_TRUE(ScopeCovers({"up:*"}, {"up:*"}));
  EXPECT_TRUE(ScopeCovers({"up:*"}, {"up:get", "up:put"}));
  EXPECT_TRUE(ScopeCovers({"up:get", "up:put"}, {"up:get"}));
  EXPECT_TRUE(ScopeCovers({"up:get"}, {}));
  EXPECT_FALSE(ScopeCovers({"up:*"}, {"*"}));
  EXPECT_FALSE(ScopeCovers({"up:get"}, {"up:*"}));
  EXPECT_FALSE(ScopeCovers({"up:get"}, {"up:get", "up:put"}));
  EXPECT_FALSE(ScopeCovers({"up:*"}, {"other:get"}));
}

// An upstream that answers only when told to, or gives up when the call is cancelled.
class BlockingInvoker final : public UpstreamInvoker {
 public:
  core::Outcome Invoke(const core::Action&, const Caller&, const Forwarding&) override {
    // Registered before taking mu_: if the call is already cancelled, the function runs here.
    core::CancelRegistration on_cancel(core::CurrentCancelSignal(), [this] {
      std::lock_guard<std::mutex> l(mu_);
      cancelled_ = true;
      cv_.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return cancelled_ || release_; });
    core::Outcome o;
    o.ok = !cancelled_;
    o.error = ErrorCode::kUpstreamUnavailable;
    o.message = cancelled_ ? "cancelled" : "";
    o.result = Json::MakeObject();
    lock.unlock();  // before on_cancel's destructor, whose function takes mu_
    return o;
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    release_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, cancelled_ = false, release_ = false;
};

TEST_F(PipelineTest, RevokingASessionCancelsItsCallsInFlightAndOnlyThose) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  BlockingInvoker slow;
  Pipeline::CallResult result;
  std::thread call([&] { result = pipeline_->Call(caller, MakeAction("get_doc"), slow); });
  slow.WaitEntered();
  EXPECT_EQ(pipeline_->InflightCount(), 1u);
  // A revocation of someone else cancels nothing.
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kTask, "OTHER-TASK", "test", 1767000000).ok());
  EXPECT_EQ(pipeline_->CancelRevoked(), 0u);
  // Revoking the session's task does.
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kTask, "SUP-1", "test", 1767000000).ok());
  EXPECT_EQ(pipeline_->CancelRevoked(), 1u);
  call.join();
  EXPECT_TRUE(result.decision.allowed());
  EXPECT_FALSE(result.outcome.ok);
  EXPECT_EQ(result.outcome.error, ErrorCode::kTokenRevoked);
  EXPECT_EQ(pipeline_->InflightCount(), 0u);
  Json cancelled = FindRecord("call.cancelled", result.decision.id);
  ASSERT_TRUE(cancelled.is_object()) << "no call.cancelled record";
  EXPECT_TRUE(cancelled.Find("in_flight") && cancelled.Find("in_flight")->as_bool());
  EXPECT_FALSE(FindRecord("call.completed", result.decision.id).is_object());
}

TEST_F(PipelineTest, ShutdownReleasesParkedCallsWithoutForwardingThem) {
  ParkedCall parked;
  ASSERT_NO_FATAL_FAILURE(Park(&parked));
  EXPECT_EQ(parked.pipeline->ReleaseParked(), 1u);
  parked.thread.join();
  EXPECT_EQ(parked.result.outcome.error, ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(parked.result.decision.reason.find("shutting down"), std::string::npos) << parked.result.decision.reason;
  // A call that would park after shutdown began is refused at once.
  auto late = parked.pipeline->Call(parked.caller, MakeAction("refund", ActionClass::kWrite), parked.invoker);
  EXPECT_EQ(late.outcome.error, ErrorCode::kUpstreamUnavailable);
  EXPECT_EQ(parked.invoker.calls(), 0u);
}

TEST_F(PipelineTest, RevokingASessionCancelsItsCallParkedForApproval) {
  ParkedCall parked;
  ASSERT_NO_FATAL_FAILURE(Park(&parked));
  EXPECT_EQ(parked.pipeline->InflightCount(), 1u);
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kSession, std::string(kRootSid), "test", 1767000000).ok());
  EXPECT_EQ(parked.pipeline->CancelRevoked(), 1u);
  parked.thread.join();
  const Pipeline::CallResult& result = parked.result;
  EXPECT_FALSE(result.decision.allowed());
  EXPECT_EQ(result.outcome.error, ErrorCode::kTokenRevoked);
  EXPECT_NE(result.decision.reason.find("waited for approval"), std::string::npos) << result.decision.reason;
  EXPECT_EQ(parked.invoker.calls(), 0u);
  EXPECT_EQ(parked.pipeline->InflightCount(), 0u);
  Json decided = FindRecord("call.decided", result.decision.id);
  ASSERT_TRUE(decided.is_object());
  EXPECT_EQ(decided.FindObject("decision")->GetString("code"), "token_revoked");
}

TEST_F(PipelineTest, ForbidWins) {
  SetPolicies(R"(
    @id("all") permit (principal, action, resource);
    @id("no-destructive") forbid (principal, action in Action::"destructive", resource);
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("drop_table", ActionClass::kDestructive), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  ASSERT_FALSE(r.decision.checks.empty());
  EXPECT_EQ(r.decision.checks[0].forbids, std::vector<std::string>{"no-destructive"});
  EXPECT_NE(r.decision.reason.find("no-destructive"), std::string::npos) << r.decision.reason;
  EXPECT_EQ(invoker.calls(), 0u);

  // The same permit lets a read through: the forbid matched on the class.
  auto read = pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead), invoker);
  EXPECT_TRUE(read.decision.allowed()) << read.decision.reason;
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, DefaultDenyWithNoPolicies) {
  policies_.Set(std::make_shared<const policy::PolicySet>());
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  EXPECT_EQ(invoker.calls(), 0u);
  // Decide agrees, and never fails.
  EXPECT_EQ(pipeline_->Decide(caller, MakeAction("get_doc")).kind, Decision::Kind::kDeny);
}

TEST_F(PipelineTest, OutOfScopeIsRefusedBeforePolicy) {
  // A forbid that would error if evaluated: out of scope must be decided before any policy.
  SetPolicies(R"(
    permit (principal, action, resource);
    @id("errs") forbid (principal, action, resource) when { context.args.missing == 1 };
  )");
  Caller caller = MustAuthenticate(RootClaims({"up:get_doc"}));
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("delete_doc", ActionClass::kDestructive), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kOutOfScope);
  EXPECT_FALSE(r.decision.scope_ok);
  EXPECT_TRUE(r.decision.checks.empty()) << "policy was evaluated for an out-of-scope call";
  EXPECT_EQ(r.outcome.error, ErrorCode::kOutOfScope);
  EXPECT_EQ(invoker.calls(), 0u);
  // The refusal is audited too.
  Json rec = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(rec.is_object());
  EXPECT_EQ(rec.FindObject("decision")->GetString("code"), "out_of_scope");
}

TEST_F(PipelineTest, ScopeWildcards) {
  EXPECT_TRUE(ScopeAllows({"*"}, "up:anything"));
  EXPECT_TRUE(ScopeAllows({"up:*"}, "up:anything"));
  EXPECT_TRUE(ScopeAllows({"up:get"}, "up:get"));
  EXPECT_FALSE(ScopeAllows({"up:get"}, "up:get_all"));
  EXPECT_FALSE(ScopeAllows({"up:*"}, "upx:get"));
  EXPECT_FALSE(ScopeAllows({"up:*"}, "u:get"));
  EXPECT_FALSE(ScopeAllows({"upx:*"}, "up:get"));
  EXPECT_FALSE(ScopeAllows({"other:*", "up:list"}, "up:get"));
  EXPECT_FALSE(ScopeAllows({"up:g*"}, "up:get")) << "only a whole-upstream wildcard is supported";
  EXPECT_FALSE(ScopeAllows({}, "up:get"));

  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims({"up:*"}));
  RecordingInvoker invoker;
  EXPECT_TRUE(pipeline_->Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  auto other = pipeline_->Call(
      caller, MakeAction("get_doc", ActionClass::kRead, Json::MakeObject(), "other"), invoker);
  EXPECT_EQ(other.decision.code, ErrorCode::kOutOfScope);
  EXPECT_EQ(invoker.calls(), 1u);

  Caller star = MustAuthenticate(RootClaims({"*"}));
  EXPECT_TRUE(pipeline_
                  ->Call(star,
                         MakeAction("get_doc", ActionClass::kRead, Json::MakeObject(), "other"),
                         invoker)
                  .decision.allowed());
  EXPECT_EQ(invoker.calls(), 2u);
}

TEST_F(PipelineTest, ApprovalOnlyPermitGivesApprovalRequired) {
  SetPolicies(
      R"(@id("refund-needs-approval") @approval("g") permit (principal, action, resource);)");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kApprovalRequired);
  EXPECT_EQ(r.decision.code, ErrorCode::kApprovalRequired);
  EXPECT_EQ(r.decision.approval, std::optional<std::string>("g"));
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kApprovalRequired);
  EXPECT_EQ(invoker.calls(), 0u);
  Json rec = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(rec.is_object());
  EXPECT_EQ(rec.FindObject("decision")->GetString("decision"), "approval_required");
}

TEST_F(PipelineTest, ApprovalPermitBesideUnconditionalPermitAllows) {
  SetPolicies(R"(
    @id("needs-approval") @approval("g") permit (principal, action, resource);
    @id("plain") permit (principal, action, resource);
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite), invoker);
  EXPECT_TRUE(r.decision.allowed()) << r.decision.reason;
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, ApprovalForAgentOnlyStillRequiresApproval) {
  SetPolicies(R"(
    @id("human") permit (principal == Human::"alice", action, resource);
    @id("agent-approval") @approval("g") permit (principal == Agent::"bot", action, resource);
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kApprovalRequired);
  EXPECT_EQ(invoker.calls(), 0u);
}

TEST_F(PipelineTest, ForbidThatErrorsDeniesFailClosed) {
  // Cedar skips an erroring forbid; the gateway must not: it might have matched.
  SetPolicies(R"(
    @id("all") permit (principal, action, resource);
    @id("no-prod") forbid (principal, action, resource) when { context.args.env == "prod" };
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("deploy", ActionClass::kWrite), invoker);  // no "env"
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied);
  ASSERT_FALSE(r.decision.checks.empty());
  ASSERT_FALSE(r.decision.checks[0].errors.empty());
  EXPECT_EQ(r.decision.checks[0].errors[0].rfind("no-prod: ", 0), 0u)
      << r.decision.checks[0].errors[0];
  EXPECT_EQ(invoker.calls(), 0u);

  // With `has`, the same intent evaluates cleanly and the call goes through.
  SetPolicies(R"(
    @id("all") permit (principal, action, resource);
    @id("no-prod") forbid (principal, action, resource) when { context.args has env && context.args.env == "prod" };
  )");
  EXPECT_TRUE(pipeline_->Call(caller, MakeAction("deploy", ActionClass::kWrite), invoker)
                  .decision.allowed());
  Json prod = Json::MakeObject();
  prod.Set("env", "prod");
  EXPECT_FALSE(pipeline_->Call(caller, MakeAction("deploy", ActionClass::kWrite, prod), invoker)
                   .decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

// pipeline.h: "any evaluation error denies"; docs/policy.md: "a caller that must fail closed
// (STYLE.md) denies when Response::errors is not empty".
TEST_F(PipelineTest, AnyPolicyEvaluationErrorDenies) {
  SetPolicies(R"(
    @id("all") permit (principal, action, resource);
    @id("broken-permit") permit (principal, action, resource) when { context.args.missing == 1 };
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_FALSE(r.decision.allowed())
      << "a policy evaluation error was ignored: " << r.decision.reason;
  EXPECT_EQ(invoker.calls(), 0u);
}

// --- audit --------------------------------------------------------------------------------------

TEST_F(PipelineTest, AuditFailureRefusesCallFailClosed) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());

  // A closed log.
  audit_->Close();
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kInternal);
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kInternal);
  EXPECT_EQ(invoker.calls(), 0u);

  // A log whose every append fails.
  FailingAuditLog failing;
  auto pipeline = MakePipeline(&failing);
  auto r2 = pipeline->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r2.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r2.decision.code, ErrorCode::kInternal);
  EXPECT_FALSE(r2.outcome.ok);
  EXPECT_NE(r2.decision.reason.find("audit"), std::string::npos) << r2.decision.reason;
  EXPECT_EQ(invoker.calls(), 0u);
  EXPECT_GE(failing.appends.load(), 1);
  EXPECT_FALSE(pipeline->Record(Json::MakeObject()).ok());
}

TEST_F(PipelineTest, AGateHonouringInvokerRunsWhileTheRecordSyncsAndSendsOnlyOnceItIsDurable) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  ManualDurabilityLog log;
  auto pipeline = MakePipeline(&log);
  GateHonouringInvoker invoker;
  size_t pending_at_invoke = 0;
  invoker.at_invoke = [&] {
    pending_at_invoke = log.pending();
    EXPECT_EQ(invoker.sends, 0);
    log.Fire(core::OkStatus());  // the disk catches up: the gate opens and the send goes
  };
  auto r = pipeline->Call(caller, MakeAction("get_doc"), invoker);
  ASSERT_TRUE(r.decision.allowed()) << r.decision.reason;
  EXPECT_TRUE(r.outcome.ok) << r.outcome.message;
  EXPECT_TRUE(invoker.gate_seen);
  EXPECT_TRUE(invoker.gate_undecided_at_invoke);
  EXPECT_EQ(pending_at_invoke, 1u);  // the decision record, not yet durable
  EXPECT_EQ(invoker.sends, 1);
  EXPECT_EQ(log.types(), (std::vector<std::string>{"call.decided", "call.completed"}));
  EXPECT_EQ(core::CurrentForwardGate(), nullptr);  // the scope ended with the call
}

TEST_F(PipelineTest, AGateThatClosesRefusesTheCallAsAnUnwritableLogDoesAndSpendsNothing) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  ManualDurabilityLog log;
  CircuitBreaker breaker("up", OneFailureOpens(), clock_);
  auto with_breaker = MakePipelineWithBreaker(&log, &breaker);
  Pipeline& pipeline = *with_breaker;
  GateHonouringInvoker invoker;
  invoker.at_invoke = [&] { log.Fire(core::MakeError(ErrorCode::kInternal, "audit append failed: disk full")); };
  auto r = pipeline.Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kInternal);
  EXPECT_NE(r.decision.reason.find("audit log cannot be written"), std::string::npos) << r.decision.reason;
  EXPECT_NE(r.decision.reason.find("disk full"), std::string::npos) << r.decision.reason;
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kInternal);
  EXPECT_EQ(invoker.sends, 0);
  // Not the upstream's fault: the breaker (one failure opens it) stays closed.
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::kClosed);
  // No completion for a call that never went.
  EXPECT_EQ(log.types(), (std::vector<std::string>{"call.decided"}));
}

TEST_F(PipelineTest, AnInvokerThatDoesNotHonourTheGateIsCalledOnlyOnceTheRecordIsDurable) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  ManualDurabilityLog log;
  auto pipeline = MakePipeline(&log);
  RecordingInvoker invoker;
  bool gate_in_scope = true;
  invoker.on_invoke = [&](const core::Action&, const std::string&) { gate_in_scope = core::CurrentForwardGate() != nullptr; };
  Pipeline::CallResult r;
  std::thread t([&] { r = pipeline->Call(caller, MakeAction("get_doc"), invoker); });
  ASSERT_TRUE(WaitUntil([&] { return log.pending() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(invoker.calls(), 0u) << "invoked before the decision record was durable";
  log.Fire(core::OkStatus());
  t.join();
  ASSERT_TRUE(r.decision.allowed()) << r.decision.reason;
  EXPECT_EQ(invoker.calls(), 1u);
  EXPECT_FALSE(gate_in_scope);

  // A refused call is answered only once its record is durable too.
  SetPolicies("forbid (principal, action, resource);");
  auto refused_pipeline = MakePipeline(&log);
  bool answered = false;
  t = std::thread([&] {
    r = refused_pipeline->Call(caller, MakeAction("get_doc"), invoker);
    answered = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return log.pending() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(answered);
  log.Fire(core::OkStatus());
  t.join();
  EXPECT_FALSE(r.decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, ACallThatGivesUpBeforeItsGateOpensSpendsNothingAndBlamesNoUpstream) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  ManualDurabilityLog log;
  CircuitBreaker breaker("up", OneFailureOpens(), clock_);
  auto with_breaker = MakePipelineWithBreaker(&log, &breaker);
  Pipeline& pipeline = *with_breaker;

  // A deadline passed while the record synced: a failure, but not the upstream's.
  GivingUpInvoker timed_out(false);
  Pipeline::CallResult r;
  std::thread t([&] { r = pipeline.Call(caller, MakeAction("get_doc"), timed_out); });
  ASSERT_TRUE(WaitUntil([&] { return timed_out.entered.load() && log.pending() == 1; }));
  ASSERT_TRUE(WaitUntil([&] { return !timed_out.sent_anyway.load() && timed_out.withdrawn.load(); }));
  log.Fire(core::OkStatus());  // the record is durable after all: the call still never left
  t.join();
  EXPECT_TRUE(r.decision.allowed());
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kUpstreamTimeout);
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::kClosed);  // one failure would open it
  Json completed = log.Last("call.completed");
  ASSERT_TRUE(completed.is_object());
  EXPECT_EQ(completed.GetString("status"), "failed");

  // Revoked while the record synced: cancelled, and the record says it never went.
  GivingUpInvoker revoked(true);
  t = std::thread([&] { r = pipeline.Call(caller, MakeAction("get_doc"), revoked); });
  ASSERT_TRUE(WaitUntil([&] { return revoked.entered.load() && log.pending() == 1; }));
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kSession, std::string(kRootSid), "test", 1767000000).ok());
  EXPECT_EQ(pipeline.CancelRevoked(), 1u);
  ASSERT_TRUE(WaitUntil([&] { return revoked.withdrawn.load(); }));
  log.Fire(core::OkStatus());
  t.join();
  EXPECT_FALSE(revoked.sent_anyway.load());
  EXPECT_EQ(r.outcome.error, ErrorCode::kTokenRevoked);
  Json cancelled = log.Last("call.cancelled");
  ASSERT_TRUE(cancelled.is_object());
  ASSERT_NE(cancelled.Find("in_flight"), nullptr);
  EXPECT_FALSE(cancelled.Find("in_flight")->as_bool());
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::kClosed);
}

TEST_F(PipelineTest, DecisionWithUnstorableArgumentsIsStillRecorded) {
  SetPolicies("forbid (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  // Invalid UTF-8 cannot be stored verifiably; the decision must leave a record anyway.
  Json args = Json::MakeObject();
  args.Set("s", std::string("\xff\xfe"));
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker);
  EXPECT_FALSE(r.decision.allowed());
  EXPECT_EQ(invoker.calls(), 0u);
  Json decided = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(decided.is_object()) << "a refused call left no decision record";
  ASSERT_NE(decided.FindObject("args"), nullptr);
  EXPECT_NE(decided.FindObject("args")->Find("_unrecordable"), nullptr);
  EXPECT_EQ(decided.GetString("args_hash").size(), 64u);
}

TEST_F(PipelineTest, DecisionRecordIsDurableBeforeForwarding) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  bool decided_seen = false;
  bool completed_seen_early = false;
  invoker.on_invoke = [&](const core::Action&, const std::string& decision_id) {
    decided_seen = FindRecord("call.decided", decision_id).is_object();
    completed_seen_early = FindRecord("call.completed", decision_id).is_object();
  };
  Json args = Json::MakeObject();
  args.Set("id", 42);
  auto r = pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker);
  ASSERT_TRUE(r.decision.allowed()) << r.decision.reason;
  ASSERT_EQ(invoker.calls(), 1u);
  EXPECT_TRUE(decided_seen) << "the upstream was called before its decision record was on disk";
  EXPECT_FALSE(completed_seen_early);

  Json decided = FindRecord("call.decided", r.decision.id);
  Json completed = FindRecord("call.completed", r.decision.id);
  ASSERT_TRUE(decided.is_object());
  ASSERT_TRUE(completed.is_object());
  EXPECT_LT(decided.GetInt("seq", -1), completed.GetInt("seq", -1));
  EXPECT_EQ(decided.GetString("run"), kRootSid);
  EXPECT_EQ(decided.GetString("sid"), kRootSid);
  EXPECT_EQ(decided.GetString("agent"), "bot");
  EXPECT_EQ(decided.GetString("human"), "alice");
  EXPECT_EQ(decided.GetString("task"), "SUP-1");
  EXPECT_EQ(decided.GetString("action"), "up:get_doc");
  EXPECT_EQ(*decided.Find("args"), args);
  EXPECT_EQ(decided.GetString("args_hash").size(), 64u);
  EXPECT_EQ(completed.GetString("status"), "ok");
  EXPECT_EQ(completed.GetString("result_hash").size(), 64u);
}

TEST_F(PipelineTest, RefusedCallIsAuditedButNotCompleted) {
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  ASSERT_FALSE(r.decision.allowed());
  EXPECT_TRUE(FindRecord("call.decided", r.decision.id).is_object());
  EXPECT_FALSE(FindRecord("call.completed", r.decision.id).is_object());
}

TEST_F(PipelineTest, UpstreamFailureIsRecordedAsFailedCompletion) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  invoker.outcome = core::Outcome{};
  invoker.outcome.ok = false;
  invoker.outcome.error = ErrorCode::kUpstreamTimeout;
  invoker.outcome.message = std::string("upstream up: timed out talking with key ") + kSecret;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_TRUE(r.decision.allowed());
  EXPECT_FALSE(r.outcome.ok);
  EXPECT_EQ(r.outcome.error, ErrorCode::kUpstreamTimeout);
  EXPECT_EQ(r.outcome.message.find(kSecret), std::string::npos) << r.outcome.message;
  Json completed = FindRecord("call.completed", r.decision.id);
  ASSERT_TRUE(completed.is_object());
  EXPECT_EQ(completed.GetString("status"), "failed");
  EXPECT_EQ(completed.GetString("error"), "upstream_timeout");
  for (const std::string& line : AuditLines())
    EXPECT_EQ(line.find(kSecret), std::string::npos) << line;
}

// --- budgets, circuit breaker, payload rules ---------------------------------------------------

// A budget of `limit` calls per session over its whole run.
budget::BudgetSpec SessionCallsBudget(std::string name, int64_t limit) {
  budget::BudgetSpec spec;
  spec.name = std::move(name);
  spec.metric = *budget::ParseMetric("calls");
  spec.window = *budget::ParseWindow("run");
  spec.scope = budget::Scope::kSession;
  spec.limit = limit;
  return spec;
}

TEST_F(PipelineTest, ABudgetRefusesBeforeTheUpstreamAndReleasesWhatNeverReachedIt) {
  SetPolicies("permit (principal, action, resource);");
  auto ledger = budget::BudgetLedger::Create({SessionCallsBudget("two", 2)}, clock_);
  ASSERT_TRUE(ledger.ok()) << ledger.error().message;
  PipelineDeps deps = Deps(audit_.get());
  deps.budgets = ledger->get();
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());

  // An upstream that was never reached does not consume the budget.
  RecordingInvoker down;
  down.outcome = core::Outcome{};
  down.outcome.ok = false;
  down.outcome.error = ErrorCode::kUpstreamUnavailable;
  auto failed = pipeline.Call(caller, MakeAction("get_doc"), down);
  EXPECT_TRUE(failed.decision.allowed());
  EXPECT_EQ(FindRecord("call.completed", failed.decision.id).Find("budgets")->as_array()[0].GetInt("actual", -1), 0);

  RecordingInvoker invoker;
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  auto third = pipeline.Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_FALSE(third.decision.allowed());
  EXPECT_EQ(third.outcome.error, ErrorCode::kBudgetExceeded);
  EXPECT_EQ(invoker.calls(), 2u);  // the refused call never reached the upstream
  Json decided = FindRecord("call.decided", third.decision.id);
  ASSERT_TRUE(decided.is_object());
  EXPECT_EQ(decided.Find("budget_exceeded")->GetString("budget"), "two");
  EXPECT_EQ(decided.Find("budget_exceeded")->GetInt("limit", 0), 2);
}

// --- plans ---------------------------------------------------------------------------------------

// A plan for the fixture's root session: `steps` as (action, when, max_count, approval group).
std::string SubmitPlan(plan::PlanBook& book, std::vector<plan::PlanStep> steps, bool auto_approved,
                       std::vector<std::pair<std::string, int64_t>> envelope = {}) {
  plan::PlanSpec spec;
  spec.steps = std::move(steps);
  spec.budget = std::move(envelope);
  spec.ttl_seconds = 600;
  auto id = book.Submit({std::string(kRootSid), std::string(kRootSid), "bot", "alice"}, std::move(spec),
                        auto_approved);
  EXPECT_TRUE(id.ok()) << id.error().message;
  return id.ok() ? *id : "";
}

plan::PlanStep Step(std::string action, int64_t max_count = 1, std::string approval_group = "") {
  plan::PlanStep s;
  s.action = std::move(action);
  s.max_count = max_count;
  s.approval_group = std::move(approval_group);
  return s;
}

TEST_F(PipelineTest, APlanAdmitsItsStepsUpToTheirCountsAndNothingElse) {
  SetPolicies("permit (principal, action, resource);");
  plan::PlanBook book(clock_);
  PipelineDeps deps = Deps(audit_.get());
  deps.plans = &book;
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;

  // No plan: policy alone decides.
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  const std::string id = SubmitPlan(book, {Step("up:get_doc", 2)}, /*auto_approved=*/true);
  auto first = pipeline.Call(caller, MakeAction("get_doc"), invoker);
  ASSERT_TRUE(first.decision.allowed()) << first.decision.reason;
  EXPECT_EQ(first.decision.plan_step.GetString("plan"), id);
  EXPECT_EQ(first.decision.plan_step.GetInt("used", 0), 1);
  EXPECT_EQ(FindRecord("call.decided", first.decision.id).FindObject("decision")->FindObject("plan_step")->GetInt("max_count", 0), 2);
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  auto third = pipeline.Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_EQ(third.outcome.error, ErrorCode::kPlanViolation);
  EXPECT_NE(third.decision.reason.find("used 2 of 2"), std::string::npos) << third.decision.reason;
  auto outside = pipeline.Call(caller, MakeAction("delete_doc", ActionClass::kDestructive), invoker);
  EXPECT_EQ(outside.outcome.error, ErrorCode::kPlanViolation);
  EXPECT_EQ(invoker.calls(), 3u);  // the one before the plan and the two steps
}

TEST_F(PipelineTest, APolicyDenialSpendsNoStepAndARefusalAfterTheStepGivesItBack) {
  SetPolicies(R"(
    permit (principal, action, resource) when { context.args.ok == true };
  )");
  auto ledger = budget::BudgetLedger::Create({SessionCallsBudget("one", 1)}, clock_);
  ASSERT_TRUE(ledger.ok()) << ledger.error().message;
  plan::PlanBook book(clock_);
  PipelineDeps deps = Deps(audit_.get());
  deps.plans = &book;
  deps.budgets = ledger->get();
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  const std::string id = SubmitPlan(book, {Step("up:get_doc", 2)}, true, {{"writes", 5}});

  Json no = Json::MakeObject();
  no.Set("ok", false);
  Json yes = Json::MakeObject();
  yes.Set("ok", true);
  EXPECT_EQ(pipeline.Call(caller, MakeAction("get_doc", ActionClass::kRead, no), invoker).outcome.error,
            ErrorCode::kPolicyDenied);
  EXPECT_EQ(book.Get(id).FindArray("steps")->as_array()[0].GetInt("used", -1), 0);
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc", ActionClass::kRead, yes), invoker).decision.allowed());
  // The budget refuses the second call after the step admitted it: the step is given back.
  EXPECT_EQ(pipeline.Call(caller, MakeAction("get_doc", ActionClass::kRead, yes), invoker).outcome.error,
            ErrorCode::kBudgetExceeded);
  EXPECT_EQ(book.Get(id).FindArray("steps")->as_array()[0].GetInt("used", -1), 1);
}

TEST_F(PipelineTest, AStepApprovedWithThePlanApprovesItsCallsForThatGroupOnly) {
  SetPolicies(R"(
    @id("refund") @approval("finance") permit (principal, action == Action::"up:refund", resource);
    @id("wire") @approval("treasury") permit (principal, action == Action::"up:wire", resource);
  )");
  plan::PlanBook book(clock_);
  PipelineDeps deps = Deps(audit_.get());
  deps.plans = &book;
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  // The wire step claims "finance" (as if the policy had changed since): it does not cover a
  // call that needs treasury.
  const std::string id = SubmitPlan(book, {Step("up:refund", 1, "finance"), Step("up:wire", 1, "finance")}, false);
  auto pending = pipeline.Call(caller, MakeAction("refund", ActionClass::kWrite), invoker);
  EXPECT_EQ(pending.outcome.error, ErrorCode::kPlanViolation);
  EXPECT_NE(pending.decision.reason.find("awaiting approval"), std::string::npos) << pending.decision.reason;
  ASSERT_TRUE(book.Activate(id, "bob").ok());
  auto refund = pipeline.Call(caller, MakeAction("refund", ActionClass::kWrite), invoker);
  ASSERT_TRUE(refund.decision.allowed()) << refund.decision.reason;
  Json approval = *FindRecord("call.decided", refund.decision.id).Find("approval");
  EXPECT_EQ(approval.GetString("plan"), id);
  EXPECT_EQ(approval.GetString("group"), "finance");
  auto wire = pipeline.Call(caller, MakeAction("wire", ActionClass::kWrite), invoker);
  EXPECT_EQ(wire.decision.kind, Decision::Kind::kApprovalRequired);  // no book: refused as such
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, DecideStepClassifiesAnActionWithItsArgumentsUnknown) {
  SetPolicies(R"(
    @id("read") permit (principal, action == Action::"up:get_doc", resource);
    @id("refund") @approval("finance") permit (principal, action == Action::"up:refund", resource);
    @id("small") permit (principal, action == Action::"up:pay", resource) when { context.args.amount < 100 };
    @id("all-drops") permit (principal, action == Action::"up:drop", resource);
    @id("no-drops") forbid (principal == Agent::"bot", action == Action::"up:drop", resource);
    @id("prod-guard") forbid (principal, action == Action::"up:get_doc", resource) when { context.args.env == "prod" };
  )");
  Caller caller = MustAuthenticate(RootClaims());
  using K = StepVerdict::Kind;
  // get_doc: permitted, but a forbid looks at the arguments -> decided per call.
  EXPECT_EQ(pipeline_->DecideStep(caller, MakeAction("get_doc")).kind, K::kConditional);
  StepVerdict refund = pipeline_->DecideStep(caller, MakeAction("refund", ActionClass::kWrite));
  EXPECT_EQ(refund.kind, K::kApproval);
  EXPECT_EQ(refund.approval_group, "finance");
  EXPECT_EQ(refund.policy, "refund");
  EXPECT_EQ(pipeline_->DecideStep(caller, MakeAction("pay", ActionClass::kWrite)).kind, K::kConditional);
  StepVerdict drop = pipeline_->DecideStep(caller, MakeAction("drop", ActionClass::kDestructive));
  EXPECT_EQ(drop.kind, K::kDeny);
  EXPECT_NE(drop.reason.find("no-drops"), std::string::npos) << drop.reason;
  StepVerdict none = pipeline_->DecideStep(caller, MakeAction("rename"));
  EXPECT_EQ(none.kind, K::kDeny);
  EXPECT_EQ(none.code, ErrorCode::kPolicyDenied);
  Caller narrow = MustAuthenticate(RootClaims({"up:get_doc"}));
  StepVerdict scoped = pipeline_->DecideStep(narrow, MakeAction("refund", ActionClass::kWrite));
  EXPECT_EQ(scoped.kind, K::kDeny);
  EXPECT_EQ(scoped.code, ErrorCode::kOutOfScope);
  SetPolicies("permit (principal, action, resource);");
  EXPECT_EQ(pipeline_->DecideStep(caller, MakeAction("rename")).kind, K::kAllow);
}

TEST_F(PipelineTest, ForwardedCallsCarryASignedTxnTokenForTheirUpstreamOnly) {
  SetPolicies("permit (principal, action, resource);");
  identity::TxnTokenIssuer txn(*keys_, kIssuer);
  const std::map<std::string, std::string, std::less<>> audiences = {{"up", "https://up.example"}};
  PipelineDeps deps = Deps(audit_.get());
  deps.txn_tokens = &txn;
  deps.txn_token_audiences = &audiences;
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  Json args = Json::MakeObject();
  args.Set("id", "DOC-1");
  auto r = pipeline.Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker);
  ASSERT_TRUE(r.decision.allowed()) << r.decision.reason;
  // Another upstream, not configured for transaction tokens, gets none.
  ASSERT_TRUE(pipeline.Call(caller, MakeAction("get_doc", ActionClass::kRead, args, "other"), invoker).decision.allowed());
  const std::vector<std::string> tokens = invoker.txn_tokens();
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_TRUE(tokens[1].empty());

  const std::string& token = tokens[0];
  const size_t dot1 = token.find('.');
  const size_t dot2 = token.rfind('.');
  ASSERT_NE(dot1, dot2);
  auto header = Json::Parse(*core::Base64UrlDecode(token.substr(0, dot1)));
  auto payload = Json::Parse(*core::Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1)));
  ASSERT_TRUE(header.ok() && payload.ok());
  EXPECT_EQ(header->GetString("typ"), "txntoken+jwt");
  std::shared_ptr<const identity::JwsKey> key = keys_->Active();
  EXPECT_EQ(header->GetString("kid"), key->kid());
  EXPECT_TRUE(key->Verify(token.substr(0, dot2), *core::Base64UrlDecode(token.substr(dot2 + 1))));
  EXPECT_EQ(payload->GetString("iss"), kIssuer);
  EXPECT_EQ(payload->GetString("aud"), "https://up.example");
  EXPECT_EQ(payload->GetString("txn"), r.decision.id);
  EXPECT_EQ(payload->GetString("sub"), "alice");
  EXPECT_EQ(payload->GetString("req_wl"), "bot");
  EXPECT_EQ(payload->GetString("scope"), "up:get_doc");
  EXPECT_EQ(payload->GetInt("exp", 0) - payload->GetInt("iat", 0), core::kTxnTokenTtlSecondsDefault);
  const Json* tctx = payload->FindObject("tctx");
  ASSERT_NE(tctx, nullptr);
  EXPECT_EQ(tctx->GetString("action"), "up:get_doc");
  EXPECT_EQ(tctx->GetString("args_sha256"), core::Sha256Hex(args.Canonical()));
  EXPECT_EQ(tctx->GetString("sid"), kRootSid);
  EXPECT_EQ(tctx->GetString("task"), "SUP-1");
}

TEST_F(PipelineTest, AnOpenCircuitBreakerRefusesWithoutForwarding) {
  SetPolicies("permit (principal, action, resource);");
  CircuitBreakerOptions o;
  o.failure_threshold = 2;
  o.cool_down_micros = 60LL * 1000 * 1000;
  CircuitBreaker breaker("up", o, clock_);
  std::map<std::string, CircuitBreaker*, std::less<>> breakers{{"up", &breaker}};
  PipelineDeps deps = Deps(audit_.get());
  deps.breakers = &breakers;
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  invoker.outcome = core::Outcome{};
  invoker.outcome.ok = false;
  invoker.outcome.error = ErrorCode::kUpstreamError;
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::kOpen);
  auto refused = pipeline.Call(caller, MakeAction("get_doc"), invoker);
  EXPECT_FALSE(refused.decision.allowed());
  EXPECT_EQ(refused.outcome.error, ErrorCode::kUpstreamUnavailable);
  EXPECT_EQ(invoker.calls(), 2u);
  EXPECT_NE(refused.decision.reason.find("circuit breaker is open"), std::string::npos) << refused.decision.reason;
  // A tool-level error is an answer: it does not count as an upstream failure.
  clock_.AdvanceSeconds(61);
  invoker.outcome = core::Outcome{};
  invoker.outcome.ok = true;
  invoker.outcome.tool_error = true;
  EXPECT_TRUE(pipeline.Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  EXPECT_EQ(breaker.state(), CircuitBreaker::State::kClosed);
}

TEST_F(PipelineTest, HashOnlyPayloadsAndSideEffectReferences) {
  SetPolicies("permit (principal, action, resource);");
  AuditRules rules;
  rules.SetUpstream("up", AuditRule{false, {{"pr_url", "/content/0/text/html_url"}, {"missing", "/nope"}}});
  rules.SetTool("up:secret_tool", AuditRule{true, {}});
  PipelineDeps deps = Deps(audit_.get());
  deps.audit_rules = &rules;
  Pipeline pipeline(deps);
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  invoker.outcome = core::Outcome{};
  invoker.outcome.ok = true;
  auto result = Json::Parse(R"({"content":[{"type":"text","text":"{\"html_url\":\"https://example.test/pr/7\"}"}]})");
  ASSERT_TRUE(result.ok());
  invoker.outcome.result = *result;
  Json args = Json::MakeObject();
  args.Set("title", "t");
  auto full = pipeline.Call(caller, MakeAction("open_pr", ActionClass::kWrite, args), invoker);
  Json completed = FindRecord("call.completed", full.decision.id);
  ASSERT_TRUE(completed.is_object());
  EXPECT_EQ(completed.Find("side_effects")->GetString("pr_url"), "https://example.test/pr/7");
  EXPECT_EQ(completed.Find("side_effects")->Find("missing"), nullptr);
  EXPECT_TRUE(completed.Find("result") != nullptr);
  EXPECT_TRUE(FindRecord("call.decided", full.decision.id).Find("args") != nullptr);

  auto hashed = pipeline.Call(caller, MakeAction("secret_tool", ActionClass::kRead, args), invoker);
  Json decided = FindRecord("call.decided", hashed.decision.id);
  EXPECT_EQ(decided.Find("args"), nullptr);
  EXPECT_EQ(decided.GetString("payload"), "hash");
  EXPECT_EQ(decided.GetString("args_hash"), core::Sha256Hex(args.Canonical()));
  EXPECT_EQ(FindRecord("call.completed", hashed.decision.id).Find("result"), nullptr);
}

TEST(ExtractSideEffect, FollowsPointersIntoObjectsArraysAndJsonText) {
  auto j = Json::Parse(R"({"a":{"b~/c":[10,{"d":"x"}]},"t":"{\"k\":[1,2]}"})");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(ExtractSideEffect(*j, "/a/b~0~1c/1/d")->as_string(), "x");
  EXPECT_EQ(ExtractSideEffect(*j, "/t/k/1")->as_int(), 2);
  EXPECT_FALSE(ExtractSideEffect(*j, "/a/b~0~1c/2").has_value());
  EXPECT_FALSE(ExtractSideEffect(*j, "/a/b~0~1c/01").has_value());
  EXPECT_FALSE(ExtractSideEffect(*j, "a").has_value());
  EXPECT_TRUE(ExtractSideEffect(*j, "")->is_object());
}

// --- authentication and revocation ---------------------------------------------------------------

TEST_F(PipelineTest, RevokedSessionIsRefused) {
  SetPolicies("permit (principal, action, resource);");
  const std::string token = Mint(RootClaims());
  ASSERT_TRUE(pipeline_->Authenticate(token).ok());
  Caller before = MustAuthenticate(RootClaims());

  auto revoked = revocations_->Revoke(*store_, revocation::Kind::kSession, kRootSid, "test",
                                      clock_.NowUnixSeconds());
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;

  auto after = pipeline_->Authenticate(token);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ErrorCode::kTokenRevoked);

  // A caller authenticated before the revocation is stopped before forwarding.
  RecordingInvoker invoker;
  auto r = pipeline_->Call(before, MakeAction("get_doc"), invoker);
  EXPECT_FALSE(r.decision.allowed());
  EXPECT_EQ(r.decision.code, ErrorCode::kTokenRevoked);
  EXPECT_EQ(r.outcome.error, ErrorCode::kTokenRevoked);
  EXPECT_EQ(invoker.calls(), 0u);
  EXPECT_TRUE(FindRecord("call.cancelled", r.decision.id).is_object());
}

TEST_F(PipelineTest, RevokedAncestorRefusesChild) {
  ASSERT_TRUE(store_->CreateSession(StoreSession("ses_child", kRootSid, "helper")).ok());
  identity::Claims child = RootClaims();
  child.client_id = "helper";
  child.sid = "ses_child";
  child.act = {identity::Actor{"agent:helper", "ses_child"},
               identity::Actor{"agent:bot", kRootSid}};
  const std::string child_token = Mint(child);
  const std::string root_token = Mint(RootClaims());
  ASSERT_TRUE(pipeline_->Authenticate(child_token).ok());

  ASSERT_TRUE(
      revocations_
          ->Revoke(*store_, revocation::Kind::kSession, kRootSid, "tree", clock_.NowUnixSeconds())
          .ok());
  auto r = pipeline_->Authenticate(child_token);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTokenRevoked);
  EXPECT_EQ(pipeline_->Authenticate(root_token).error().code, ErrorCode::kTokenRevoked);
}

TEST_F(PipelineTest, RevokedChildLeavesParentAlone) {
  ASSERT_TRUE(store_->CreateSession(StoreSession("ses_child", kRootSid, "helper")).ok());
  identity::Claims child = RootClaims();
  child.client_id = "helper";
  child.sid = "ses_child";
  child.act = {identity::Actor{"agent:helper", "ses_child"},
               identity::Actor{"agent:bot", kRootSid}};
  ASSERT_TRUE(revocations_
                  ->Revoke(*store_, revocation::Kind::kSession, "ses_child", "leaf",
                           clock_.NowUnixSeconds())
                  .ok());
  EXPECT_EQ(pipeline_->Authenticate(Mint(child)).error().code, ErrorCode::kTokenRevoked);
  EXPECT_TRUE(pipeline_->Authenticate(Mint(RootClaims())).ok());
}

TEST_F(PipelineTest, RevokedAgentHumanTaskRefuse) {
  auto claims_for = [&](std::string agent, std::string human, std::string task) {
    identity::Claims c = RootClaims();
    c.client_id = agent;
    c.act = {identity::Actor{"agent:" + agent, c.sid}};
    c.sub = std::move(human);
    c.task = std::move(task);
    return c;
  };
  const std::string by_agent = Mint(claims_for("helper", "alice", "T-1"));
  const std::string by_human = Mint(claims_for("bot", "bob", "T-2"));
  const std::string by_task = Mint(claims_for("bot", "alice", "T-3"));
  const std::string untouched = Mint(claims_for("bot", "alice", "T-4"));
  const int64_t now = clock_.NowUnixSeconds();
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kAgent, "helper", "r", now).ok());
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kHuman, "bob", "r", now).ok());
  ASSERT_TRUE(revocations_->Revoke(*store_, revocation::Kind::kTask, "T-3", "r", now).ok());

  struct Case {
    const std::string* token;
    const char* kind;
  };
  for (const Case& c :
       {Case{&by_agent, "agent"}, Case{&by_human, "human"}, Case{&by_task, "task"}}) {
    auto r = pipeline_->Authenticate(*c.token);
    ASSERT_FALSE(r.ok()) << c.kind;
    EXPECT_EQ(r.error().code, ErrorCode::kTokenRevoked) << c.kind;
    EXPECT_NE(r.error().message.find(c.kind), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(pipeline_->Authenticate(untouched).ok());
}

TEST_F(PipelineTest, ExpiredTokenRefused) {
  identity::Claims c = RootClaims();
  c.exp = c.iat + 60;
  const std::string token = Mint(c);
  ASSERT_TRUE(pipeline_->Authenticate(token).ok());
  clock_.AdvanceSeconds(60 + core::kTokenClockSkewSeconds + 1);
  auto r = pipeline_->Authenticate(token);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTokenExpired);
}

TEST_F(PipelineTest, MissingOrMalformedTokenIsUnauthenticated) {
  EXPECT_EQ(pipeline_->Authenticate("").error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(pipeline_->Authenticate("not.a.token").error().code, ErrorCode::kUnauthenticated);
  std::string token = Mint(RootClaims());
  token.back() = token.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(pipeline_->Authenticate(token).error().code, ErrorCode::kUnauthenticated);
}

TEST_F(PipelineTest, TokenWithForeignChainIsRefused) {
  // The chain's current actor is not the token's client_id.
  identity::Claims c = RootClaims();
  c.act = {identity::Actor{"agent:helper", kRootSid}};
  auto r = pipeline_->Authenticate(Mint(c));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);

  // client_id is the innermost actor, not the outermost one.
  c.act = {identity::Actor{"agent:helper", "ses_child"}, identity::Actor{"agent:bot", kRootSid}};
  EXPECT_EQ(pipeline_->Authenticate(Mint(c)).error().code, ErrorCode::kUnauthenticated);

  // No chain at all.
  c.act.clear();
  EXPECT_EQ(pipeline_->Authenticate(Mint(c)).error().code, ErrorCode::kUnauthenticated);

  // An actor that is not an agent.
  c.act = {identity::Actor{"bot", kRootSid}};
  EXPECT_EQ(pipeline_->Authenticate(Mint(c)).error().code, ErrorCode::kUnauthenticated);
  c.act = {identity::Actor{"agent:bot", kRootSid}, identity::Actor{"human:alice", "ses_x"}};
  EXPECT_EQ(pipeline_->Authenticate(Mint(c)).error().code, ErrorCode::kUnauthenticated);
}

TEST_F(PipelineTest, UnknownAgentDenied) {
  SetPolicies("permit (principal, action, resource);");
  identity::Claims c = RootClaims();
  c.client_id = "ghost";
  c.act = {identity::Actor{"agent:ghost", kRootSid}};
  auto caller = pipeline_->Authenticate(Mint(c));
  // Whatever Authenticate says, the call never reaches the upstream.
  if (caller.ok()) {
    RecordingInvoker invoker;
    auto r = pipeline_->Call(*caller, MakeAction("get_doc"), invoker);
    EXPECT_FALSE(r.decision.allowed());
    EXPECT_NE(r.decision.reason.find("ghost"), std::string::npos) << r.decision.reason;
    EXPECT_EQ(invoker.calls(), 0u);
  }

  // An unknown human is refused at authentication; a Caller built around the check is still
  // denied by the decision.
  identity::Claims h = RootClaims();
  h.sub = "mallory";
  auto refused = pipeline_->Authenticate(Mint(h));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);
  Caller hc{std::make_shared<identity::Claims>(h), {}};
  hc.chain = {h.client_id};
  RecordingInvoker invoker;
  auto r = pipeline_->Call(hc, MakeAction("get_doc"), invoker);
  EXPECT_FALSE(r.decision.allowed());
  EXPECT_EQ(invoker.calls(), 0u);
}

// pipeline.h documents Authenticate's errors as "kUnauthenticated (..., unknown agent)".
TEST_F(PipelineTest, AuthenticateRefusesUnknownAgent) {
  identity::Claims c = RootClaims();
  c.client_id = "ghost";
  c.act = {identity::Actor{"agent:ghost", kRootSid}};
  auto caller = pipeline_->Authenticate(Mint(c));
  ASSERT_FALSE(caller.ok()) << "a token of an unregistered agent authenticated";
  EXPECT_EQ(caller.error().code, ErrorCode::kUnauthenticated);
}

// --- arguments, results and context --------------------------------------------------------------

TEST_F(PipelineTest, FloatArgumentsAreRefusedWithBadRequest) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  Json args = Json::MakeObject();
  args.Set("amount", 1.5);
  auto r = pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite, args), invoker);
  EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny);
  EXPECT_EQ(r.decision.code, ErrorCode::kBadRequest);
  EXPECT_EQ(r.outcome.error, ErrorCode::kBadRequest);
  EXPECT_EQ(invoker.calls(), 0u);

  Json nested = Json::MakeObject();
  Json inner = Json::MakeObject();
  inner.Set("ratio", 0.25);
  nested.Set("options", std::move(inner));
  EXPECT_EQ(pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite, nested), invoker)
                .decision.code,
            ErrorCode::kBadRequest);
  EXPECT_EQ(invoker.calls(), 0u);
}

// An agent writes the arguments: a Cedar JSON escape in them is plain data, never an entity or
// an extension value (policy::ValueFromPlainJson), so no argument can compare equal to the
// principal or pass for an ip() a policy checks.
TEST_F(PipelineTest, EscapesInArgumentsArePlainRecords) {
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto forged = Json::Parse(R"({"owner": {"__entity": {"type": "Human", "id": "alice"}},
                                "addr": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}})");
  ASSERT_TRUE(forged.ok());
  // Each would admit the call if the escapes were read as Cedar values.
  for (const char* policies : {
           R"(permit (principal, action, resource) when { context.args.owner == context.session.human };)",
           R"(permit (principal, action, resource) when { context.args.addr.isInRange(ip("10.0.0.0/8")) };)"}) {
    SetPolicies(policies);
    auto r = pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite, *forged), invoker);
    EXPECT_EQ(r.decision.kind, Decision::Kind::kDeny) << policies;
    EXPECT_EQ(r.decision.code, ErrorCode::kPolicyDenied) << policies;
  }
  EXPECT_EQ(invoker.calls(), 0u);

  // The escapes are records with their key as an attribute.
  SetPolicies(R"(
    permit (principal, action, resource)
      when { context.args.owner has __entity && context.args.owner.__entity.id == "alice" &&
             context.args.addr["__extn"].fn == "ip" };
  )");
  EXPECT_TRUE(pipeline_->Call(caller, MakeAction("refund", ActionClass::kWrite, *forged), invoker)
                  .decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, NonObjectArgumentsAreTreatedAsEmpty) {
  SetPolicies("permit (principal, action, resource) when { context.args == {} };");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  EXPECT_TRUE(pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, Json()), invoker)
                  .decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, ResultSecretsAreScrubbed) {
  SetPolicies("permit (principal, action, resource);");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  Json result = Json::MakeObject();
  Json content = Json::MakeArray();
  Json text = Json::MakeObject();
  text.Set("type", "text");
  text.Set("text", std::string("the key is ") + kSecret + "!");
  content.Push(std::move(text));
  result.Set("content", std::move(content));
  result.Set(kSecret, "as a key");
  invoker.outcome.result = result;

  Json args = Json::MakeObject();
  args.Set("note", std::string("pass ") + kSecret);
  auto r = pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker);
  ASSERT_TRUE(r.outcome.ok);
  const std::string dumped = r.outcome.result.Dump();
  EXPECT_EQ(dumped.find(kSecret), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("the key is [REDACTED]!"), std::string::npos) << dumped;

  const auto lines = AuditLines();
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) EXPECT_EQ(line.find(kSecret), std::string::npos) << line;
  Json decided = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(decided.is_object());
  EXPECT_EQ(decided.FindObject("args")->GetString("note"), "pass [REDACTED]");
}

TEST_F(PipelineTest, DecisionRecordsNameDeterminingPolicies) {
  SetPolicies(std::string(kHumanAndAgentPermit) + R"(
    @id("never-matches") forbid (principal, action, resource) when { context.args has nope };
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  auto r = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  ASSERT_TRUE(r.decision.allowed()) << r.decision.reason;
  ASSERT_EQ(r.decision.checks.size(), 2u);
  EXPECT_EQ(r.decision.checks[0].principal, "Human::\"alice\"");
  EXPECT_EQ(r.decision.checks[0].permits, std::vector<std::string>{"human-read"});
  EXPECT_EQ(r.decision.checks[1].principal, "Agent::\"bot\"");
  EXPECT_EQ(r.decision.checks[1].permits, std::vector<std::string>{"agent-read"});

  Json decided = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(decided.is_object());
  const Json* d = decided.FindObject("decision");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->GetString("decision"), "allow");
  EXPECT_EQ(d->GetString("id"), r.decision.id);
  EXPECT_EQ(*d->Find("scope_ok"), Json(true));
  const Json* checks = d->FindArray("checks");
  ASSERT_NE(checks, nullptr);
  ASSERT_EQ(checks->as_array().size(), 2u);
  EXPECT_EQ(checks->as_array()[0].GetString("principal"), "Human::\"alice\"");
  EXPECT_EQ(checks->as_array()[0].FindArray("permits")->as_array()[0], Json("human-read"));
  EXPECT_EQ(checks->as_array()[1].FindArray("permits")->as_array()[0], Json("agent-read"));

  // A denial names the forbid.
  SetPolicies(std::string(kHumanAndAgentPermit) +
              R"(@id("stop") forbid (principal == Agent::"bot", action, resource);)");
  auto denied = pipeline_->Call(caller, MakeAction("get_doc"), invoker);
  ASSERT_FALSE(denied.decision.allowed());
  Json rec = FindRecord("call.decided", denied.decision.id);
  ASSERT_TRUE(rec.is_object());
  const Json* dchecks = rec.FindObject("decision")->FindArray("checks");
  ASSERT_NE(dchecks, nullptr);
  ASSERT_EQ(dchecks->as_array().size(), 2u);
  EXPECT_EQ(dchecks->as_array()[1].GetString("decision"), "deny");
  EXPECT_EQ(dchecks->as_array()[1].FindArray("forbids")->as_array()[0], Json("stop"));
}

TEST_F(PipelineTest, ContextCarriesArgsSessionTime) {
  clock_.SetUnixSeconds(1767272400);  // Thursday 2026-01-01 13:00:00 UTC
  SetPolicies(R"(
    @id("ctx") permit (principal, action, resource) when {
      context.args.x == 7 &&
      context.session.task == "SUP-1" &&
      context.session.id == "ses_root" &&
      context.session.depth == 0 &&
      context.session.human == Human::"alice" &&
      context.session.model.tier == "frontier" &&
      context.time.hour_utc == 13 &&
      context.time.weekday == 4 &&
      context.time.unix == 1767272400 &&
      context.request.protocol == "mcp" &&
      context.request.method == "tools/call" &&
      context.request.path == "/mcp/up"
    };
  )");
  identity::Claims c = RootClaims();
  c.model = identity::ModelInfo{"anthropic", "claude-opus-4-5", "frontier"};
  Caller caller = MustAuthenticate(c);
  RecordingInvoker invoker;
  Json args = Json::MakeObject();
  args.Set("x", 7);
  auto r = pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker);
  EXPECT_TRUE(r.decision.allowed())
      << r.decision.reason << " "
      << (r.decision.checks.empty() || r.decision.checks[0].errors.empty()
              ? ""
              : r.decision.checks[0].errors[0]);
  Json decided = FindRecord("call.decided", r.decision.id);
  ASSERT_TRUE(decided.is_object());
  EXPECT_EQ(decided.FindObject("model")->GetString("name"), "claude-opus-4-5");

  args.Set("x", 8);
  EXPECT_FALSE(pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker)
                   .decision.allowed());
  args.Set("x", 7);
  clock_.AdvanceSeconds(3600);  // 14:00: the time condition no longer holds
  EXPECT_FALSE(pipeline_->Call(caller, MakeAction("get_doc", ActionClass::kRead, args), invoker)
                   .decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, TypedResourceSitsUnderItsUpstream) {
  SetPolicies(R"(
    @id("repo") permit (principal, action, resource == Repo::"acme/web");
    @id("upstream") forbid (principal, action, resource in Upstream::"up") when { context.args has block };
  )");
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  core::Action a = MakeAction("merge", ActionClass::kWrite);
  a.resource = core::EntityRef{"Repo", "acme/web"};
  EXPECT_TRUE(pipeline_->Call(caller, a, invoker).decision.allowed());
  a.args.Set("block", true);
  EXPECT_FALSE(pipeline_->Call(caller, a, invoker).decision.allowed())
      << "the typed resource is not in its upstream";
  core::Action other = MakeAction("merge", ActionClass::kWrite);
  other.resource = core::EntityRef{"Repo", "acme/api"};
  EXPECT_FALSE(pipeline_->Call(caller, other, invoker).decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

TEST_F(PipelineTest, PolicySwapIsSeenByTheNextCall) {
  Caller caller = MustAuthenticate(RootClaims());
  RecordingInvoker invoker;
  EXPECT_FALSE(pipeline_->Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  SetPolicies("permit (principal, action, resource);");
  EXPECT_TRUE(pipeline_->Call(caller, MakeAction("get_doc"), invoker).decision.allowed());
  EXPECT_EQ(invoker.calls(), 1u);
}

}  // namespace
}  // namespace mandate::gateway
