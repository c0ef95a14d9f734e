#include "mandate/approval/approval.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mandate/core/cancel.h"
#include "mandate/core/clock.h"
#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"

namespace mandate::approval {
namespace {

using core::ErrorCode;
using core::Json;
using std::chrono::milliseconds;

constexpr int64_t kMicros = 1000000;
constexpr int64_t kExpirySeconds = 600;  // the test groups' expiry

ApprovalGroup Group(std::string name, uint32_t min_approvers = 1, bool exclude_requester = true) {
  ApprovalGroup g;
  g.name = std::move(name);
  g.min_approvers = min_approvers;
  g.exclude_requester = exclude_requester;
  g.wait_micros = 60 * kMicros;
  g.expiry_micros = kExpirySeconds * kMicros;
  return g;
}

Json Args(const std::string& amount) {
  Json a = Json::MakeObject();
  a.Set("customer", "cus_42");
  a.Set("amount", amount);
  return a;
}

ApprovalRequest Req(const Json& args, std::string sid = "ses_child", std::string group = "finance",
                    std::string action = "stripe:create_refund") {
  ApprovalRequest r;
  r.run = "ses_root";
  r.sid = std::move(sid);
  r.agent = "refund-bot";
  r.human = "alice";
  r.task = "SUP-7";
  r.action_id = std::move(action);
  r.args_sha256 = core::Sha256Hex(args.Canonical());
  r.args_display = args;
  r.group = std::move(group);
  r.policy = "refunds-need-finance";
  r.decision_id = "dec_1";
  return r;
}

// Records every event, thread-safely.
class Events {
 public:
  EventSink Sink() {
    return [this](const Json& ev) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(ev);
    };
  }
  std::vector<Json> All() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::vector<std::string> Types() const {
    std::vector<std::string> types;
    for (const Json& ev : All()) types.push_back(ev.GetString("type"));
    return types;
  }
  Json Last() const { return All().back(); }
  size_t size() const { return All().size(); }

 private:
  mutable std::mutex mu_;
  std::vector<Json> events_;
};

std::unique_ptr<ApprovalBook> Book(std::vector<ApprovalGroup> groups, const core::Clock& clock,
                                   EventSink sink = {}) {
  auto book = ApprovalBook::Create(std::move(groups), clock, std::move(sink));
  EXPECT_TRUE(book.ok()) << book.error().message;
  return std::move(book).value();
}

Ticket MustRequest(ApprovalBook& book, const ApprovalRequest& r) {
  auto t = book.Request(r);
  EXPECT_TRUE(t.ok()) << t.error().message;
  return t.ok() ? *t : Ticket{};
}

std::string State(ApprovalBook& book, const std::string& id) {
  auto v = book.Get(id);
  return v ? v->GetString("state") : "unknown";
}

// Polls until `n` calls are parked on `id` (Wait registers before it blocks).
void AwaitParked(ApprovalBook& book, const std::string& id, int64_t n) {
  for (int i = 0; i < 10000; ++i) {
    auto v = book.Get(id);
    if (v && v->GetInt("parked", -1) == n) return;
    std::this_thread::sleep_for(milliseconds(1));
  }
  FAIL() << "never saw " << n << " parked calls on " << id;
}

std::vector<std::string> Strings(const Json* array) {
  std::vector<std::string> out;
  if (array == nullptr) return out;
  for (const Json& s : array->as_array()) out.push_back(s.as_string());
  return out;
}

// --- Configuration ---------------------------------------------------------------------------

TEST(ApprovalBook, CreateRejectsInvalidGroups) {
  core::FakeClock clock;
  auto invalid = [&](ApprovalGroup g, const std::string& part) {
    auto book = ApprovalBook::Create({g}, clock);
    ASSERT_FALSE(book.ok()) << part;
    EXPECT_EQ(book.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(book.error().message.find(part), std::string::npos) << book.error().message;
  };
  invalid(Group(""), "name");
  invalid(Group(std::string(core::kConfigNameBytesMax + 1, 'g')), "name");
  invalid(Group("finance", 0), "min_approvers");
  invalid(Group("finance", core::kApprovalMinApproversMax + 1), "min_approvers");
  ApprovalGroup g = Group("finance");
  g.wait_micros = -1;
  invalid(g, "wait");
  g = Group("finance");
  g.wait_micros = core::kApprovalWaitMillisMax * 1000 + 1;
  invalid(g, "wait");
  g = Group("finance");
  g.expiry_micros = core::kApprovalExpiryMicrosMin - 1;
  invalid(g, "expiry");
  g = Group("finance");
  g.expiry_micros = core::kApprovalExpiryMicrosMax + 1;
  invalid(g, "expiry");
  g = Group("finance");
  g.wait_micros = 120 * kMicros;
  g.expiry_micros = 60 * kMicros;
  invalid(g, "expiry must not be shorter than wait");

  auto twice = ApprovalBook::Create({Group("finance"), Group("finance")}, clock);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("declared twice"), std::string::npos);

  std::vector<ApprovalGroup> many;
  for (size_t i = 0; i <= core::kApprovalGroupsMax; ++i)
    many.push_back(Group("g" + std::to_string(i)));
  EXPECT_EQ(ApprovalBook::Create(many, clock).error().code, ErrorCode::kBadRequest);

  EXPECT_TRUE(ApprovalBook::Create({}, clock).ok());
  ApprovalGroup defaults;
  defaults.name = "ops";
  EXPECT_TRUE(ApprovalBook::Create({defaults}, clock).ok());
}

// --- Requests --------------------------------------------------------------------------------

TEST(ApprovalBook, RequestCreatesAPendingApprovalAndEmitsRequested) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2)}, clock, events.Sink());
  ApprovalRequest r = Req(Args("100"));
  Ticket t = MustRequest(*book, r);
  EXPECT_EQ(t.id.rfind("apr_", 0), 0u) << t.id;
  EXPECT_EQ(t.state, ApprovalState::kPending);
  EXPECT_TRUE(t.created);
  EXPECT_EQ(t.wait_micros, 60 * kMicros);
  EXPECT_EQ(t.expires_at_unix_micros, clock.NowUnixMicros() + kExpirySeconds * kMicros);
  EXPECT_EQ(book->pending_count(), 1u);

  ASSERT_EQ(events.Types(), std::vector<std::string>{"approval.requested"});
  Json ev = events.Last();
  EXPECT_EQ(ev.GetString("approval"), t.id);
  EXPECT_EQ(ev.GetString("group"), "finance");
  EXPECT_EQ(ev.GetString("run"), "ses_root");
  EXPECT_EQ(ev.GetString("sid"), "ses_child");
  EXPECT_EQ(ev.GetString("agent"), "refund-bot");
  EXPECT_EQ(ev.GetString("human"), "alice");
  EXPECT_EQ(ev.GetString("task"), "SUP-7");
  EXPECT_EQ(ev.GetString("action"), "stripe:create_refund");
  EXPECT_EQ(ev.GetString("args_sha256"), r.args_sha256);
  EXPECT_EQ(*ev.Find("args"), Args("100"));
  EXPECT_EQ(ev.GetString("policy"), "refunds-need-finance");
  EXPECT_EQ(ev.GetString("decision_id"), "dec_1");
  EXPECT_EQ(ev.GetInt("min_approvers", 0), 2);
  EXPECT_EQ(*ev.Find("exclude_requester"), Json(true));
  EXPECT_EQ(ev.GetInt("created_at", 0), clock.NowUnixMicros());
  EXPECT_EQ(ev.GetInt("expires_at", 0), t.expires_at_unix_micros);
  EXPECT_TRUE(ev.CheckSerializable().ok());
}

