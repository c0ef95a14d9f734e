// The approval book: requests, votes, parked calls, expiry (contract in approval.h).
#include "mandate/approval/approval.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <utility>

#include "mandate/core/check.h"
#include "mandate/core/crypto.h"

namespace mandate::approval {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

constexpr size_t kSha256HexChars = 64;

// Checks one string of a request: length and UTF-8 (it goes into audit records and JSON
// answers, which must serialize).
core::Status CheckField(std::string_view name, const std::string& value, bool required,
                        size_t max_bytes) {
  if (required && value.empty()) {
    return MakeError(ErrorCode::kInternal,
                     "approval: the call's " + std::string(name) + " is unknown");
  }
  if (value.size() > max_bytes) {
    return MakeError(ErrorCode::kBadRequest, "approval: " + std::string(name) + " is longer than " +
                                                 std::to_string(max_bytes) + " bytes");
  }
  if (!core::IsValidUtf8(value)) {
    return MakeError(ErrorCode::kBadRequest,
                     "approval: " + std::string(name) + " is not valid UTF-8");
  }
  return core::OkStatus();
}

bool IsLowerHexSha256(const std::string& s) {
  if (s.size() != kSha256HexChars) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

core::Status CheckApprover(const std::string& approver) {
  if (approver.empty()) return MakeError(ErrorCode::kBadRequest, "approval: no approver given");
  if (approver.size() > core::kNameBytesMax) {
    return MakeError(ErrorCode::kBadRequest, "approval: approver name is longer than " +
                                                 std::to_string(core::kNameBytesMax) + " bytes");
  }
  if (!core::IsValidUtf8(approver)) {
    return MakeError(ErrorCode::kBadRequest, "approval: approver name is not valid UTF-8");
  }
  return core::OkStatus();
}

// The key an approval covers. Each part is length-prefixed so no choice of strings can make
// two different keys collide.
std::string KeyOf(const ApprovalRequest& r) {
  std::string key;
  for (const std::string* part : {&r.group, &r.sid, &r.action_id, &r.args_sha256}) {
    key.append(std::to_string(part->size()));
    key.push_back(':');
    key.append(*part);
  }
  return key;
}

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

}  // namespace

std::string_view ApprovalStateName(ApprovalState state) {
  switch (state) {
    case ApprovalState::kPending:
      return "pending";
    case ApprovalState::kGranted:
      return "granted";
    case ApprovalState::kUsed:
      return "used";
    case ApprovalState::kDenied:
      return "denied";
    case ApprovalState::kExpired:
      break;
  }
  return "expired";
}

struct ApprovalBook::Group {
  ApprovalGroup spec;
};

struct ApprovalBook::Entry {
  std::string id;
  uint64_t seq = 0;  // creation order; the timelines' tie-breaker
  std::string key;
  ApprovalRequest req;  // args_display is dropped (null) once used, denied or expired
  const ApprovalGroup* group = nullptr;  // points into the immutable groups_
  ApprovalState state = ApprovalState::kPending;
  std::vector<std::string> approvers;  // counted votes, in order
  int64_t created_at = 0;
  int64_t expires_at = 0;    // created_at + expiry: when a pending request expires
  int64_t decided_at = 0;    // granted, denied or (while pending) expired; 0 while pending
  int64_t usable_until = 0;  // granted: when it lapses unused
  std::string denied_by;
  std::string reason;
  int64_t deadline = 0;  // its position in pending_timeline_ or decided_timeline_
  // Number of the event that decided it (granted, denied, expired); 0 while pending. The
  // decision is *published* once delivered_events_ reaches it.
  uint64_t decision_event = 0;
  std::vector<uint64_t> waiters;  // parked Waits, in arrival order
  uint64_t holder = 0;            // the parked Wait the grant was handed to; 0: none
  std::condition_variable cv;     // waited on with mu_; notified after publication
};

// What one operation changed, to act on after releasing mu_.
struct ApprovalBook::Changes {
  bool events = false;                       // events were queued
  std::vector<std::shared_ptr<Entry>> wake;  // decided approvals whose parked calls to wake
};

ApprovalBook::ApprovalBook(const core::Clock& clock, EventSink on_event)
    : clock_(clock), on_event_(std::move(on_event)) {}

ApprovalBook::~ApprovalBook() = default;

core::Result<std::unique_ptr<ApprovalBook>> ApprovalBook::Create(std::vector<ApprovalGroup> groups,
                                                                 const core::Clock& clock,
                                                                 EventSink on_event) {
  if (groups.size() > core::kApprovalGroupsMax) {
    return MakeError(
        ErrorCode::kBadRequest,
        "approval: more than " + std::to_string(core::kApprovalGroupsMax) + " approval groups");
  }
  std::unique_ptr<ApprovalBook> book(new ApprovalBook(clock, std::move(on_event)));
  for (ApprovalGroup& g : groups) {
    if (g.name.empty() || g.name.size() > core::kConfigNameBytesMax || !core::IsValidUtf8(g.name)) {
      return MakeError(ErrorCode::kBadRequest, "approval: an approval group name must be 1 to " +
                                                   std::to_string(core::kConfigNameBytesMax) +
                                                   " bytes of UTF-8");
    }
    const std::string where = "approval group \"" + g.name + "\": ";
    if (g.min_approvers < 1 || g.min_approvers > core::kApprovalMinApproversMax) {
      return MakeError(ErrorCode::kBadRequest, where + "min_approvers must be 1 to " +
                                                   std::to_string(core::kApprovalMinApproversMax));
    }
    if (g.wait_micros < 0 || g.wait_micros > core::kApprovalWaitMillisMax * 1000) {
      return MakeError(
          ErrorCode::kBadRequest,
          where + "wait must be 0 to " + std::to_string(core::kApprovalWaitMillisMax) + " ms");
    }
    if (g.expiry_micros < core::kApprovalExpiryMicrosMin ||
        g.expiry_micros > core::kApprovalExpiryMicrosMax) {
      return MakeError(ErrorCode::kBadRequest,
                       where + "expiry must be " +
                           std::to_string(core::kApprovalExpiryMicrosMin / 1000000) + " s to " +
                           std::to_string(core::kApprovalExpiryMicrosMax / 1000000) + " s");
    }
    // A parked call must not outlive the request it waits for.
    if (g.expiry_micros < g.wait_micros) {
      return MakeError(ErrorCode::kBadRequest, where + "expiry must not be shorter than wait");
    }
    std::string name = g.name;
    if (!book->groups_.emplace(std::move(name), Group{std::move(g)}).second) {
      return MakeError(ErrorCode::kBadRequest, where + "declared twice");
    }
  }
  return book;
}

// --- Bookkeeping (all with mu_ held) ---------------------------------------------------------

bool ApprovalBook::PublishedLocked(const Entry& e) const {
  return e.decision_event != 0 && delivered_events_ >= e.decision_event;
}

void ApprovalBook::EmitLocked(Json event, const std::shared_ptr<Entry>& e, Changes* changes) {
  // Members every event carries (see approval.h), after the type-specific ones were set.
  const ApprovalRequest& r = e->req;
  event.Set("approval", e->id);
  event.Set("group", r.group);
  event.Set("run", r.run);
  event.Set("sid", r.sid);
  event.Set("agent", r.agent);
  event.Set("human", r.human);
  event.Set("task", r.task);
  event.Set("action", r.action_id);
  event.Set("args_sha256", r.args_sha256);
  event.Set("policy", r.policy);
  event.Set("decision_id", r.decision_id);
  outbox_.push_back(std::move(event));
  ++queued_events_;
  changes->events = true;
}

void ApprovalBook::ScheduleLocked(const std::shared_ptr<Entry>& e, int64_t deadline) {
  auto& timeline = e->state == ApprovalState::kPending ? pending_timeline_ : decided_timeline_;
  timeline.erase({e->deadline, e->seq});
  e->deadline = deadline;
  timeline.insert({deadline, e->seq});
}

// Moves a pending approval to the decided ones (its state already set), scheduled at
// `deadline`, making room under kApprovalsDecidedMax first.
void ApprovalBook::MakeDecidedLocked(const std::shared_ptr<Entry>& e, int64_t now, int64_t deadline,
                                     Changes* changes) {
  pending_timeline_.erase({e->deadline, e->seq});
  auto sid = pending_by_sid_.find(e->req.sid);
  MANDATE_CHECK(sid != pending_by_sid_.end() && sid->second > 0);
  if (--sid->second == 0) pending_by_sid_.erase(sid);
  while (decided_timeline_.size() >= core::kApprovalsDecidedMax) {
    // Forget the decided approval due to be forgotten (or to lapse) soonest.
    std::shared_ptr<Entry> victim = by_seq_.at(decided_timeline_.begin()->second);
    if (victim->state == ApprovalState::kGranted) {
      ExpireLocked(victim, now, "evicted", changes);
    }
    ForgetLocked(victim);
  }
  e->deadline = deadline;
  decided_timeline_.insert({deadline, e->seq});
}

// Pending or granted-unused -> expired, with its event.
void ApprovalBook::ExpireLocked(const std::shared_ptr<Entry>& e, int64_t now,
                                std::string_view reason, Changes* changes) {
  const ApprovalState was = e->state;
  MANDATE_DCHECK(was == ApprovalState::kPending || was == ApprovalState::kGranted);
  Json ev = Json::MakeObject();
  ev.Set("type", "approval.expired");
  ev.Set("was", ApprovalStateName(was));
  ev.Set("reason", reason);
  ev.Set("approvers", Json::StringArray(e->approvers));
  ev.Set("expires_at", was == ApprovalState::kPending ? e->expires_at : e->usable_until);
  e->state = ApprovalState::kExpired;
  if (was == ApprovalState::kPending) {
    e->decided_at = now;
    MakeDecidedLocked(e, now, SatAdd(now, e->group->expiry_micros), changes);
  } else {
    ScheduleLocked(e, SatAdd(now, e->group->expiry_micros));
  }
  auto k = by_key_.find(e->key);
  if (k != by_key_.end() && k->second == e) by_key_.erase(k);
  e->req.args_display = Json();
  EmitLocked(std::move(ev), e, changes);
  e->decision_event = queued_events_;
  changes->wake.push_back(e);
}

void ApprovalBook::ForgetLocked(const std::shared_ptr<Entry>& e) {
  MANDATE_DCHECK(e->state != ApprovalState::kPending);
  decided_timeline_.erase({e->deadline, e->seq});
  auto k = by_key_.find(e->key);
  if (k != by_key_.end() && k->second == e) by_key_.erase(k);
  by_id_.erase(e->id);
  by_seq_.erase(e->seq);
  // Parked Waits keep the entry alive through their shared_ptr and see its final state.
}

void ApprovalBook::SweepLocked(int64_t now, Changes* changes) {
  while (!pending_timeline_.empty() && pending_timeline_.begin()->first <= now) {
    std::shared_ptr<Entry> e = by_seq_.at(pending_timeline_.begin()->second);
    ExpireLocked(e, now, "timeout", changes);
  }
  while (!decided_timeline_.empty() && decided_timeline_.begin()->first <= now) {
    std::shared_ptr<Entry> e = by_seq_.at(decided_timeline_.begin()->second);
    if (e->state == ApprovalState::kGranted) {
      ExpireLocked(e, now, "timeout", changes);  // lapsed unused; remembered for an expiry
    } else {
      ForgetLocked(e);
    }
  }
}

// Granted -> used by a call: a further call with the same key needs a new approval. The
// record is remembered for another expiry.
void ApprovalBook::TakeLocked(const std::shared_ptr<Entry>& e, int64_t now) {
  MANDATE_CHECK(e->state == ApprovalState::kGranted);
  e->state = ApprovalState::kUsed;
  e->req.args_display = Json();
  auto k = by_key_.find(e->key);
  if (k != by_key_.end() && k->second == e) by_key_.erase(k);
  ScheduleLocked(e, SatAdd(now, e->group->expiry_micros));
}

// A fresh grant goes to the call parked first, if any.
void ApprovalBook::HandOutLocked(const std::shared_ptr<Entry>& e, int64_t now) {
  if (e->state != ApprovalState::kGranted || e->waiters.empty()) return;
  e->holder = e->waiters.front();
  TakeLocked(e, now);
}

Json ApprovalBook::ViewLocked(const Entry& e) const {
  const ApprovalRequest& r = e.req;
  Json v = Json::MakeObject();
  v.Set("id", e.id);
  v.Set("state", ApprovalStateName(e.state));
  v.Set("group", r.group);
  v.Set("run", r.run);
  v.Set("sid", r.sid);
  v.Set("agent", r.agent);
  v.Set("human", r.human);
  v.Set("task", r.task);
  v.Set("action", r.action_id);
  v.Set("args", r.args_display);
  v.Set("args_sha256", r.args_sha256);
  v.Set("policy", r.policy);
  v.Set("decision_id", r.decision_id);
  v.Set("approvers", Json::StringArray(e.approvers));
  v.Set("min_approvers", e.group->min_approvers);
  v.Set("exclude_requester", e.group->exclude_requester);
  v.Set("created_at", e.created_at);
  v.Set("expires_at", e.expires_at);
  v.Set("decided_at", e.state == ApprovalState::kPending ? Json() : Json(e.decided_at));
  v.Set("usable_until", e.state == ApprovalState::kGranted ? Json(e.usable_until) : Json());
  v.Set("denied_by", e.state == ApprovalState::kDenied ? Json(e.denied_by) : Json());
  v.Set("reason", e.state == ApprovalState::kDenied ? Json(e.reason) : Json());
  v.Set("parked", static_cast<int64_t>(e.waiters.size()));
  return v;
}

void ApprovalBook::Finish(Changes* changes) {
  if (changes->events) {
    // One deliverer at a time, draining the outbox in order: events reach on_event_ in the
    // order they were queued (under mu_), whichever thread queued them. When this returns,
    // this thread's events have been delivered (by it or by the deliverer before it).
    std::lock_guard<std::mutex> deliver(deliver_mu_);
    for (;;) {
      std::vector<Json> batch;
      uint64_t upto = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (outbox_.empty()) break;
        batch.swap(outbox_);
        upto = queued_events_;
      }
      if (on_event_) {
        for (const Json& ev : batch) on_event_(ev);
      }
      std::lock_guard<std::mutex> lock(mu_);
      delivered_events_ = upto;
    }
  }
  // Published now: release the parked calls. (No lost wake-up: a Wait checks under mu_, and
  // delivered_events_ changed under mu_ before this.)
  for (const std::shared_ptr<Entry>& e : changes->wake) e->cv.notify_all();
}

