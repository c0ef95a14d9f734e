// Budgets that never overrun (DESIGN.md section 6). A budget caps one metric (calls, writes,
// tokens, spend in micro-USD or a custom counter) per scope value (session, run, agent, human or
// task) per window (the run, a sliding duration, or the current UTC day). Every governed call
// reserves its estimated cost on every matching budget before the upstream call (all or
// nothing), and settles the actual cost after it.
//
// Guarantees:
//   - Exact under concurrency: a reservation is admitted only if, for every matching budget,
//     used + reserved + cost <= limit, checked and applied atomically over all of them. With
//     a limit of N calls, exactly N concurrent Reserves succeed. (One ledger = one node; the
//     several-node leasing of DESIGN.md section 9 is not part of this module.)
//   - Overshoot only by settlement: Settle may record more than was reserved (an LLM answer
//     longer than estimated). Usage can then end above the limit by that difference, never by
//     anything admitted; every later Reserve on that bucket is refused until the window moves.
//   - Restarts never reset a window: the reservation and settlement JSON written into the audit
//     log (shapes below) are replayed with Recover / RecoverSettlement at start. A reservation
//     without a recorded settlement counts as fully used (conservative).
//   - Bounded memory: at most core::kBudgetBucketsMax live buckets; buckets whose window has
//     passed (and that no reservation still holds) are garbage-collected.
//
// Vocabulary. A *bucket* is one budget's account for one scope value and one window instance.
// Its *key* is a string unique within the budget:
//     "<scope>:<subject>"                      sliding windows; window `run` with scope
//                                              session or session_tree (the subject fixes the run)
//     "<scope>:<subject>|run:<run id>"         window `run`, scope agent, human or task
//     "<scope>:<subject>|day:<YYYY-MM-DD>"     window `1d` (the UTC day of the reservation)
// where <subject> and <run id> have '%' and '|' percent-encoded (%25, %7C), so '|' only ever
// separates the window part. Example: "agent:triage-bot|day:2026-01-01".
//
// JSON shapes (the integrator writes them into the audit log; a format doc in docs/formats/
// should point here):
//   Reservation::ToJson(), written as "budgets" of `call.decided`: an array, one element per
//   budget the call matched, in budget order:
//     [{"budget":"triage-writes","key":"agent:triage-bot|day:2026-01-01","metric":"writes",
//       "amount":1,"at":1767225600000000}]
//     budget  the budget's name;          key     the bucket key (above);
//     metric  the budget's metric name;   amount  the reserved (estimated) cost, >= 0;
//     at      the Reserve time, Unix microseconds (fixes the day and the sliding-window slot).
//   Reservation::SettlementJson(actual) / ReleaseJson(), written into `call.completed` (or
//   `call.cancelled`): the same array with one more member per element,
//     "actual": the amount finally counted, >= 0 (0 for a release).
//   An empty array means the call matched no budget.
//
// Thread safety: BudgetLedger's methods may be called concurrently from any thread. Each
// budget has its own mutex; a Reserve locks the mutexes of the budgets it matches in budget
// order, so calls that match different budgets do not contend. Reservation, Exceeded,
// BudgetSpec etc. are values: concurrent reads are safe, writes need external sync.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mandate/core/action.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::budget {

// --- Budget declarations ---------------------------------------------------------------------

enum class MetricKind : uint8_t {
  kCalls,           // 1 per call (implied by the ledger)
  kWrites,          // 1 per call of class write or destructive, 0 for read (implied)
  kInputTokens,     // from the caller's estimate, settled with the actual count
  kOutputTokens,    // idem
  kSpendUsdMicros,  // idem
  kCustom,          // a named counter, from the caller's estimate
};

struct Metric {
  MetricKind kind = MetricKind::kCalls;
  // The metric's name: "calls", "writes", "input_tokens", "output_tokens", "spend_usd_micros",
  // or the custom counter's name ([a-z][a-z0-9_]*, at most kConfigNameBytesMax bytes). It is
  // the key of CallFacts::estimate and of Settle's `actual`.
  std::string name = "calls";
  bool operator==(const Metric&) const = default;
};

// Parses a metric name. Any [a-z][a-z0-9_]* name that is not a built-in one is a custom
// counter. Errors: kBadRequest naming the accepted forms.
core::Result<Metric> ParseMetric(std::string_view text);