TEST(ApprovalBook, RetriesWhilePendingJoinTheSameApproval) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket first = MustRequest(*book, Req(Args("100")));
  clock.AdvanceSeconds(5);
  Ticket retry = MustRequest(*book, Req(Args("100")));
  Ticket again = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(retry.id, first.id);
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(retry.state, ApprovalState::kPending);
  EXPECT_FALSE(retry.created);
  EXPECT_EQ(retry.expires_at_unix_micros, first.expires_at_unix_micros);
  EXPECT_EQ(book->pending_count(), 1u);
  EXPECT_EQ(events.Types(), std::vector<std::string>{"approval.requested"});
}

TEST(ApprovalBook, UnknownGroupIsNotFound) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  auto t = book->Request(Req(Args("1"), "ses_child", "legal"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kNotFound);
  EXPECT_NE(t.error().message.find("legal"), std::string::npos);
  EXPECT_EQ(book->pending_count(), 0u);
  EXPECT_EQ(events.size(), 0u);
}

TEST(ApprovalBook, RejectsMalformedRequests) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  auto code = [&](const ApprovalRequest& r) {
    auto t = book->Request(r);
    return t.ok() ? std::optional<ErrorCode>() : std::optional<ErrorCode>(t.error().code);
  };
  for (std::string ApprovalRequest::*field :
       {&ApprovalRequest::run, &ApprovalRequest::sid, &ApprovalRequest::agent,
        &ApprovalRequest::human, &ApprovalRequest::action_id}) {
    ApprovalRequest r = Req(Args("1"));
    (r.*field).clear();
    EXPECT_EQ(code(r), ErrorCode::kInternal);
  }
  ApprovalRequest r = Req(Args("1"));
  r.group.clear();
  EXPECT_EQ(code(r), ErrorCode::kInternal);

  r = Req(Args("1"));
  r.args_sha256 = "abc";
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);
  r.args_sha256 = std::string(64, 'A');  // upper case is not the canonical form
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);
  r.args_sha256 = std::string(63, 'a') + "g";
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);

  r = Req(Args("1"));
  r.task = std::string(core::kApprovalFieldBytesMax + 1, 't');
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);
  r = Req(Args("1"));
  r.agent = "bad\xff";
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);

  r = Req(Args(std::string(core::kApprovalArgsBytesMax, 'x')));
  EXPECT_EQ(code(r), ErrorCode::kPayloadTooLarge);

  Json deep;
  Json* at = &deep;
  for (size_t i = 0; i <= core::kJsonDepthMax; ++i) at = &at->Push(Json::MakeArray());
  r = Req(Args("1"));
  r.args_display = deep;
  EXPECT_EQ(code(r), ErrorCode::kBadRequest);

  EXPECT_EQ(book->pending_count(), 0u);
  EXPECT_EQ(events.size(), 0u);

  r = Req(Args("1"));
  r.task.clear();
  r.policy.clear();
  r.decision_id.clear();
  EXPECT_EQ(code(r), std::nullopt);  // optional fields may be empty
}

