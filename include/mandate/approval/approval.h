// Human approval of individual calls (DESIGN.md sections 1 and 6). A policy permit annotated
// `@approval("<group>")` makes a call need the approval of a group of humans declared in the
// config (`approvals: { <group>: { min_approvers, exclude_requester, wait, expiry } }`). This
// module is the book of approval requests: it creates them, collects the approvers' votes,
// parks calls until a decision, and hands each granted approval to exactly one call. Wiring
// (pipeline, config, admin API, CLI, web page, audit log) is the integrator's.
//
// What an approval covers. An approval is bound to one key:
//     (group, session sid, action id, SHA-256 of the canonical arguments)
// The hash is the one of the arguments the approvers were shown (ApprovalRequest::args_sha256,
// computed by the caller over core::Json::Canonical() of the call's arguments; args_display is
// what approvers see). A call with other arguments, another action, from another session, or
// needing another group, is not covered: its Request creates a new pending approval.
//
// One approval admits one call. A granted approval is *used* by exactly one call, then a
// further call with the same key needs a new approval. Who gets it:
//   1. Calls parked in Wait on the approval's id when it is granted: the one that started
//      waiting first (FIFO). It is handed over at the moment of the grant; Wait returns
//      kGranted to that call and kUsed to the other parked calls.
//   2. Otherwise (nobody parked) it stays granted-and-unused for the group's expiry. The first
//      later Request with the same key takes it (its Ticket says kGranted), or the first later
//      Wait on its id does.
//
// Lifecycle of one approval (`state`):
//     pending --(min_approvers distinct approvals)--> granted --(a call takes it)--> used
//        |  \--(one denial)--> denied                    \--(unused for expiry)--> expired
//        \--(created_at + expiry passes)--> expired
// Pending requests expire at created_at + the group's expiry; a granted approval lapses when
// unused for the group's expiry after the grant. Decided approvals (used, denied, expired) are
// remembered for another expiry (for Get, List, and so that a retry of a denied call is told
// `denied` with the same id instead of asking the approvers again), then forgotten. Expiry is
// applied lazily by every method (and CollectExpired, for a periodic sweep).
//
// Bounded memory: at most core::kApprovalsPendingMax pending requests
// (core::kApprovalsPendingPerSessionMax per session) and core::kApprovalsDecidedMax decided
// ones; beyond the latter the decided approval due to be forgotten soonest is forgotten at
// once (a granted-and-unused one forgotten this way emits approval.expired, reason "evicted").
// Arguments shown to approvers are at most core::kApprovalArgsBytesMax; they are dropped from
// memory (shown as null) once the approval is used, denied or expired: the audit log has them.
//
// Audit events. Every state change produces exactly one event, a JSON object handed to the
// `on_event` callback given to Create, in the order the changes happened (over all threads),
// each exactly once. The integrator appends them to the audit log as records (the log adds
// seq, ts and prev). Every event has these members, copied from the request:
//     "type"         "approval.requested" | "approval.approved" | "approval.decided" |
//                    "approval.expired"
//     "approval"     the approval id, "apr_..."
//     "group"        the approval group
//     "run" "sid" "agent" "human" "task"   who asked (human: the requester, the human the
//                    agent acts for); task may be ""
//     "action"       the action id "<upstream>:<tool>"
//     "args_sha256"  lowercase hex SHA-256 of the canonical arguments (what the approval covers)
//     "policy"       the @id of the policy that required the approval (may be "")
//     "decision_id"  the id of the call's decision record that asked (may be "")
// and, per type:
//     approval.requested  "args": the arguments shown to approvers (JSON value),
//                         "min_approvers": N, "exclude_requester": bool,
//                         "created_at", "expires_at": Unix microseconds
//     approval.approved   one counted vote: "approver": "bob", "approvers": ["bob", ...]
//                         (every counted approver so far, in vote order, this one last),
//                         "min_approvers": N
//     approval.decided    "state": "granted" | "denied", "approvers": [...] (counted approvals),
//                         granted: "usable_until": Unix microseconds;
//                         denied:  "denied_by": "carol", "reason": "..." (may be "")
//     approval.expired    "was": "pending" | "granted" (granted and never used),
//                         "reason": "timeout" | "evicted" (kApprovalsDecidedMax),
//                         "approvers": [...], "expires_at": when it lapsed (Unix microseconds)
// A grant is preceded by the approval.approved of the vote that completed it. Using a granted
// approval is not an event: the call.decided record of the call that used it names the
// approval id (the integrator writes it). A vote that is not counted (the same approver twice)
// is not an event either.
//
// Write-ahead: a parked call is released (Wait returns), and a Request takes a granted
// approval, only after the events of that decision were handed to `on_event` and it returned,
// so the audit log has the approval.decided record before the call's own records.
//
// Thread safety: every method may be called concurrently from any thread. One mutex guards
// the book; Wait blocks without holding it. `on_event` is called outside that mutex, from one
// thread at a time, on whichever thread caused the change (Request, Approve, Deny, Wait, Get,
// List, CollectExpired); it must not call back into the book (it would deadlock).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mandate/core/cancel.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::approval {