// --- Public methods --------------------------------------------------------------------------

core::Result<Ticket> ApprovalBook::Request(const ApprovalRequest& request) {
  struct Field {
    const char* name;
    const std::string* value;
    bool required;
  };
  const Field fields[] = {{"run", &request.run, true},
                          {"sid", &request.sid, true},
                          {"agent", &request.agent, true},
                          {"human", &request.human, true},
                          {"task", &request.task, false},
                          {"action_id", &request.action_id, true},
                          {"group", &request.group, true},
                          {"policy", &request.policy, false},
                          {"decision_id", &request.decision_id, false}};
  for (const Field& f : fields) {
    MANDATE_RETURN_IF_ERROR(CheckField(f.name, *f.value, f.required, core::kApprovalFieldBytesMax));
  }
  if (!IsLowerHexSha256(request.args_sha256)) {
    return MakeError(ErrorCode::kBadRequest,
                     "approval: args_sha256 must be 64 lowercase hex digits");
  }
  auto group = groups_.find(request.group);
  if (group == groups_.end()) {
    return MakeError(ErrorCode::kNotFound,
                     "approval: no approval group \"" + request.group + "\" is configured");
  }
  if (core::Status s = request.args_display.CheckSerializable(); !s.ok()) {
    return MakeError(ErrorCode::kBadRequest, "approval: arguments: " + s.error().message);
  }
  // Serialized before taking the lock (the arguments may be large).
  if (std::string display = request.args_display.Dump();
      display.size() > core::kApprovalArgsBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "approval: the arguments are " + std::to_string(display.size()) +
                         " bytes as JSON; approvers can be shown at most " +
                         std::to_string(core::kApprovalArgsBytesMax));
  }
  const std::string key = KeyOf(request);

  Changes changes;
  core::Result<Ticket> out = MakeError(ErrorCode::kInternal, "approval: unreachable");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_.NowUnixMicros();
    SweepLocked(now, &changes);
    auto found = by_key_.find(key);
    if (found != by_key_.end()) {
      Entry& e = *found->second;
      Ticket t;
      t.id = e.id;
      t.wait_micros = e.group->wait_micros;
      t.expires_at_unix_micros = e.expires_at;
      switch (e.state) {
        case ApprovalState::kPending:
          t.state = ApprovalState::kPending;
          break;
        case ApprovalState::kGranted:
          // A grant made while calls were parked went to one of them (state used): this one
          // went to nobody yet.
          if (e.holder == 0 && PublishedLocked(e)) {
            TakeLocked(std::shared_ptr<Entry>(found->second), now);
            t.state = ApprovalState::kGranted;
          } else {
            t.state = ApprovalState::kPending;  // its Wait takes it once published
          }
          break;
        case ApprovalState::kDenied:
          t.state = ApprovalState::kDenied;
          break;
        case ApprovalState::kUsed:
        case ApprovalState::kExpired:
          // Invariant: used and expired approvals are never found by key.
          MANDATE_CHECK(false);
      }
      out = std::move(t);
    } else if (pending_timeline_.size() >= core::kApprovalsPendingMax) {
      out = MakeError(ErrorCode::kConflict,
                      "approval: " + std::to_string(core::kApprovalsPendingMax) +
                          " approvals are pending, the most Mandate holds; decide some or "
                          "let them expire");
    } else if (auto s = pending_by_sid_.find(request.sid);
               s != pending_by_sid_.end() && s->second >= core::kApprovalsPendingPerSessionMax) {
      out =
          MakeError(ErrorCode::kConflict, "approval: session " + request.sid + " already has " +
                                              std::to_string(core::kApprovalsPendingPerSessionMax) +
                                              " pending approvals, the most one session may have");
    } else {
      auto e = std::make_shared<Entry>();
      e->id = core::NewId("apr");
      e->seq = next_seq_++;
      e->key = key;
      e->req = request;
      e->group = &group->second.spec;
      e->created_at = now;
      e->expires_at = SatAdd(now, e->group->expiry_micros);
      e->deadline = e->expires_at;
      by_id_.emplace(e->id, e);
      by_key_.emplace(key, e);
      by_seq_.emplace(e->seq, e);
      pending_timeline_.insert({e->deadline, e->seq});
      ++pending_by_sid_[request.sid];

      Json ev = Json::MakeObject();
      ev.Set("type", "approval.requested");
      ev.Set("args", e->req.args_display);
      ev.Set("min_approvers", e->group->min_approvers);
      ev.Set("exclude_requester", e->group->exclude_requester);
      ev.Set("created_at", e->created_at);
      ev.Set("expires_at", e->expires_at);
      EmitLocked(std::move(ev), e, &changes);

      Ticket t;
      t.id = e->id;
      t.state = ApprovalState::kPending;
      t.created = true;
      t.wait_micros = e->group->wait_micros;
      t.expires_at_unix_micros = e->expires_at;
      out = std::move(t);
    }
  }
  Finish(&changes);
  return out;
}