// --- Votes -----------------------------------------------------------------------------------

TEST(ApprovalBook, TwoPersonRule) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2, true)}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));

  // The requester (the human the agent acts for) cannot approve their own agent's call.
  auto own = book->Approve(t.id, "alice");
  ASSERT_FALSE(own.ok());
  EXPECT_EQ(own.error().code, ErrorCode::kPolicyDenied);
  EXPECT_EQ(State(*book, t.id), "pending");

  auto bob = book->Approve(t.id, "bob");
  ASSERT_TRUE(bob.ok()) << bob.error().message;
  EXPECT_EQ(bob->state, ApprovalState::kPending);
  EXPECT_TRUE(bob->counted);
  EXPECT_EQ(bob->approvers, std::vector<std::string>{"bob"});
  EXPECT_EQ(bob->min_approvers, 2u);
  EXPECT_EQ(State(*book, t.id), "pending");

  // The same approver twice still counts once.
  auto bob_again = book->Approve(t.id, "bob");
  ASSERT_TRUE(bob_again.ok());
  EXPECT_EQ(bob_again->state, ApprovalState::kPending);
  EXPECT_FALSE(bob_again->counted);
  EXPECT_EQ(bob_again->approvers, std::vector<std::string>{"bob"});
  EXPECT_EQ(State(*book, t.id), "pending");
  EXPECT_EQ(MustRequest(*book, Req(Args("100"))).state, ApprovalState::kPending);

  auto carol = book->Approve(t.id, "carol");
  ASSERT_TRUE(carol.ok());
  EXPECT_EQ(carol->state, ApprovalState::kGranted);
  EXPECT_EQ(carol->approvers, (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(State(*book, t.id), "granted");

  EXPECT_EQ(events.Types(), (std::vector<std::string>{"approval.requested", "approval.approved",
                                                      "approval.approved", "approval.decided"}));
  std::vector<Json> all = events.All();
  EXPECT_EQ(all[1].GetString("approver"), "bob");
  EXPECT_EQ(Strings(all[1].FindArray("approvers")), std::vector<std::string>{"bob"});
  EXPECT_EQ(all[1].GetInt("min_approvers", 0), 2);
  EXPECT_EQ(all[2].GetString("approver"), "carol");
  EXPECT_EQ(Strings(all[2].FindArray("approvers")), (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(all[3].GetString("state"), "granted");
  EXPECT_EQ(Strings(all[3].FindArray("approvers")), (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(all[3].GetInt("usable_until", 0), clock.NowUnixMicros() + kExpirySeconds * kMicros);
  for (const Json& ev : all) {
    EXPECT_EQ(ev.GetString("approval"), t.id);
    EXPECT_EQ(ev.GetString("human"), "alice");
  }

  // The retry with the same arguments proceeds.
  Ticket retry = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(retry.id, t.id);
  EXPECT_EQ(retry.state, ApprovalState::kGranted);
}

TEST(ApprovalBook, RequesterMayApproveWhenTheGroupDoesNotExcludeThem) {
  core::FakeClock clock;
  auto book = Book({Group("finance", 1, false)}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  auto own = book->Approve(t.id, "alice");
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(own->state, ApprovalState::kGranted);
}

TEST(ApprovalBook, RequesterMayDenyTheirOwnAgentsCall) {
  core::FakeClock clock;
  auto book = Book({Group("finance", 2, true)}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  auto denied = book->Deny(t.id, "alice", "not what I asked for");
  ASSERT_TRUE(denied.ok()) << denied.error().message;
  EXPECT_EQ(denied->state, ApprovalState::kDenied);
}

TEST(ApprovalBook, OneDenialDecidesWhateverTheVotesSoFar) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2)}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  auto denied = book->Deny(t.id, "carol", "refund too large");
  ASSERT_TRUE(denied.ok());
  EXPECT_EQ(denied->state, ApprovalState::kDenied);
  EXPECT_EQ(denied->approvers, std::vector<std::string>{"bob"});
  EXPECT_EQ(State(*book, t.id), "denied");
  Json ev = events.Last();
  EXPECT_EQ(ev.GetString("type"), "approval.decided");
  EXPECT_EQ(ev.GetString("state"), "denied");
  EXPECT_EQ(ev.GetString("denied_by"), "carol");
  EXPECT_EQ(ev.GetString("reason"), "refund too large");
  EXPECT_EQ(Strings(ev.FindArray("approvers")), std::vector<std::string>{"bob"});
  EXPECT_EQ(book->pending_count(), 0u);
}

TEST(ApprovalBook, UnknownApprovalIsNotFound) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  EXPECT_EQ(book->Approve("apr_nope", "bob").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(book->Deny("apr_nope", "bob", "").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(book->Get("apr_nope"), std::nullopt);
  EXPECT_EQ(book->Wait("apr_nope", 0), ApprovalState::kExpired);
  EXPECT_EQ(book->Wait("apr_nope", 10 * kMicros), ApprovalState::kExpired);  // at once
}

TEST(ApprovalBook, DecidedApprovalCannotBeVotedOn) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket granted = MustRequest(*book, Req(Args("1")));
  ASSERT_TRUE(book->Approve(granted.id, "bob").ok());
  Ticket expired = MustRequest(*book, Req(Args("3")));
  clock.AdvanceSeconds(kExpirySeconds);
  Ticket denied = MustRequest(*book, Req(Args("2")));
  ASSERT_TRUE(book->Deny(denied.id, "bob", "").ok());
  Ticket used = MustRequest(*book, Req(Args("4")));
  ASSERT_TRUE(book->Approve(used.id, "bob").ok());
  ASSERT_EQ(MustRequest(*book, Req(Args("4"))).state, ApprovalState::kGranted);
  const size_t events_before = events.size();

  auto conflict = [&](const std::string& id, const std::string& state) {
    auto a = book->Approve(id, "carol");
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.error().code, ErrorCode::kConflict);
    EXPECT_NE(a.error().message.find(state), std::string::npos) << a.error().message;
    auto d = book->Deny(id, "carol", "");
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().code, ErrorCode::kConflict);
  };
  conflict(granted.id, "expired");  // lapsed unused with the clock move
  conflict(denied.id, "denied");
  conflict(expired.id, "expired");
  conflict(used.id, "used");
  EXPECT_EQ(events.size(), events_before);

  // A fresh grant is a conflict too.
  Ticket fresh = MustRequest(*book, Req(Args("5")));
  ASSERT_TRUE(book->Approve(fresh.id, "bob").ok());
  conflict(fresh.id, "granted");
}

TEST(ApprovalBook, RejectsMalformedVotes) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("1")));
  EXPECT_EQ(book->Approve(t.id, "").error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(book->Approve(t.id, std::string(core::kNameBytesMax + 1, 'b')).error().code,
            ErrorCode::kBadRequest);
  EXPECT_EQ(book->Approve(t.id, "b\xc0").error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(book->Deny(t.id, "", "").error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(
      book->Deny(t.id, "bob", std::string(core::kApprovalReasonBytesMax + 1, 'r')).error().code,
      ErrorCode::kBadRequest);
  EXPECT_EQ(book->Deny(t.id, "bob", "\xff").error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(State(*book, t.id), "pending");
}

// --- What an approval covers -----------------------------------------------------------------

TEST(ApprovalBook, AnApprovalForArgumentsADoesNotCoverArgumentsB) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket a = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(a.id, "bob").ok());

  // Other arguments: a new pending request, not the approval of A.
  Ticket b = MustRequest(*book, Req(Args("100000")));
  EXPECT_NE(b.id, a.id);
  EXPECT_EQ(b.state, ApprovalState::kPending);
  EXPECT_TRUE(b.created);
  EXPECT_EQ(State(*book, a.id), "granted");  // A's approval is untouched
  EXPECT_EQ(book->Wait(b.id, 0), ApprovalState::kPending);

  // The same arguments in another member order are the same canonical arguments.
  Json reordered = Json::MakeObject();
  reordered.Set("amount", "100");
  reordered.Set("customer", "cus_42");
  Ticket a_again = MustRequest(*book, Req(reordered));
  EXPECT_EQ(a_again.id, a.id);
  EXPECT_EQ(a_again.state, ApprovalState::kGranted);

  EXPECT_EQ(events.Types(), (std::vector<std::string>{"approval.requested", "approval.approved",
                                                      "approval.decided", "approval.requested"}));
  EXPECT_EQ(events.Last().GetString("args_sha256"), core::Sha256Hex(Args("100000").Canonical()));
}

TEST(ApprovalBook, AnApprovalDoesNotCoverAnotherSessionActionOrGroup) {
  core::FakeClock clock;
  auto book = Book({Group("finance"), Group("legal")}, clock);
  Ticket a = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(a.id, "bob").ok());

  Ticket other_session = MustRequest(*book, Req(Args("100"), "ses_sibling"));
  Ticket other_action =
      MustRequest(*book, Req(Args("100"), "ses_child", "finance", "stripe:create_charge"));
  Ticket other_group = MustRequest(*book, Req(Args("100"), "ses_child", "legal"));
  for (const Ticket& t : {other_session, other_action, other_group}) {
    EXPECT_NE(t.id, a.id);
    EXPECT_EQ(t.state, ApprovalState::kPending);
    EXPECT_TRUE(t.created);
  }
  EXPECT_EQ(State(*book, a.id), "granted");
}