struct Window {
  enum class Kind : uint8_t {
    // The lifetime of the run (root session): never resets. A run admits calls only within
    // its maximum lifetime (kTokenTtlSecondsMax at most), so a bucket idle for
    // kBudgetRunIdleSecondsMax can never be used again and is collected.
    kRun,
    kSliding,      // the last duration_micros (approximately; see below)
    kCalendarDay,  // the current UTC day; resets at 00:00 UTC
  };
  Kind kind = Kind::kRun;
  // kSliding only: a whole number of milliseconds in [1s, kBudgetWindowSecondsMax]. The window
  // is kept as 60 slots of ceil(duration / 60) each, plus the current slot: usage counts for at
  // least the duration and at most one slot (1/60 of the duration) longer. It errs towards
  // refusing, never towards overrunning.
  int64_t duration_micros = 0;

  // "run", "1d", or the sliding duration in its largest exact unit ("90m", "2d", "1500ms").
  // ParseWindow(ToString()) gives back the same window.
  std::string ToString() const;
  bool operator==(const Window&) const = default;
};

// Parses "run"; "1d" (calendar day, UTC); or a sliding duration <digits><unit> with unit ms,
// s, m, h or d ("30s", "15m", "1h", "2d", "1500ms") of at least 1s and at most
// kBudgetWindowSecondsMax. Note "1d" is the calendar day while "24h" and "2d" are sliding.
// Errors: kBadRequest saying what is wrong (empty, no number, no or unknown unit, fraction,
// shorter than 1s, too long).
core::Result<Window> ParseWindow(std::string_view text);

enum class Scope : uint8_t {
  kSession,      // one session (CallFacts::sid)
  kSessionTree,  // the whole delegation tree of the run (CallFacts::run, the root sid)
  kAgent,        // CallFacts::agent
  kHuman,        // CallFacts::human
  kTask,         // CallFacts::task; calls without a task share the bucket of the empty task
};

std::string_view ScopeName(Scope scope);  // "session", "session_tree", "agent", "human", "task"
// Errors: kBadRequest naming the accepted scopes.
core::Result<Scope> ParseScope(std::string_view text);

// Which calls a budget counts. Every non-empty field must match (AND); within a field, any
// value matches (OR). An empty field matches every call.
struct Match {
  std::vector<std::string> agents;
  std::vector<std::string> humans;
  std::vector<std::string> upstreams;
  // Exact action ids "<upstream>:<tool>", or "<upstream>:*" for every tool of an upstream.
  std::vector<std::string> actions;
  std::vector<core::ActionClass> classes;
};

struct BudgetSpec {
  std::string name;  // unique within a ledger, 1..kConfigNameBytesMax bytes
  Metric metric;
  int64_t limit = 0;  // >= 0; a limit of 0 refuses every call with a positive cost
  Window window;
  Scope scope = Scope::kSession;
  Match match;
};

// Checks one spec on its own. Errors: kBadRequest naming the budget and the problem: empty or
// too long name; a metric whose kind and name disagree or whose name is not a valid counter
// name; negative limit; a sliding window outside [1s, kBudgetWindowSecondsMax] or not a whole
// number of milliseconds; an unknown scope or window kind; a match field with more than
// kBudgetMatchValuesMax values, an empty value, or an action that is not "<upstream>:<tool>"
// or "<upstream>:*".
core::Status Validate(const BudgetSpec& spec);

// --- Calls -------------------------------------------------------------------------------

// What the ledger needs to know about one governed call.
struct CallFacts {
  std::string sid;  // the calling session
  std::string run;  // the root session of its delegation tree
  std::string agent;
  std::string human;
  std::string task;  // may be empty
  std::string upstream;
  std::string action_id;  // "<upstream>:<tool>"
  core::ActionClass cls = core::ActionClass::kDestructive;
  // Estimated cost per metric name ("input_tokens", "spend_usd_micros", custom counters).
  // Absent metrics cost 0. "calls" and "writes" entries are ignored: the ledger counts 1 call
  // per call and 1 write per call of class write or destructive. Values must be >= 0.
  std::map<std::string, int64_t> estimate;
};

// One budget a reservation touched.
struct ReservationEntry {
  std::string budget;  // the budget's name
  std::string key;     // the bucket key (see the top of this file)
  Metric metric;
  int64_t amount = 0;  // reserved (estimated) cost, >= 0
  // Position of the budget in the ledger that made the reservation (Settle's fast path; it is
  // checked against `budget`, so a reservation from another ledger is ignored, not misapplied).
  uint32_t budget_index = 0;
};