ApprovalState ApprovalBook::Wait(const std::string& id, int64_t max_wait_micros,
                                 core::CancelSignal* cancel) {
  using SteadyClock = std::chrono::steady_clock;
  // Bounded so the deadline cannot overflow; no approval lives longer anyway.
  max_wait_micros = std::clamp<int64_t>(max_wait_micros, 0, core::kApprovalExpiryMicrosMax);
  const SteadyClock::time_point deadline =
      SteadyClock::now() + std::chrono::microseconds(max_wait_micros);

  std::shared_ptr<Entry> e;
  uint64_t me = 0;
  {
    Changes changes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      SweepLocked(clock_.NowUnixMicros(), &changes);
      auto it = by_id_.find(id);
      if (it != by_id_.end()) {
        e = it->second;
        me = next_waiter_++;
        e->waiters.push_back(me);
      }
    }
    Finish(&changes);
  }
  if (!e) return ApprovalState::kExpired;

  bool cancelled = false;  // guarded by mu_
  // Registered without mu_ held: on an already fired signal the function runs right here.
  core::CancelRegistration registration(cancel, [this, e, &cancelled] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled = true;
    }
    e->cv.notify_all();
  });

  for (;;) {
    Changes changes;
    bool done = false;
    ApprovalState result = ApprovalState::kPending;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const int64_t now = clock_.NowUnixMicros();
      SweepLocked(now, &changes);
      // Events this sweep queued are delivered (below) before anything is decided from them.
      if (!changes.events) {
        const bool published = PublishedLocked(*e);
        if (e->holder == me) {
          // Handed to this call at the grant: it is ours even past the deadline or after a
          // cancel (the grant was first); wait only for the decision's publication.
          if (published) {
            result = ApprovalState::kGranted;
            done = true;
          }
        } else if (e->state == ApprovalState::kGranted && e->holder == 0 && published) {
          // Granted while nobody was parked, and still unused: take it.
          e->holder = me;
          TakeLocked(e, now);
          result = ApprovalState::kGranted;
          done = true;
        } else if (e->state != ApprovalState::kPending && e->state != ApprovalState::kGranted &&
                   published) {
          result = e->state;  // used (by another call), denied, expired
          done = true;
        } else if (cancelled || SteadyClock::now() >= deadline) {
          result = ApprovalState::kPending;
          done = true;
        }
        if (done) {
          auto w = std::find(e->waiters.begin(), e->waiters.end(), me);
          if (w != e->waiters.end()) e->waiters.erase(w);
        } else if (e->holder == me) {
          e->cv.wait(lock);  // for the publication, which notifies
        } else {
          // Wake at the deadline, or when the request expires by the book's clock.
          SteadyClock::time_point wake = deadline;
          if (e->state == ApprovalState::kPending) {
            const int64_t to_expiry = std::max<int64_t>(0, e->expires_at - now);
            if (to_expiry < max_wait_micros) {
              wake = std::min(wake, SteadyClock::now() + std::chrono::microseconds(to_expiry));
            }
          }
          e->cv.wait_until(lock, wake);
        }
      }
    }
    Finish(&changes);
    if (done) return result;
  }
}