TEST(ApprovalBook, AGrantedApprovalAdmitsExactlyOneCall) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());

  Ticket first = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(first.state, ApprovalState::kGranted);
  EXPECT_EQ(first.id, t.id);
  EXPECT_EQ(State(*book, t.id), "used");
  EXPECT_EQ(book->Wait(t.id, 0), ApprovalState::kUsed);  // taken: not a second time

  Ticket second = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(second.state, ApprovalState::kPending);
  EXPECT_NE(second.id, t.id);
  EXPECT_TRUE(second.created);
  // Using the approval is not an event (the call's own record names the approval).
  EXPECT_EQ(events.Types(), (std::vector<std::string>{"approval.requested", "approval.approved",
                                                      "approval.decided", "approval.requested"}));
}

// --- Parked calls ----------------------------------------------------------------------------

TEST(ApprovalBook, ParkedWaitWakesOnApprove) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  std::atomic<ApprovalState> result{ApprovalState::kPending};
  std::atomic<bool> returned{false};
  std::thread call([&] {
    result = book->Wait(t.id, 600 * kMicros);
    returned = true;
  });
  AwaitParked(*book, t.id, 1);
  EXPECT_FALSE(returned.load());
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  call.join();
  EXPECT_EQ(result.load(), ApprovalState::kGranted);
  // The parked call has it: a retry with the same arguments needs a new approval.
  EXPECT_EQ(State(*book, t.id), "used");
  EXPECT_EQ(book->Get(t.id)->GetInt("parked", -1), 0);
  Ticket retry = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(retry.state, ApprovalState::kPending);
  EXPECT_NE(retry.id, t.id);
}