// One approval group of the config.
struct ApprovalGroup {
  std::string name;  // 1..kConfigNameBytesMax bytes, unique within a book
  // Distinct approvers needed to grant, 1..kApprovalMinApproversMax.
  uint32_t min_approvers = 1;
  // The requester (the human the agent acts for) may not approve their own agent's call.
  bool exclude_requester = true;
  // How long a call needing this group's approval is parked before it returns
  // approval_required (the integrator passes it to Wait). 0..kApprovalWaitMillisMax ms.
  int64_t wait_micros = core::kApprovalWaitMicrosDefault;
  // How long a pending request lives, and how long a granted approval stays usable by a retry.
  // kApprovalExpiryMicrosMin..kApprovalExpiryMicrosMax, and at least wait_micros.
  int64_t expiry_micros = core::kApprovalExpiryMicrosDefault;
};

// One call that needs approval. Strings are valid UTF-8 of at most kApprovalFieldBytesMax
// bytes.
struct ApprovalRequest {
  std::string run;          // root session of the delegation tree (required)
  std::string sid;          // the calling session (required; part of the approval's key)
  std::string agent;        // required
  std::string human;        // the requester: the human the agent acts for (required)
  std::string task;         // may be empty
  std::string action_id;    // "<upstream>:<tool>" (required; part of the key)
  std::string args_sha256;  // lowercase hex SHA-256 of the canonical arguments (64 chars; key)
  core::Json args_display;  // the arguments with secrets scrubbed, shown to approvers
  std::string group;        // the approval group (required; part of the key)
  std::string policy;       // @id of the policy that asked (may be empty)
  std::string decision_id;  // the decision record that asked (may be empty)
};

// The state of an approval (see the lifecycle at the top of this file). As a result of Wait,
// kGranted means "granted, and now yours", kUsed "granted, but taken by another call".
enum class ApprovalState : uint8_t { kPending, kGranted, kUsed, kDenied, kExpired };

// "pending" | "granted" | "used" | "denied" | "expired".
std::string_view ApprovalStateName(ApprovalState state);

// What Request found or made.
struct Ticket {
  std::string id;  // the approval id, "apr_..."
  // kPending  a new request (created) or an existing pending one (joined); park with Wait.
  // kGranted  a granted approval with exactly this key was unused: it is now taken by this
  //           call, which may proceed.
  // kDenied   an approval with this key was denied (and is still remembered): refuse the call
  //           with approval_denied. No new request is made.
  ApprovalState state = ApprovalState::kPending;
  bool created = false;     // this Request created the approval (approval.requested was emitted)
  int64_t wait_micros = 0;  // the group's wait: how long to park the call
  int64_t expires_at_unix_micros = 0;  // when the pending request expires
};

// The result of a vote.
struct Vote {
  std::string id;
  // kPending (more approvals needed), kGranted (this vote granted it; it may have been handed
  // to a parked call at once: Get then says "used"), kDenied (Deny).
  ApprovalState state = ApprovalState::kPending;
  std::vector<std::string> approvers;  // counted approvers, in vote order
  uint32_t min_approvers = 1;
  bool counted = false;  // false: this approver had already approved (nothing changed)
};

enum class ListFilter : uint8_t { kPending, kAll };

// Receives every audit event (shapes at the top of this file).
using EventSink = std::function<void(const core::Json& event)>;