// The result of a successful Reserve: what is held on which buckets. Move-only, so one
// reservation is settled once: Settle and Release close it (a second Settle or Release of the
// same object is a no-op). A default-constructed or moved-from Reservation is closed and
// empty. Reservations must not be settled from two threads at once.
// Every open reservation must end in exactly one Settle or Release: destroying it open (or
// move-assigning over it) leaves its amounts reserved, refusing calls as if it were still in
// flight, until the process restarts (recovery then counts it as used).
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  int64_t at_unix_micros() const { return at_unix_micros_; }  // the Reserve time
  const std::vector<ReservationEntry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  // Returned by Reserve and not yet settled nor released.
  bool open() const { return open_; }

  // The reservation JSON (array; shape at the top of this file). Deterministic.
  core::Json ToJson() const;
  // The settlement JSON Settle(*this, actual) applies: each element of ToJson() plus "actual",
  // the amount of `actual` for its metric (clamped to >= 0), else the reserved amount.
  core::Json SettlementJson(const std::map<std::string, int64_t>& actual) const;
  // The settlement JSON of Release(*this): every "actual" is 0.
  core::Json ReleaseJson() const;

 private:
  friend class BudgetLedger;
  uint64_t ledger_id_ = 0;  // the ledger that made it; Settle ignores other ledgers' reservations
  int64_t at_unix_micros_ = 0;
  std::vector<ReservationEntry> entries_;
  // mutable: Settle/Release take the reservation by const reference and close it.
  mutable bool open_ = false;
};

// Why a Reserve was refused. Filled when Reserve fails with kBudgetExceeded.
struct Exceeded {
  std::string budget;  // the first budget (in ledger order) the call did not fit
  std::string key;     // its bucket key
  std::string metric;  // its metric name
  int64_t limit = 0;
  int64_t usage = 0;      // used + reserved in the bucket at the time of the refusal
  int64_t requested = 0;  // this call's cost on that budget
  // When the call would fit again, assuming no new usage, Unix microseconds; 0 when no window
  // reset makes room: window `run`, or a cost above the limit itself.
  //   1d       the next 00:00 UTC.
  //   sliding  the end of the first slot whose leaving frees enough settled usage; when
  //            in-flight reservations alone block the call, the time by which everything now
  //            counted (settled and in flight, which settles at its Reserve time) has left the
  //            window: a conservative upper bound.
  int64_t reset_at_unix_micros = 0;
  // The refusal was not this budget's limit but the ledger's: core::kBudgetBucketsMax live
  // buckets and the call needed a new one (usage 0, reset_at 0). Fail closed; see Reserve.
  bool ledger_full = false;

  // {"budget","key","metric","limit","usage","requested","reset_at_unix_micros","ledger_full"}
  // for a `budget.exceeded` audit record or an admin answer.
  core::Json ToJson() const;
};

// The ledger of every budget's usage. Created once from the config's budgets; holds the live
// buckets in memory and is rebuilt from the audit log at start (Recover*).
class BudgetLedger {
 public:
  // `clock` must outlive the ledger. Errors: kBadRequest when a spec fails Validate (the
  // message names the budget), two specs share a name, or there are more than kBudgetsMax.
  static core::Result<std::unique_ptr<BudgetLedger>> Create(std::vector<BudgetSpec> specs,
                                                            const core::Clock& clock);
  ~BudgetLedger();
  BudgetLedger(const BudgetLedger&) = delete;
  BudgetLedger& operator=(const BudgetLedger&) = delete;

  // Reserves the call's cost on every budget whose match it satisfies, or on none.
  // The cost on a budget is 1 for calls, 1 for writes when facts.cls is write or destructive
  // (else 0), and facts.estimate[metric name] (default 0) for every other metric. A matching
  // budget is reserved even at cost 0 (so Settle can add the actual cost) and is listed in the
  // audit record. A call is admitted on a budget when used + reserved + cost <= limit in its
  // bucket (so a zero-cost call is refused only by a bucket already over its limit).
  // A call that matches no budget gets an empty Reservation. The caller must Settle or
  // Release every Reservation it gets (see Reservation).
  //
  // Errors (nothing is reserved on any budget):
  //   kBudgetExceeded  some matching budget has no room; when `exceeded` is non-null it is
  //                    filled with the first such budget's details (see Exceeded). Also when
  //                    the call needs a new bucket while kBudgetBucketsMax buckets are live
  //                    (after collecting expired ones): Exceeded::ledger_full is set. A full
  //                    ledger refuses new keys rather than forget old usage (fail closed).
  //   kBadRequest      a negative value in facts.estimate, or a facts string longer than
  //                    kBudgetSubjectBytesMax.
  //   kInternal        facts.sid, run, agent, human, upstream or action_id is empty (the
  //                    gateway always knows them; a call without them is a bug, refused).
  core::Result<Reservation> Reserve(const CallFacts& facts, Exceeded* exceeded = nullptr);