TEST(ApprovalBook, ParkedWaitWakesOnDenyAndRetriesAreToldDenied) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2)}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));
  std::atomic<ApprovalState> result{ApprovalState::kPending};
  std::thread call([&] { result = book->Wait(t.id, 600 * kMicros); });
  AwaitParked(*book, t.id, 1);
  ASSERT_TRUE(book->Deny(t.id, "bob", "no").ok());
  call.join();
  EXPECT_EQ(result.load(), ApprovalState::kDenied);

  // A retry is refused with the same approval, without asking the approvers again.
  Ticket retry = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(retry.state, ApprovalState::kDenied);
  EXPECT_EQ(retry.id, t.id);
  EXPECT_FALSE(retry.created);
  EXPECT_EQ(book->Wait(t.id, 0), ApprovalState::kDenied);
  EXPECT_EQ(events.Types(), (std::vector<std::string>{"approval.requested", "approval.decided"}));
}

TEST(ApprovalBook, WaitReturnsPendingWhenTheWaitEnds) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(book->Wait(t.id, 30000), ApprovalState::kPending);  // 30 ms
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(30));
  EXPECT_EQ(book->Wait(t.id, 0), ApprovalState::kPending);
  EXPECT_EQ(book->Wait(t.id, -5), ApprovalState::kPending);
  EXPECT_EQ(State(*book, t.id), "pending");
  EXPECT_EQ(book->Get(t.id)->GetInt("parked", -1), 0);
  // Still approvable, and then the retry proceeds.
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  EXPECT_EQ(MustRequest(*book, Req(Args("100"))).state, ApprovalState::kGranted);
}

TEST(ApprovalBook, WaitReturnsEarlyOnCancel) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  core::CancelSignal cancel;
  std::atomic<ApprovalState> result{ApprovalState::kGranted};
  const auto start = std::chrono::steady_clock::now();
  std::thread call([&] { result = book->Wait(t.id, 600 * kMicros, &cancel); });
  AwaitParked(*book, t.id, 1);
  cancel.Cancel();
  call.join();
  EXPECT_EQ(result.load(), ApprovalState::kPending);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  EXPECT_EQ(book->Get(t.id)->GetInt("parked", -1), 0);
  EXPECT_EQ(State(*book, t.id), "pending");  // the request itself stays
}

TEST(ApprovalBook, WaitOnAnAlreadyCancelledSignalReturnsAtOnce) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  core::CancelSignal cancel;
  cancel.Cancel();
  EXPECT_EQ(book->Wait(t.id, 600 * kMicros, &cancel), ApprovalState::kPending);
}

TEST(ApprovalBook, OnlyTheCallParkedFirstGetsTheGrant) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  // The original call, and then a retry that joined the same approval, both parked.
  std::atomic<ApprovalState> first{ApprovalState::kPending};
  std::atomic<ApprovalState> second{ApprovalState::kPending};
  std::thread original([&] { first = book->Wait(t.id, 600 * kMicros); });
  AwaitParked(*book, t.id, 1);
  Ticket joined = MustRequest(*book, Req(Args("100")));
  ASSERT_EQ(joined.id, t.id);
  std::thread retry([&] { second = book->Wait(joined.id, 600 * kMicros); });
  AwaitParked(*book, t.id, 2);
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  original.join();
  retry.join();
  EXPECT_EQ(first.load(), ApprovalState::kGranted);
  EXPECT_EQ(second.load(), ApprovalState::kUsed);
  EXPECT_EQ(State(*book, t.id), "used");
}

TEST(ApprovalBook, AGrantNobodyWasParkedForIsTakenByExactlyOneOfManyRacingCalls) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  constexpr int kCalls = 16;
  std::atomic<int> granted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> calls;
  for (int i = 0; i < kCalls; ++i) {
    calls.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      if (i % 2 == 0) {
        if (book->Wait(t.id, 0) == ApprovalState::kGranted) ++granted;
      } else {
        auto r = book->Request(Req(Args("100")));
        if (r.ok() && r->state == ApprovalState::kGranted) ++granted;
      }
    });
  }
  go = true;
  for (auto& c : calls) c.join();
  EXPECT_EQ(granted.load(), 1);
  EXPECT_EQ(State(*book, t.id), "used");
}

TEST(ApprovalBook, WaitTakesAGrantMadeWhileNobodyWasParked) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  EXPECT_EQ(book->Wait(t.id, 600 * kMicros), ApprovalState::kGranted);  // at once
  EXPECT_EQ(book->Wait(t.id, 600 * kMicros), ApprovalState::kUsed);
  EXPECT_EQ(MustRequest(*book, Req(Args("100"))).state, ApprovalState::kPending);
}