class ApprovalBook {
 public:
  // `clock` must outlive the book; `on_event` may be empty (events are then dropped).
  // Errors: kBadRequest when a group's name is empty, longer than kConfigNameBytesMax, or
  // repeated; min_approvers is outside 1..kApprovalMinApproversMax; wait_micros is negative or
  // above kApprovalWaitMillisMax; expiry_micros is outside
  // kApprovalExpiryMicrosMin..kApprovalExpiryMicrosMax or shorter than wait_micros; there are
  // more than kApprovalGroupsMax groups. The message names the group.
  static core::Result<std::unique_ptr<ApprovalBook>> Create(std::vector<ApprovalGroup> groups,
                                                            const core::Clock& clock,
                                                            EventSink on_event = {});
  ~ApprovalBook();
  ApprovalBook(const ApprovalBook&) = delete;
  ApprovalBook& operator=(const ApprovalBook&) = delete;

  // Finds or makes the approval for the request's key (group, sid, action_id, args_sha256):
  //   - a granted, unused approval: takes it (state used) -> Ticket kGranted;
  //   - a pending one: joins it (same id, no new event; retries while pending do not create
  //     duplicates) -> Ticket kPending, created false;
  //   - a remembered denial -> Ticket kDenied (same id);
  //   - otherwise (none, or the last one was used or expired): a new pending approval with a
  //     fresh id, emitting approval.requested -> Ticket kPending, created true.
  // A granted approval whose decision has not yet been handed to on_event (a race with the
  // Approve that grants it) is joined as if pending; the following Wait takes it.
  // Errors (nothing is created):
  //   kNotFound         no group has request.group's name.
  //   kConflict         a new approval is needed, but kApprovalsPendingMax requests are pending,
  //                     or kApprovalsPendingPerSessionMax for this sid (fail closed).
  //   kPayloadTooLarge  args_display is larger than kApprovalArgsBytesMax as compact JSON.
  //   kBadRequest       args_sha256 is not 64 lowercase hex digits; a string is longer than
  //                     kApprovalFieldBytesMax or not valid UTF-8; args_display does not
  //                     serialize (Json::CheckSerializable).
  //   kInternal         run, sid, agent, human, action_id or group is empty (the gateway always
  //                     knows them: a call without them is a bug, refused).
  core::Result<Ticket> Request(const ApprovalRequest& request);

  // Parks the calling thread until approval `id` is decided (and its events delivered), it
  // expires, `cancel` fires, or max_wait_micros of real (steady) time pass. Returns:
  //   kGranted  it was granted and this call has it (the approval is now used): proceed;
  //   kUsed     it was granted but another call has it: this call needs a new approval;
  //   kDenied   it was denied;
  //   kExpired  it expired, or `id` is unknown (never existed, or forgotten);
  //   kPending  still pending when the wait ended or `cancel` fired.
  // A granted approval that is unused when Wait starts is taken at once (kGranted). A call
  // that was handed the approval just before its cancellation was seen still gets kGranted: a
  // cancelled caller that does not proceed has used the approval up (fail closed).
  // max_wait_micros <= 0 only looks (and may take an unused grant). Expiry is measured with
  // the book's Clock: a parked call notices it when its expiry time passes by that clock
  // (rechecked at least at that real-time interval) or at the next CollectExpired.
  // `cancel` may be null. Never holds the book's lock while blocked.
  ApprovalState Wait(const std::string& id, int64_t max_wait_micros,
                     core::CancelSignal* cancel = nullptr);

  // One approver's vote. The caller must have checked that `approver` may approve for the
  // approval's group (group membership comes from the store): the book only enforces
  // exclude_requester and distinctness. A second vote of the same approver is not counted
  // (Vote::counted false, no event). When min_approvers distinct approvers have voted the
  // approval is granted (events approval.approved then approval.decided). Returns after the
  // events were handed to on_event.
  // Errors:
  //   kNotFound      no approval has this id (or it was forgotten).
  //   kPolicyDenied  the group has exclude_requester and `approver` is the requester.
  //   kConflict      the approval is no longer pending (granted, used, denied or expired;
  //                  the message says which).
  //   kBadRequest    `approver` is empty, longer than kNameBytesMax, or not valid UTF-8.
  core::Result<Vote> Approve(const std::string& id, const std::string& approver);

  // Denies at once (one denial suffices, whatever the votes so far), emitting approval.decided
  // with state "denied". Anyone the caller allows to act for the group may deny, including
  // the requester (denying is never an escalation). Errors as Approve, without kPolicyDenied,
  // plus kBadRequest when `reason` is longer than kApprovalReasonBytesMax or not valid UTF-8.
  core::Result<Vote> Deny(const std::string& id, const std::string& approver,
                          const std::string& reason);