core::Result<Vote> ApprovalBook::Approve(const std::string& id, const std::string& approver) {
  MANDATE_RETURN_IF_ERROR(CheckApprover(approver));
  Changes changes;
  core::Result<Vote> out = MakeError(ErrorCode::kInternal, "approval: unreachable");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_.NowUnixMicros();
    SweepLocked(now, &changes);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
      out = MakeError(ErrorCode::kNotFound, "approval: no approval " + id);
    } else if (const std::shared_ptr<Entry>& e = it->second; e->state != ApprovalState::kPending) {
      out = MakeError(ErrorCode::kConflict, "approval: approval " + id + " is already " +
                                                std::string(ApprovalStateName(e->state)));
    } else if (e->group->exclude_requester && approver == e->req.human) {
      out = MakeError(ErrorCode::kPolicyDenied,
                      "approval: " + approver +
                          " asked for this call (their agent acts for them) and approval group " +
                          e->req.group + " excludes the requester");
    } else {
      std::shared_ptr<Entry> entry = e;  // `e` refers into by_id_, which eviction may change
      Vote v;
      v.id = id;
      v.min_approvers = entry->group->min_approvers;
      if (std::find(entry->approvers.begin(), entry->approvers.end(), approver) ==
          entry->approvers.end()) {
        v.counted = true;
        entry->approvers.push_back(approver);
        Json ev = Json::MakeObject();
        ev.Set("type", "approval.approved");
        ev.Set("approver", approver);
        ev.Set("approvers", Json::StringArray(entry->approvers));
        ev.Set("min_approvers", entry->group->min_approvers);
        EmitLocked(std::move(ev), entry, &changes);
        if (entry->approvers.size() >= entry->group->min_approvers) {
          entry->state = ApprovalState::kGranted;
          entry->decided_at = now;
          entry->usable_until = SatAdd(now, entry->group->expiry_micros);
          MakeDecidedLocked(entry, now, entry->usable_until, &changes);
          Json decided = Json::MakeObject();
          decided.Set("type", "approval.decided");
          decided.Set("state", "granted");
          decided.Set("approvers", Json::StringArray(entry->approvers));
          decided.Set("usable_until", entry->usable_until);
          EmitLocked(std::move(decided), entry, &changes);
          entry->decision_event = queued_events_;
          HandOutLocked(entry, now);
          changes.wake.push_back(entry);
        }
      }
      v.state = entry->state == ApprovalState::kPending ? ApprovalState::kPending
                                                        : ApprovalState::kGranted;
      v.approvers = entry->approvers;
      out = std::move(v);
    }
  }
  Finish(&changes);
  return out;
}