TEST(ApprovalBook, AParkedCallResumesOnlyAfterTheDecisionWasAudited) {
  core::FakeClock clock;
  std::atomic<bool> decided_recorded{false};
  std::atomic<bool> call_saw_record{false};
  auto book = Book({Group("finance")}, clock, [&](const Json& ev) {
    if (ev.GetString("type") == "approval.decided") {
      std::this_thread::sleep_for(milliseconds(50));  // a slow, durable audit append
      decided_recorded = true;
    }
  });
  Ticket t = MustRequest(*book, Req(Args("100")));
  std::thread call([&] {
    EXPECT_EQ(book->Wait(t.id, 600 * kMicros), ApprovalState::kGranted);
    call_saw_record = decided_recorded.load();
  });
  AwaitParked(*book, t.id, 1);
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  EXPECT_TRUE(decided_recorded.load());  // Approve returns after its events were delivered
  call.join();
  EXPECT_TRUE(call_saw_record.load());
}

// --- Expiry ----------------------------------------------------------------------------------

TEST(ApprovalBook, APendingRequestExpiresAfterTheGroupsExpiry) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2)}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  clock.AdvanceSeconds(kExpirySeconds - 1);
  EXPECT_EQ(State(*book, t.id), "pending");
  clock.AdvanceSeconds(1);
  auto late = book->Approve(t.id, "carol");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  EXPECT_EQ(State(*book, t.id), "expired");
  EXPECT_EQ(book->pending_count(), 0u);
  EXPECT_EQ(book->Wait(t.id, 0), ApprovalState::kExpired);

  Json ev = events.Last();
  EXPECT_EQ(ev.GetString("type"), "approval.expired");
  EXPECT_EQ(ev.GetString("was"), "pending");
  EXPECT_EQ(ev.GetString("reason"), "timeout");
  EXPECT_EQ(ev.GetInt("expires_at", 0), t.expires_at_unix_micros);
  EXPECT_EQ(Strings(ev.FindArray("approvers")), std::vector<std::string>{"bob"});

  // A retry asks again: a new approval.
  Ticket retry = MustRequest(*book, Req(Args("100")));
  EXPECT_NE(retry.id, t.id);
  EXPECT_TRUE(retry.created);
  EXPECT_EQ(events.Types(), (std::vector<std::string>{"approval.requested", "approval.approved",
                                                      "approval.expired", "approval.requested"}));
}

TEST(ApprovalBook, AParkedCallWakesWhenItsRequestExpires) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  Ticket t = MustRequest(*book, Req(Args("100")));
  std::atomic<ApprovalState> result{ApprovalState::kPending};
  std::thread call([&] { result = book->Wait(t.id, 600 * kMicros); });
  AwaitParked(*book, t.id, 1);
  clock.AdvanceSeconds(kExpirySeconds);
  book->CollectExpired();
  call.join();
  EXPECT_EQ(result.load(), ApprovalState::kExpired);
}

TEST(ApprovalBook, AnUnusedGrantLapsesAfterTheGroupsExpiry) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket t = MustRequest(*book, Req(Args("100")));
  clock.AdvanceSeconds(100);
  ASSERT_TRUE(book->Approve(t.id, "bob").ok());
  const int64_t granted_at = clock.NowUnixMicros();
  // Usable for an expiry after the grant (not after the request).
  clock.AdvanceSeconds(kExpirySeconds - 1);
  EXPECT_EQ(State(*book, t.id), "granted");
  clock.AdvanceSeconds(1);
  book->CollectExpired();
  EXPECT_EQ(State(*book, t.id), "expired");
  Json ev = events.Last();
  EXPECT_EQ(ev.GetString("type"), "approval.expired");
  EXPECT_EQ(ev.GetString("was"), "granted");
  EXPECT_EQ(ev.GetInt("expires_at", 0), granted_at + kExpirySeconds * kMicros);

  Ticket retry = MustRequest(*book, Req(Args("100")));
  EXPECT_EQ(retry.state, ApprovalState::kPending);
  EXPECT_NE(retry.id, t.id);
}

TEST(ApprovalBook, DecidedApprovalsAreForgottenAnExpiryLater) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  Ticket denied = MustRequest(*book, Req(Args("1")));
  ASSERT_TRUE(book->Deny(denied.id, "bob", "").ok());
  Ticket used = MustRequest(*book, Req(Args("2")));
  ASSERT_TRUE(book->Approve(used.id, "bob").ok());
  ASSERT_EQ(MustRequest(*book, Req(Args("2"))).state, ApprovalState::kGranted);
  EXPECT_EQ(book->decided_count(), 2u);
  const size_t events_before = events.size();

  clock.AdvanceSeconds(kExpirySeconds - 1);
  EXPECT_EQ(MustRequest(*book, Req(Args("1"))).state, ApprovalState::kDenied);
  clock.AdvanceSeconds(1);
  EXPECT_EQ(book->Get(denied.id), std::nullopt);
  EXPECT_EQ(book->Get(used.id), std::nullopt);
  EXPECT_EQ(book->decided_count(), 0u);
  EXPECT_EQ(events.size(), events_before);  // forgetting is not an event
  // The denial no longer refuses the retry: the approvers are asked again.
  Ticket again = MustRequest(*book, Req(Args("1")));
  EXPECT_EQ(again.state, ApprovalState::kPending);
  EXPECT_TRUE(again.created);
}