  // For `mandate approvals list` and GET /admin/v1/approvals:
  //   {"approvals":[<view>...],"truncated":bool}
  // the first `limit` approvals matching `filter` (kPending: pending ones; kAll: every one
  // remembered) in creation order, oldest first; `truncated` says whether more matched.
  // `limit` 0 means no limit. <view> is Get's object.
  core::Json List(ListFilter filter, size_t limit = 0);

  // One approval, for GET /v1/approvals/<id> and the admin API; nullopt when unknown:
  //   {"id","state","group","run","sid","agent","human" (the requester),"task","action",
  //    "args" (shown to approvers; null once used, denied or expired),"args_sha256","policy",
  //    "decision_id","approvers":[...],"min_approvers","exclude_requester",
  //    "created_at","expires_at" (the pending request's expiry),
  //    "decided_at" (null while pending),"usable_until" (granted: else null),
  //    "denied_by","reason" (denied: else null),"parked": calls waiting on it now}
  // Times are Unix microseconds.
  std::optional<core::Json> Get(const std::string& id);

  // Applies every expiry that is due (events approval.expired), forgets what is due to be
  // forgotten, and wakes parked calls whose approval expired. Every method already does this
  // lazily; for a periodic sweep, and for tests moving a FakeClock.
  void CollectExpired();

  // Pending requests (<= kApprovalsPendingMax) and decided approvals remembered
  // (<= kApprovalsDecidedMax), as of the last expiry sweep (they do not sweep; for metrics).
  size_t pending_count() const;
  size_t decided_count() const;

 private:
  struct Entry;
  struct Group;
  struct Changes;

  ApprovalBook(const core::Clock& clock, EventSink on_event);

  // All *Locked methods require mu_.
  void SweepLocked(int64_t now, Changes* changes);
  void ExpireLocked(const std::shared_ptr<Entry>& e, int64_t now, std::string_view reason,
                    Changes* changes);
  void ForgetLocked(const std::shared_ptr<Entry>& e);
  void MakeDecidedLocked(const std::shared_ptr<Entry>& e, int64_t now, int64_t deadline,
                         Changes* changes);
  void ScheduleLocked(const std::shared_ptr<Entry>& e, int64_t deadline);
  void EmitLocked(core::Json event, const std::shared_ptr<Entry>& e, Changes* changes);
  void TakeLocked(const std::shared_ptr<Entry>& e, int64_t now);
  void HandOutLocked(const std::shared_ptr<Entry>& e, int64_t now);
  bool PublishedLocked(const Entry& e) const;
  core::Json ViewLocked(const Entry& e) const;
  // Delivers queued events (in order, outside mu_), then wakes the calls parked on changed
  // approvals.
  void Finish(Changes* changes);

  const core::Clock& clock_;
  const EventSink on_event_;
  std::unordered_map<std::string, Group> groups_;  // immutable after Create

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> by_id_;  // guarded by mu_
  // Key -> the approval a Request with that key finds (pending, granted-unused or denied).
  std::unordered_map<std::string, std::shared_ptr<Entry>> by_key_;  // guarded by mu_
  std::map<uint64_t, std::shared_ptr<Entry>> by_seq_;  // creation order; guarded by mu_
  // (deadline, seq): when each pending / decided approval next changes (expires, lapses, is
  // forgotten). Guarded by mu_.
  std::set<std::pair<int64_t, uint64_t>> pending_timeline_;
  std::set<std::pair<int64_t, uint64_t>> decided_timeline_;
  std::unordered_map<std::string, size_t> pending_by_sid_;  // guarded by mu_
  uint64_t next_seq_ = 1;                                   // guarded by mu_
  uint64_t next_waiter_ = 1;                                // guarded by mu_
  // Events: queued under mu_ with consecutive numbers; delivered in order by Finish.
  std::vector<core::Json> outbox_;  // guarded by mu_
  uint64_t queued_events_ = 0;      // guarded by mu_: events ever queued
  uint64_t delivered_events_ = 0;   // guarded by mu_: events handed to on_event_ so far
  std::mutex deliver_mu_;           // held while calling on_event_ (never with mu_ held)
};

}  // namespace mandate::approval