core::Result<Vote> ApprovalBook::Deny(const std::string& id, const std::string& approver,
                                      const std::string& reason) {
  MANDATE_RETURN_IF_ERROR(CheckApprover(approver));
  if (reason.size() > core::kApprovalReasonBytesMax) {
    return MakeError(ErrorCode::kBadRequest, "approval: the reason is longer than " +
                                                 std::to_string(core::kApprovalReasonBytesMax) +
                                                 " bytes");
  }
  if (!core::IsValidUtf8(reason)) {
    return MakeError(ErrorCode::kBadRequest, "approval: the reason is not valid UTF-8");
  }
  Changes changes;
  core::Result<Vote> out = MakeError(ErrorCode::kInternal, "approval: unreachable");
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_.NowUnixMicros();
    SweepLocked(now, &changes);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
      out = MakeError(ErrorCode::kNotFound, "approval: no approval " + id);
    } else if (it->second->state != ApprovalState::kPending) {
      out = MakeError(ErrorCode::kConflict, "approval: approval " + id + " is already " +
                                                std::string(ApprovalStateName(it->second->state)));
    } else {
      std::shared_ptr<Entry> e = it->second;
      e->state = ApprovalState::kDenied;
      e->decided_at = now;
      e->denied_by = approver;
      e->reason = reason;
      e->req.args_display = Json();
      // Remembered (and found by key, refusing retries) for an expiry.
      MakeDecidedLocked(e, now, SatAdd(now, e->group->expiry_micros), &changes);
      Json ev = Json::MakeObject();
      ev.Set("type", "approval.decided");
      ev.Set("state", "denied");
      ev.Set("approvers", Json::StringArray(e->approvers));
      ev.Set("denied_by", approver);
      ev.Set("reason", reason);
      EmitLocked(std::move(ev), e, &changes);
      e->decision_event = queued_events_;
      changes.wake.push_back(e);
      Vote v;
      v.id = id;
      v.state = ApprovalState::kDenied;
      v.approvers = e->approvers;
      v.min_approvers = e->group->min_approvers;
      v.counted = true;
      out = std::move(v);
    }
  }
  Finish(&changes);
  return out;
}