// --- Limits ----------------------------------------------------------------------------------

TEST(ApprovalBook, RefusesNewRequestsBeyondThePerSessionLimit) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  std::vector<Ticket> tickets;
  for (size_t i = 0; i < core::kApprovalsPendingPerSessionMax; ++i) {
    tickets.push_back(MustRequest(*book, Req(Args(std::to_string(i)))));
  }
  auto full = book->Request(Req(Args("one more")));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kConflict);
  EXPECT_NE(full.error().message.find("ses_child"), std::string::npos);
  // Joining an existing one still works, and other sessions are not affected.
  EXPECT_EQ(MustRequest(*book, Req(Args("0"))).id, tickets[0].id);
  EXPECT_TRUE(book->Request(Req(Args("one more"), "ses_other")).ok());
  // A decision makes room.
  ASSERT_TRUE(book->Deny(tickets[0].id, "bob", "").ok());
  EXPECT_TRUE(book->Request(Req(Args("one more"))).ok());
}

TEST(ApprovalBook, RefusesNewRequestsBeyondThePendingLimit) {
  core::FakeClock clock;
  auto book = Book({Group("finance")}, clock);
  std::string first_id;
  for (size_t i = 0; i < core::kApprovalsPendingMax; ++i) {
    std::string sid = "ses_" + std::to_string(i / core::kApprovalsPendingPerSessionMax);
    Ticket t = MustRequest(*book, Req(Args(std::to_string(i)), sid));
    if (i == 0) first_id = t.id;
  }
  EXPECT_EQ(book->pending_count(), core::kApprovalsPendingMax);
  auto full = book->Request(Req(Args("x"), "ses_new"));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(book->Approve(first_id, "bob").ok());
  EXPECT_TRUE(book->Request(Req(Args("x"), "ses_new")).ok());
  // Expiry makes room too.
  clock.AdvanceSeconds(kExpirySeconds);
  book->CollectExpired();
  EXPECT_EQ(book->pending_count(), 0u);
  EXPECT_TRUE(book->Request(Req(Args("y"), "ses_new")).ok());
}

TEST(ApprovalBook, KeepsAtMostTheDecidedLimitForgettingTheSoonestDue) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance")}, clock, events.Sink());
  // The oldest decided approval: granted and never used.
  Ticket oldest = MustRequest(*book, Req(Args("oldest")));
  ASSERT_TRUE(book->Approve(oldest.id, "bob").ok());
  for (size_t i = 0; i < core::kApprovalsDecidedMax; ++i) {
    Ticket t = MustRequest(*book, Req(Args(std::to_string(i))));
    ASSERT_TRUE(book->Deny(t.id, "bob", "").ok());
  }
  EXPECT_EQ(book->decided_count(), core::kApprovalsDecidedMax);
  EXPECT_EQ(book->Get(oldest.id), std::nullopt);
  // Forgetting an unused grant is its expiry: audited.
  size_t evicted = 0;
  for (const Json& ev : events.All()) {
    if (ev.GetString("type") != "approval.expired") continue;
    ++evicted;
    EXPECT_EQ(ev.GetString("approval"), oldest.id);
    EXPECT_EQ(ev.GetString("was"), "granted");
    EXPECT_EQ(ev.GetString("reason"), "evicted");
  }
  EXPECT_EQ(evicted, 1u);
  // It no longer admits a retry.
  EXPECT_EQ(MustRequest(*book, Req(Args("oldest"))).state, ApprovalState::kPending);
}

// --- Views -----------------------------------------------------------------------------------