  // Replaces each entry's reserved amount with the actual one: actual[metric name] (negative
  // values count as 0) or, for metrics absent from `actual`, the reserved amount. The actual
  // amount is counted at the reservation's time (its day; its sliding slot, and dropped if
  // that slot has already left the window). It may exceed the reservation (see the top of this
  // file). Closes the reservation; a closed reservation, or entries of another ledger, are
  // ignored. Never fails.
  void Settle(const Reservation& reservation, const std::map<std::string, int64_t>& actual);

  // Drops the reservation (the call failed before any side effect): the same as Settle with 0
  // for every metric. Closes the reservation.
  void Release(const Reservation& reservation);

  // Recovery at start: replay the audit log in order, calling Recover with every `call.decided`
  // record's "budgets" array and RecoverSettlement with every `call.completed` /
  // `call.cancelled` record's settlement array. Recover counts each entry's amount as *used*
  // at its "at" time (a reservation never settled therefore counts in full);
  // RecoverSettlement adds actual - amount to the same bucket (never below 0; when the bucket
  // is gone, only an overshoot, actual > amount, is counted).
  // Entries are skipped (cheaply, without allocating a bucket) when their window has passed
  // relative to the ledger's clock (1d: an earlier UTC day; sliding: older than the window;
  // run: older than kBudgetRunIdleSecondsMax), when no budget has their name, or when their budget
  // was redefined since (another metric, scope or window kind, detected from metric and key). May
  // run concurrently with Reserve, but the intended use is before serving.
  //
  // Errors:
  //   kBadRequest  `json` is not an array of entries of the shapes above (a missing or
  //                mistyped member, a negative amount, a day key that disagrees with "at",
  //                more than kBudgetsMax entries). Nothing of `json` is applied.
  //   kInternal    a needed bucket could not be created: kBudgetBucketsMax buckets are live.
  //                Earlier entries of `json` may have been applied. The ledger then
  //                under-counts; the caller must fail closed (not serve).
  core::Status Recover(const core::Json& reservation_json);
  core::Status RecoverSettlement(const core::Json& settlement_json);

  // A snapshot for `mandate budgets` and the admin API:
  //   {"buckets_live":N,"buckets_max":M,"budgets":[{"name","metric","limit","window","scope",
  //    "buckets":[{"key","used","reserved","limit","reset_at_unix_micros"}]}]}
  // Budgets in ledger order, buckets sorted by key; buckets with nothing used nor reserved in
  // the current window are left out. A bucket's reset_at is when its current usage will have
  // left the window with no new usage (1d: its next 00:00 UTC; sliding: when its newest
  // usage leaves; run: 0, never).
  core::Json Usage() const;

  // Garbage-collects every bucket with nothing reserved whose usage has left its window (or is
  // 0). Reserve already does this for each budget at most once a second of clock time, and for
  // all budgets when the ledger is full; exposed for an idle periodic sweep and tests.
  void CollectExpired();

  // Live buckets, over all budgets (<= kBudgetBucketsMax).
  size_t live_buckets() const { return live_buckets_.load(std::memory_order_relaxed); }
  size_t size() const { return shards_.size(); }  // number of budgets

 private:
  struct Shard;
  enum class TryOutcome : uint8_t { kReserved, kRefused, kFull };

  explicit BudgetLedger(const core::Clock& clock);
  TryOutcome TryReserve(Reservation* r, int64_t now, Exceeded* exceeded);
  void SettleImpl(const Reservation& r, const std::map<std::string, int64_t>* actual);
  core::Status RecoverImpl(const core::Json& json, bool settlement);
  void SweepLocked(Shard& shard, int64_t now);
  // Collects every shard at most once a second; returns whether it ran.
  bool CollectExpiredIfDue(int64_t now);

  const core::Clock& clock_;
  const uint64_t id_;  // process-unique, stamped on this ledger's reservations
  std::vector<std::unique_ptr<Shard>> shards_;  // one per budget, in spec order; immutable
  std::unordered_map<std::string, uint32_t> index_by_name_;  // immutable after Create
  std::atomic<size_t> live_buckets_{0};
  std::atomic<int64_t> last_full_sweep_micros_;
};

}  // namespace mandate::budget