Json ApprovalBook::List(ListFilter filter, size_t limit) {
  Changes changes;
  Json items = Json::MakeArray();
  bool truncated = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SweepLocked(clock_.NowUnixMicros(), &changes);
    size_t n = 0;
    for (const auto& [seq, e] : by_seq_) {
      if (filter == ListFilter::kPending && e->state != ApprovalState::kPending) continue;
      if (limit != 0 && n == limit) {
        truncated = true;
        break;
      }
      items.Push(ViewLocked(*e));
      ++n;
    }
  }
  Finish(&changes);
  Json out = Json::MakeObject();
  out.Set("approvals", std::move(items));
  out.Set("truncated", truncated);
  return out;
}

std::optional<Json> ApprovalBook::Get(const std::string& id) {
  Changes changes;
  std::optional<Json> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SweepLocked(clock_.NowUnixMicros(), &changes);
    auto it = by_id_.find(id);
    if (it != by_id_.end()) out = ViewLocked(*it->second);
  }
  Finish(&changes);
  return out;
}

void ApprovalBook::CollectExpired() {
  Changes changes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SweepLocked(clock_.NowUnixMicros(), &changes);
  }
  Finish(&changes);
}

size_t ApprovalBook::pending_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_timeline_.size();
}

size_t ApprovalBook::decided_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decided_timeline_.size();
}

}  // namespace mandate::approval