TEST(ApprovalBook, ListAndGetShowWhatApproversNeed) {
  core::FakeClock clock;
  auto book = Book({Group("finance", 2), Group("legal")}, clock);
  const int64_t t0 = clock.NowUnixMicros();
  Ticket a = MustRequest(*book, Req(Args("100")));
  clock.AdvanceSeconds(1);
  Ticket b = MustRequest(*book, Req(Args("200"), "ses_child", "legal"));
  clock.AdvanceSeconds(1);
  Ticket c = MustRequest(*book, Req(Args("300")));
  ASSERT_TRUE(book->Approve(a.id, "bob").ok());
  ASSERT_TRUE(book->Deny(b.id, "carol", "no legal basis").ok());

  auto v = book->Get(a.id);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->GetString("id"), a.id);
  EXPECT_EQ(v->GetString("state"), "pending");
  EXPECT_EQ(v->GetString("group"), "finance");
  EXPECT_EQ(v->GetString("run"), "ses_root");
  EXPECT_EQ(v->GetString("sid"), "ses_child");
  EXPECT_EQ(v->GetString("agent"), "refund-bot");
  EXPECT_EQ(v->GetString("human"), "alice");
  EXPECT_EQ(v->GetString("task"), "SUP-7");
  EXPECT_EQ(v->GetString("action"), "stripe:create_refund");
  EXPECT_EQ(*v->Find("args"), Args("100"));
  EXPECT_EQ(v->GetString("args_sha256"), core::Sha256Hex(Args("100").Canonical()));
  EXPECT_EQ(v->GetString("policy"), "refunds-need-finance");
  EXPECT_EQ(v->GetString("decision_id"), "dec_1");
  EXPECT_EQ(Strings(v->FindArray("approvers")), std::vector<std::string>{"bob"});
  EXPECT_EQ(v->GetInt("min_approvers", 0), 2);
  EXPECT_EQ(*v->Find("exclude_requester"), Json(true));
  EXPECT_EQ(v->GetInt("created_at", 0), t0);
  EXPECT_EQ(v->GetInt("expires_at", 0), t0 + kExpirySeconds * kMicros);
  EXPECT_TRUE(v->Find("decided_at")->is_null());
  EXPECT_TRUE(v->Find("usable_until")->is_null());
  EXPECT_TRUE(v->Find("denied_by")->is_null());
  EXPECT_TRUE(v->Find("reason")->is_null());
  EXPECT_EQ(v->GetInt("parked", -1), 0);

  auto denied = book->Get(b.id);
  ASSERT_TRUE(denied.has_value());
  EXPECT_EQ(denied->GetString("state"), "denied");
  EXPECT_EQ(denied->GetString("denied_by"), "carol");
  EXPECT_EQ(denied->GetString("reason"), "no legal basis");
  EXPECT_EQ(denied->GetInt("decided_at", 0), clock.NowUnixMicros());
  EXPECT_TRUE(denied->Find("args")->is_null());  // dropped once decided (the audit log has it)
  EXPECT_EQ(denied->GetString("args_sha256"), core::Sha256Hex(Args("200").Canonical()));

  ASSERT_TRUE(book->Approve(c.id, "bob").ok());
  ASSERT_TRUE(book->Approve(c.id, "dave").ok());
  auto granted = book->Get(c.id);
  EXPECT_EQ(granted->GetString("state"), "granted");
  EXPECT_EQ(granted->GetInt("usable_until", 0), clock.NowUnixMicros() + kExpirySeconds * kMicros);
  EXPECT_EQ(*granted->Find("args"), Args("300"));  // still shown until used

  auto ids = [](const Json& list) {
    std::vector<std::string> out;
    for (const Json& v : list.FindArray("approvals")->as_array()) out.push_back(v.GetString("id"));
    return out;
  };
  Json pending = book->List(ListFilter::kPending);
  EXPECT_EQ(ids(pending), std::vector<std::string>{a.id});
  EXPECT_EQ(*pending.Find("truncated"), Json(false));
  Json all = book->List(ListFilter::kAll);
  EXPECT_EQ(ids(all), (std::vector<std::string>{a.id, b.id, c.id}));  // creation order
  EXPECT_EQ(all.FindArray("approvals")->as_array()[0], *book->Get(a.id));
  Json first_two = book->List(ListFilter::kAll, 2);
  EXPECT_EQ(ids(first_two), (std::vector<std::string>{a.id, b.id}));
  EXPECT_EQ(*first_two.Find("truncated"), Json(true));
  EXPECT_EQ(*book->List(ListFilter::kAll, 3).Find("truncated"), Json(false));
  EXPECT_TRUE(all.CheckSerializable().ok());
}

// --- Events ----------------------------------------------------------------------------------

TEST(ApprovalBook, EventsAreEmittedOnceEachInOrderUnderConcurrency) {
  core::FakeClock clock;
  Events events;
  auto book = Book({Group("finance", 2)}, clock, events.Sink());
  constexpr int kSessions = 8;
  constexpr int kCallsPerSession = 8;
  std::mutex ids_mu;
  std::vector<std::string> ids;
  std::vector<std::thread> threads;
  for (int s = 0; s < kSessions; ++s) {
    threads.emplace_back([&, s] {
      for (int i = 0; i < kCallsPerSession; ++i) {
        ApprovalRequest r = Req(Args(std::to_string(i)), "ses_" + std::to_string(s));
        Ticket t = MustRequest(*book, r);
        MustRequest(*book, r);  // a retry joins
        {
          std::lock_guard<std::mutex> lock(ids_mu);
          ids.push_back(t.id);
        }
        // Two approvers race on every approval; one call is parked on it.
        std::thread parked([&, id = t.id] { book->Wait(id, 600 * kMicros); });
        std::thread bob([&, id = t.id] { (void)book->Approve(id, "bob"); });
        std::thread carol([&, id = t.id] {
          (void)book->Approve(id, "carol");
          (void)book->Approve(id, "carol");
        });
        bob.join();
        carol.join();
        parked.join();
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(ids.size(), size_t{kSessions * kCallsPerSession});

  std::map<std::string, std::vector<std::string>> by_approval;
  for (const Json& ev : events.All()) {
    by_approval[ev.GetString("approval")].push_back(ev.GetString("type"));
  }
  ASSERT_EQ(by_approval.size(), ids.size());
  for (const std::string& id : ids) {
    EXPECT_EQ(by_approval[id], (std::vector<std::string>{"approval.requested", "approval.approved",
                                                         "approval.approved", "approval.decided"}))
        << id;
    EXPECT_EQ(State(*book, id), "used") << id;  // the parked call took it (or took it at once)
  }
}

}  // namespace
}  // namespace mandate::approval
