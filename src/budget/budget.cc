// The budget ledger: buckets, reservations, settlement, recovery (contract in budget.h).
#include "mandate/budget/budget.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "mandate/core/limits.h"

namespace mandate::budget {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

constexpr int64_t kMicrosPerSecond = 1000000;
constexpr int64_t kMicrosPerDay = 24 * 60 * 60 * kMicrosPerSecond;
// A sliding window is kSlotsPerWindow slots of ceil(duration / kSlotsPerWindow), plus the
// current one: usage counts for at least the duration and at most one slot longer.
constexpr int64_t kSlotsPerWindow = 60;
constexpr int64_t kSlots = kSlotsPerWindow + 1;
// Each budget's buckets are swept for expired ones at most this often (clock time).
constexpr int64_t kSweepIntervalMicros = kMicrosPerSecond;
constexpr int64_t kRunIdleMicros = core::kBudgetRunIdleSecondsMax * kMicrosPerSecond;
// Reservations touching up to this many budgets find their buckets without a heap allocation.
constexpr size_t kInlineEntries = 8;
constexpr int64_t kNever = std::numeric_limits<int64_t>::min();

std::atomic<uint64_t> next_ledger_id{1};

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return r;
}

int64_t DayOf(int64_t unix_micros) { return FloorDiv(unix_micros, kMicrosPerDay); }

// Days since 1970-01-01 -> civil date (H. Hinnant's civil_from_days, proleptic Gregorian).
void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2 ? 1 : 0);
}

// "YYYY-MM-DD". On every Reserve of a 1d budget, so without snprintf.
void AppendDate(int64_t day, std::string* out) {
  int64_t y = 0;
  unsigned m = 0, d = 0;
  CivilFromDays(day, &y, &m, &d);
  if (y < 0 || y > 9999) {  // not a date a clock of this century gives; kept unambiguous
    out->append(std::to_string(y));
  } else {
    auto year = static_cast<unsigned>(y);
    const char digits[4] = {
        static_cast<char>('0' + year / 1000), static_cast<char>('0' + year / 100 % 10),
        static_cast<char>('0' + year / 10 % 10), static_cast<char>('0' + year % 10)};
    out->append(digits, 4);
  }
  const char rest[6] = {'-', static_cast<char>('0' + m / 10), static_cast<char>('0' + m % 10),
                        '-', static_cast<char>('0' + d / 10), static_cast<char>('0' + d % 10)};
  out->append(rest, 6);
}

std::string DateOf(int64_t day) {
  std::string s;
  AppendDate(day, &s);
  return s;
}

// "2026-01-02T00:00:00Z", for messages.
std::string FormatUtc(int64_t unix_micros) {
  int64_t day = DayOf(unix_micros);
  int64_t secs = FloorDiv(unix_micros - day * kMicrosPerDay, kMicrosPerSecond);
  std::string out = DateOf(day);
  char buf[16];
  int n = std::snprintf(buf, sizeof(buf), "T%02d:%02d:%02dZ", static_cast<int>(secs / 3600),
                        static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60));
  out.append(buf, static_cast<size_t>(n));
  return out;
}

// Percent-encodes '%' and '|' so '|' in a key only ever separates the window part.
void AppendEscaped(std::string_view s, std::string* out) {
  for (;;) {
    size_t special = s.find_first_of("%|");
    out->append(s.substr(0, special));
    if (special == std::string_view::npos) return;
    out->append(s[special] == '%' ? "%25" : "%7C");
    s.remove_prefix(special + 1);
  }
}

bool AnyOf(const std::vector<std::string>& values, const std::string& x) {
  return values.empty() || std::find(values.begin(), values.end(), x) != values.end();
}

bool ActionMatches(const std::vector<std::string>& actions, const std::string& action_id) {
  if (actions.empty()) return true;
  for (const std::string& a : actions) {
    if (a == action_id) return true;
    // "<upstream>:*": every tool of the upstream (the prefix keeps its colon).
    if (a.size() >= 2 && a.back() == '*' && a[a.size() - 2] == ':' &&
        action_id.size() >= a.size() &&
        action_id.compare(0, a.size() - 1, a, 0, a.size() - 1) == 0) {
      return true;
    }
  }
  return false;
}

bool Matches(const Match& m, const CallFacts& f) {
  return AnyOf(m.agents, f.agent) && AnyOf(m.humans, f.human) && AnyOf(m.upstreams, f.upstream) &&
         ActionMatches(m.actions, f.action_id) &&
         (m.classes.empty() ||
          std::find(m.classes.begin(), m.classes.end(), f.cls) != m.classes.end());
}

int64_t CostOf(const Metric& metric, const CallFacts& f) {
  switch (metric.kind) {
    case MetricKind::kCalls:
      return 1;
    case MetricKind::kWrites:
      return f.cls == core::ActionClass::kRead ? 0 : 1;
    default: {
      auto it = f.estimate.find(metric.name);
      return it == f.estimate.end() ? 0 : it->second;
    }
  }
}

const std::string& SubjectOf(Scope scope, const CallFacts& f) {
  switch (scope) {
    case Scope::kSession:
      return f.sid;
    case Scope::kSessionTree:
      return f.run;
    case Scope::kAgent:
      return f.agent;
    case Scope::kHuman:
      return f.human;
    case Scope::kTask:
      break;
  }
  return f.task;
}

core::Status CheckFacts(const CallFacts& f) {
  struct Field {
    const char* name;
    const std::string* value;
    bool required;
  };
  const std::array<Field, 7> fields = {{{"sid", &f.sid, true},
                                        {"run", &f.run, true},
                                        {"agent", &f.agent, true},
                                        {"human", &f.human, true},
                                        {"task", &f.task, false},
                                        {"upstream", &f.upstream, true},
                                        {"action_id", &f.action_id, true}}};
  for (const Field& field : fields) {
    if (field.required && field.value->empty()) {
      return MakeError(ErrorCode::kInternal,
                       std::string("budget: the call's ") + field.name + " is unknown");
    }
    if (field.value->size() > core::kBudgetSubjectBytesMax) {
      return MakeError(ErrorCode::kBadRequest,
                       std::string("budget: the call's ") + field.name + " is longer than " +
                           std::to_string(core::kBudgetSubjectBytesMax) + " bytes");
    }
  }
  for (const auto& [metric, value] : f.estimate) {
    if (value < 0) {
      return MakeError(ErrorCode::kBadRequest,
                       "budget: negative estimate " + std::to_string(value) + " for metric \"" +
                           metric.substr(0, core::kConfigNameBytesMax) + "\"");
    }
  }
  return core::OkStatus();
}

// used + reserved + cost <= limit, without overflow (an overflowing sum does not fit).
bool Fits(int64_t used, int64_t reserved, int64_t cost, int64_t limit) {
  int64_t sum = 0;
  if (__builtin_add_overflow(used, reserved, &sum)) return false;
  if (__builtin_add_overflow(sum, cost, &sum)) return false;
  return sum <= limit;
}

// The usage of a sliding window: kSlots time slots in a ring, the newest at `head`.
// Invariant: every slot index in (head - kSlots, head] has its amount at position Pos(index);
// older slots have left and hold no amount. `total` is the sum of all amounts, saturated at
// INT64_MAX (then recomputed whenever an amount drops), so the hot path reads it in O(1).
struct SlidingSlots {
  bool started = false;
  int64_t head = 0;
  int64_t total = 0;
  std::array<int64_t, kSlots> amounts{};

  static size_t Pos(int64_t slot) {
    int64_t p = slot % kSlots;
    return static_cast<size_t>(p < 0 ? p + kSlots : p);
  }

  void Recount() {
    total = 0;
    for (int64_t a : amounts) total = SatAdd(total, a);
  }

  // Makes `slot` the newest, dropping the slots that leave the window. A slot older than head
  // (a clock that stepped back, an older record) moves nothing.
  void Advance(int64_t slot) {
    if (!started) {
      started = true;
      head = slot;
      return;
    }
    if (slot <= head) return;
    if (slot - head >= kSlots) {
      amounts.fill(0);
      total = 0;
    } else {
      for (int64_t s = head + 1; s <= slot; ++s) {
        int64_t& a = amounts[Pos(s)];
        if (a != 0 && total != std::numeric_limits<int64_t>::max()) total -= a;
        a = 0;
      }
      if (total == std::numeric_limits<int64_t>::max()) Recount();
    }
    head = slot;
  }

  // Adds `delta` (possibly negative) at `slot`, never taking the slot below 0. Dropped when
  // the slot has already left the window.
  void Add(int64_t slot, int64_t delta) {
    Advance(slot);
    if (slot <= head - kSlots) return;
    int64_t& a = amounts[Pos(slot)];
    const int64_t old = a;
    a = std::max<int64_t>(0, SatAdd(a, delta));
    if (total == std::numeric_limits<int64_t>::max()) {
      Recount();
    } else {
      total = SatAdd(total - old, a);  // total >= old: exact below saturation
    }
  }

  // Usage counted at `now_slot` (slots in (now_slot - kSlots, head]), without moving the ring.
  int64_t UsedAt(int64_t now_slot) const {
    if (!started) return 0;
    if (now_slot <= head) return total;  // every slot of the ring still counts
    int64_t sum = 0;
    for (int64_t s = std::max(head - kSlots, now_slot - kSlots) + 1; s <= head; ++s) {
      sum = SatAdd(sum, amounts[Pos(s)]);
    }
    return sum;
  }

  // The newest slot with usage counted at `now_slot`, or kNever.
  int64_t NewestUsed(int64_t now_slot) const {
    if (!started) return kNever;
    for (int64_t s = head; s > std::max(head - kSlots, now_slot - kSlots); --s) {
      if (amounts[Pos(s)] != 0) return s;
    }
    return kNever;
  }
};

// One budget's account for one scope value and window instance.
struct Bucket {
  int64_t used = 0;                     // run and 1d windows (sliding ones use `slots`)
  int64_t reserved = 0;                 // held by open reservations
  uint32_t pending = 0;                 // open reservations holding this bucket, even at amount 0
  int64_t day = 0;                      // 1d windows: the UTC day (days since 1970-01-01)
  int64_t last_micros = 0;              // newest reservation (live or recovered) counted here
  std::unique_ptr<SlidingSlots> slots;  // sliding windows
};

}  // namespace

struct BudgetLedger::Shard {
  explicit Shard(BudgetSpec s) : spec(std::move(s)) {
    key_prefix = std::string(ScopeName(spec.scope)) + ":";
    if (spec.window.kind == Window::Kind::kSliding) {
      slot_micros = (spec.window.duration_micros + kSlotsPerWindow - 1) / kSlotsPerWindow;
    }
    // A session, and a session tree, belong to exactly one run: their subject fixes it.
    key_has_run = spec.window.kind == Window::Kind::kRun && spec.scope != Scope::kSession &&
                  spec.scope != Scope::kSessionTree;
  }

  int64_t SlotOf(int64_t unix_micros) const { return FloorDiv(unix_micros, slot_micros); }

  std::string KeyFor(const CallFacts& f, int64_t now) const {
    const std::string& subject = SubjectOf(spec.scope, f);
    std::string key;
    key.reserve(key_prefix.size() + subject.size() + 16 + (key_has_run ? f.run.size() + 5 : 0));
    key.append(key_prefix);
    AppendEscaped(subject, &key);
    if (spec.window.kind == Window::Kind::kCalendarDay) {
      key.append("|day:");
      AppendDate(DayOf(now), &key);
    } else if (key_has_run) {
      key.append("|run:");
      AppendEscaped(f.run, &key);
    }
    return key;
  }

  // Whether `key` has this budget's shape (scope and window part); false for records of a
  // budget that was redefined under the same name.
  bool KeyFits(const std::string& key) const {
    if (key.compare(0, key_prefix.size(), key_prefix) != 0) return false;
    size_t bar = key.find('|');
    if (spec.window.kind == Window::Kind::kCalendarDay) {
      return bar != std::string::npos && key.compare(bar, 5, "|day:") == 0;
    }
    if (key_has_run) return bar != std::string::npos && key.compare(bar, 5, "|run:") == 0;
    return bar == std::string::npos;
  }

  // Whether usage recorded at `at` has left every window by `now`.
  bool LeftWindow(int64_t at, int64_t now) const {
    switch (spec.window.kind) {
      case Window::Kind::kCalendarDay:
        return DayOf(at) < DayOf(now);
      case Window::Kind::kSliding:
        return SlotOf(at) <= SlotOf(now) - kSlots;
      case Window::Kind::kRun:
        break;
    }
    return SatAdd(at, kRunIdleMicros) < now;
  }

  void InitBucket(Bucket& b, int64_t at) const {
    b.day = DayOf(at);
    b.last_micros = at;
    if (spec.window.kind == Window::Kind::kSliding) b.slots = std::make_unique<SlidingSlots>();
  }

  // The bucket's usage in the window current at `now`.
  int64_t UsedNow(const Bucket& b, int64_t now) const {
    switch (spec.window.kind) {
      case Window::Kind::kSliding:
        return b.slots->UsedAt(SlotOf(now));
      case Window::Kind::kCalendarDay:
        return b.day < DayOf(now) ? 0 : b.used;
      case Window::Kind::kRun:
        break;
    }
    return SatAdd(b.last_micros, kRunIdleMicros) < now ? 0 : b.used;
  }

  // Counts `delta` (possibly negative; usage never goes below 0) as used at time `at`.
  void AddUsed(Bucket& b, int64_t at, int64_t delta) const {
    if (b.slots) {
      b.slots->Add(SlotOf(at), delta);
    } else {
      b.used = std::max<int64_t>(0, SatAdd(b.used, delta));
    }
  }

  // Nothing held and nothing counted in the current window: the bucket can go.
  bool Collectable(const Bucket& b, int64_t now) const {
    return b.pending == 0 && b.reserved == 0 && UsedNow(b, now) == 0;
  }

  // When the call of `cost` would fit again (see Exceeded::reset_at_unix_micros).
  int64_t ResetAt(const Bucket* b, int64_t used, int64_t reserved, int64_t cost,
                  int64_t now) const {
    if (cost > spec.limit) return 0;
    switch (spec.window.kind) {
      case Window::Kind::kRun:
        return 0;
      case Window::Kind::kCalendarDay:
        return (DayOf(now) + 1) * kMicrosPerDay;
      case Window::Kind::kSliding:
        break;
    }
    const int64_t now_slot = SlotOf(now);
    if (b == nullptr || !b->slots->started) return (now_slot + kSlots) * slot_micros;
    const SlidingSlots& slots = *b->slots;
    const int64_t newest = std::max(now_slot, slots.head);
    // In-flight reservations alone leave no room: they settle at their Reserve time (at the
    // latest the newest slot), so everything counted now has left by the newest slot's end.
    if (reserved > spec.limit - cost) return (newest + kSlots) * slot_micros;
    // Settled usage must free `need`; walk the slots from the oldest still counted.
    const int64_t need = used - (spec.limit - cost - reserved);
    int64_t freed = 0;
    for (int64_t s = std::max(slots.head - kSlots, now_slot - kSlots) + 1; s <= slots.head; ++s) {
      freed = SatAdd(freed, slots.amounts[SlidingSlots::Pos(s)]);
      if (freed >= need) return (s + kSlots) * slot_micros;
    }
    return (newest + kSlots) * slot_micros;
  }

  const BudgetSpec spec;
  std::string key_prefix;   // "<scope>:"
  int64_t slot_micros = 1;  // sliding windows: the width of one slot
  bool key_has_run = false;

  mutable std::mutex mu;
  std::unordered_map<std::string, Bucket> buckets;  // guarded by mu
  int64_t next_sweep_micros = kNever;               // guarded by mu
};

// --- Reservation -----------------------------------------------------------------------------

namespace {

int64_t ActualAmount(const ReservationEntry& e, const std::map<std::string, int64_t>* actual) {
  if (actual == nullptr) return 0;
  auto it = actual->find(e.metric.name);
  if (it == actual->end()) return e.amount;
  return std::max<int64_t>(0, it->second);
}

Json EntryJson(const ReservationEntry& e, int64_t at) {
  return Json(Json::Object{{"budget", Json(e.budget)},
                           {"key", Json(e.key)},
                           {"metric", Json(e.metric.name)},
                           {"amount", Json(e.amount)},
                           {"at", Json(at)}});
}

Json SettlementArray(const Reservation& r, const std::map<std::string, int64_t>* actual) {
  Json out = Json::MakeArray();
  for (const ReservationEntry& e : r.entries()) {
    Json entry = EntryJson(e, r.at_unix_micros());
    entry.Set("actual", Json(ActualAmount(e, actual)));
    out.Push(std::move(entry));
  }
  return out;
}

}  // namespace

Reservation::Reservation(Reservation&& other) noexcept
    : ledger_id_(other.ledger_id_),
      at_unix_micros_(other.at_unix_micros_),
      entries_(std::move(other.entries_)),
      open_(other.open_) {
  other.entries_.clear();
  other.open_ = false;
}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    ledger_id_ = other.ledger_id_;
    at_unix_micros_ = other.at_unix_micros_;
    entries_ = std::move(other.entries_);
    open_ = other.open_;
    other.entries_.clear();
    other.open_ = false;
  }
  return *this;
}

Json Reservation::ToJson() const {
  Json out = Json::MakeArray();
  for (const ReservationEntry& e : entries_) out.Push(EntryJson(e, at_unix_micros_));
  return out;
}

Json Reservation::SettlementJson(const std::map<std::string, int64_t>& actual) const {
  return SettlementArray(*this, &actual);
}

Json Reservation::ReleaseJson() const { return SettlementArray(*this, nullptr); }

Json Exceeded::ToJson() const {
  return Json(Json::Object{{"budget", Json(budget)},
                           {"key", Json(key)},
                           {"metric", Json(metric)},
                           {"limit", Json(limit)},
                           {"usage", Json(usage)},
                           {"requested", Json(requested)},
                           {"reset_at_unix_micros", Json(reset_at_unix_micros)},
                           {"ledger_full", Json(ledger_full)}});
}

// --- BudgetLedger ----------------------------------------------------------------------------

BudgetLedger::BudgetLedger(const core::Clock& clock)
    : clock_(clock),
      id_(next_ledger_id.fetch_add(1, std::memory_order_relaxed)),
      last_full_sweep_micros_(kNever) {}

BudgetLedger::~BudgetLedger() = default;

core::Result<std::unique_ptr<BudgetLedger>> BudgetLedger::Create(std::vector<BudgetSpec> specs,
                                                                 const core::Clock& clock) {
  if (specs.size() > core::kBudgetsMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "more than " + std::to_string(core::kBudgetsMax) + " budgets");
  }
  std::unique_ptr<BudgetLedger> ledger(new BudgetLedger(clock));
  ledger->shards_.reserve(specs.size());
  for (BudgetSpec& spec : specs) {
    MANDATE_RETURN_IF_ERROR(Validate(spec));
    auto index = static_cast<uint32_t>(ledger->shards_.size());
    if (!ledger->index_by_name_.emplace(spec.name, index).second) {
      return MakeError(ErrorCode::kBadRequest, "duplicate budget name \"" + spec.name + "\"");
    }
    ledger->shards_.push_back(std::make_unique<Shard>(std::move(spec)));
  }
  return ledger;
}

void BudgetLedger::SweepLocked(Shard& shard, int64_t now) {
  size_t erased = 0;
  for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
    if (shard.Collectable(it->second, now)) {
      it = shard.buckets.erase(it);
      ++erased;
    } else {
      ++it;
    }
  }
  if (erased > 0) live_buckets_.fetch_sub(erased, std::memory_order_relaxed);
  shard.next_sweep_micros = SatAdd(now, kSweepIntervalMicros);
}

void BudgetLedger::CollectExpired() {
  const int64_t now = clock_.NowUnixMicros();
  for (const auto& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard->mu);
    SweepLocked(*shard, now);
  }
}

bool BudgetLedger::CollectExpiredIfDue(int64_t now) {
  int64_t last = last_full_sweep_micros_.load(std::memory_order_relaxed);
  if (last != kNever && now < SatAdd(last, kSweepIntervalMicros) && now >= last) return false;
  // One caller sweeps; the others refuse (fail closed) rather than queue behind it.
  if (!last_full_sweep_micros_.compare_exchange_strong(last, now)) return false;
  CollectExpired();
  return true;
}

core::Result<Reservation> BudgetLedger::Reserve(const CallFacts& facts, Exceeded* exceeded) {
  MANDATE_RETURN_IF_ERROR(CheckFacts(facts));
  const int64_t now = clock_.NowUnixMicros();
  Reservation r;
  r.ledger_id_ = id_;
  r.at_unix_micros_ = now;
  r.open_ = true;
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    const Shard& shard = *shards_[i];
    if (!Matches(shard.spec.match, facts)) continue;
    r.entries_.push_back(ReservationEntry{shard.spec.name, shard.KeyFor(facts, now),
                                          shard.spec.metric, CostOf(shard.spec.metric, facts), i});
  }
  if (r.entries_.empty()) return r;

  Exceeded local;
  Exceeded* ex = exceeded != nullptr ? exceeded : &local;
  TryOutcome outcome = TryReserve(&r, now, ex);
  if (outcome == TryOutcome::kFull && CollectExpiredIfDue(now)) {
    outcome = TryReserve(&r, now, ex);
  }
  switch (outcome) {
    case TryOutcome::kReserved:
      return r;
    case TryOutcome::kFull:
      return MakeError(ErrorCode::kBudgetExceeded,
                       "budget \"" + ex->budget + "\": the budget ledger is full (" +
                           std::to_string(core::kBudgetBucketsMax) +
                           " live buckets); the call is refused rather than usage forgotten");
    case TryOutcome::kRefused:
      break;
  }
  std::string message = "budget \"" + ex->budget + "\" exceeded: " + ex->metric + " " +
                        std::to_string(ex->usage) + " of " + std::to_string(ex->limit) +
                        " used or reserved in " + ex->key + ", this call needs " +
                        std::to_string(ex->requested);
  message += ex->reset_at_unix_micros != 0
                 ? "; room again at " + FormatUtc(ex->reset_at_unix_micros)
                 : "; no window reset makes room";
  return MakeError(ErrorCode::kBudgetExceeded, std::move(message));
}

BudgetLedger::TryOutcome BudgetLedger::TryReserve(Reservation* r, int64_t now, Exceeded* ex) {
  const std::vector<ReservationEntry>& entries = r->entries_;
  const size_t n = entries.size();

  // Invariant: entries are in ascending budget order, one per budget, so locking them in
  // entry order is the ledger-wide lock order (no deadlock with another Reserve).
  struct Locks {
    const std::vector<std::unique_ptr<Shard>>& shards;
    const std::vector<ReservationEntry>& entries;
    Locks(const std::vector<std::unique_ptr<Shard>>& s, const std::vector<ReservationEntry>& e)
        : shards(s), entries(e) {
      for (const ReservationEntry& x : entries) shards[x.budget_index]->mu.lock();
    }
    ~Locks() {
      for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        shards[it->budget_index]->mu.unlock();
      }
    }
    Locks(const Locks&) = delete;
    Locks& operator=(const Locks&) = delete;
  };

  std::array<Bucket*, kInlineEntries> inline_found{};
  std::vector<Bucket*> heap_found;
  Bucket** found = inline_found.data();
  if (n > kInlineEntries) {
    heap_found.resize(n);
    found = heap_found.data();
  }

  Locks locks(shards_, entries);
  // Check every budget before touching any: all or nothing.
  size_t missing = 0;
  for (size_t k = 0; k < n; ++k) {
    const ReservationEntry& e = entries[k];
    Shard& shard = *shards_[e.budget_index];
    if (now >= shard.next_sweep_micros) SweepLocked(shard, now);
    auto it = shard.buckets.find(e.key);
    Bucket* b = it == shard.buckets.end() ? nullptr : &it->second;
    found[k] = b;
    int64_t used = 0, reserved = 0;
    if (b != nullptr) {
      if (b->slots) b->slots->Advance(shard.SlotOf(now));
      used = shard.UsedNow(*b, now);
      reserved = b->reserved;
    } else {
      ++missing;
    }
    if (!Fits(used, reserved, e.amount, shard.spec.limit)) {
      *ex = Exceeded{shard.spec.name,
                     e.key,
                     shard.spec.metric.name,
                     shard.spec.limit,
                     SatAdd(used, reserved),
                     e.amount,
                     shard.ResetAt(b, used, reserved, e.amount, now),
                     false};
      return TryOutcome::kRefused;
    }
  }

  if (missing > 0) {
    size_t before = live_buckets_.fetch_add(missing, std::memory_order_relaxed);
    if (before + missing > core::kBudgetBucketsMax) {
      live_buckets_.fetch_sub(missing, std::memory_order_relaxed);
      for (size_t k = 0; k < n; ++k) {
        if (found[k] != nullptr) continue;
        const Shard& shard = *shards_[entries[k].budget_index];
        *ex = Exceeded{shard.spec.name,
                       entries[k].key,
                       shard.spec.metric.name,
                       shard.spec.limit,
                       0,
                       entries[k].amount,
                       0,
                       true};
        break;
      }
      return TryOutcome::kFull;
    }
    for (size_t k = 0; k < n; ++k) {
      if (found[k] != nullptr) continue;
      Shard& shard = *shards_[entries[k].budget_index];
      Bucket& b = shard.buckets[entries[k].key];
      shard.InitBucket(b, now);
      found[k] = &b;
    }
  }

  for (size_t k = 0; k < n; ++k) {
    Bucket& b = *found[k];
    b.reserved += entries[k].amount;  // cannot overflow: it fit under the limit above
    ++b.pending;
    b.last_micros = std::max(b.last_micros, now);
  }
  return TryOutcome::kReserved;
}

void BudgetLedger::Settle(const Reservation& reservation,
                          const std::map<std::string, int64_t>& actual) {
  SettleImpl(reservation, &actual);
}

void BudgetLedger::Release(const Reservation& reservation) { SettleImpl(reservation, nullptr); }

void BudgetLedger::SettleImpl(const Reservation& r, const std::map<std::string, int64_t>* actual) {
  if (!r.open_ || r.ledger_id_ != id_) return;
  r.open_ = false;
  for (const ReservationEntry& e : r.entries_) {
    if (e.budget_index >= shards_.size()) continue;
    Shard& shard = *shards_[e.budget_index];
    if (shard.spec.name != e.budget) continue;
    const int64_t amount = ActualAmount(e, actual);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.buckets.find(e.key);
    // Invariant: an open reservation's buckets are pinned (pending > 0), so they exist.
    if (it == shard.buckets.end()) continue;
    Bucket& b = it->second;
    b.reserved = std::max<int64_t>(0, b.reserved - e.amount);
    if (b.pending > 0) --b.pending;
    // No clock read: the bucket's age is that of its newest reservation (a run's calls are all
    // reserved within its lifetime, and an open reservation pins its bucket anyway).
    shard.AddUsed(b, r.at_unix_micros_, amount);
  }
}

namespace {

struct RecoveredEntry {
  const std::string* budget = nullptr;
  const std::string* key = nullptr;
  const std::string* metric = nullptr;
  int64_t amount = 0;
  int64_t actual = 0;
  int64_t at = 0;
};

core::Error BadRecord(size_t i, std::string_view why) {
  return MakeError(ErrorCode::kBadRequest,
                   "budget record entry " + std::to_string(i) + ": " + std::string(why));
}

core::Status ParseRecord(const Json& json, bool settlement, std::vector<RecoveredEntry>* out) {
  if (!json.is_array()) {
    return MakeError(ErrorCode::kBadRequest, "budget record: expected an array of entries");
  }
  const Json::Array& array = json.as_array();
  if (array.size() > core::kBudgetsMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "budget record: more than " + std::to_string(core::kBudgetsMax) + " entries");
  }
  out->reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const Json& x = array[i];
    if (!x.is_object()) return BadRecord(i, "not an object");
    RecoveredEntry e;
    e.budget = x.FindString("budget");
    e.key = x.FindString("key");
    e.metric = x.FindString("metric");
    if (e.budget == nullptr) return BadRecord(i, "\"budget\" is not a string");
    if (e.key == nullptr) return BadRecord(i, "\"key\" is not a string");
    if (e.metric == nullptr) return BadRecord(i, "\"metric\" is not a string");
    const Json* amount = x.Find("amount");
    const Json* at = x.Find("at");
    if (amount == nullptr || !amount->is_int() || amount->as_int() < 0) {
      return BadRecord(i, "\"amount\" is not an integer >= 0");
    }
    if (at == nullptr || !at->is_int()) return BadRecord(i, "\"at\" is not an integer");
    e.amount = amount->as_int();
    e.at = at->as_int();
    if (settlement) {
      const Json* actual = x.Find("actual");
      if (actual == nullptr || !actual->is_int() || actual->as_int() < 0) {
        return BadRecord(i, "\"actual\" is not an integer >= 0");
      }
      e.actual = actual->as_int();
    }
    // The day part of a key names the day of "at"; anything else is not our record.
    size_t bar = e.key->find('|');
    if (bar != std::string::npos && e.key->compare(bar, 5, "|day:") == 0 &&
        e.key->compare(bar + 5, std::string::npos, DateOf(DayOf(e.at))) != 0) {
      return BadRecord(i, "the key's day is not the day of \"at\"");
    }
    out->push_back(e);
  }
  return core::OkStatus();
}

}  // namespace

core::Status BudgetLedger::Recover(const Json& reservation_json) {
  return RecoverImpl(reservation_json, /*settlement=*/false);
}

core::Status BudgetLedger::RecoverSettlement(const Json& settlement_json) {
  return RecoverImpl(settlement_json, /*settlement=*/true);
}

core::Status BudgetLedger::RecoverImpl(const Json& json, bool settlement) {
  std::vector<RecoveredEntry> entries;
  MANDATE_RETURN_IF_ERROR(ParseRecord(json, settlement, &entries));
  const int64_t now = clock_.NowUnixMicros();
  for (const RecoveredEntry& e : entries) {
    auto index = index_by_name_.find(*e.budget);
    if (index == index_by_name_.end()) continue;  // the budget no longer exists
    Shard& shard = *shards_[index->second];
    if (shard.spec.metric.name != *e.metric || !shard.KeyFits(*e.key)) continue;  // redefined
    if (shard.LeftWindow(e.at, now)) continue;  // outside every window: nothing to keep
    // A reservation never settled counts in full; its settlement corrects it.
    const int64_t delta = settlement ? e.actual - e.amount : e.amount;
    if (delta == 0) continue;
    for (int attempt = 0;; ++attempt) {
      std::unique_lock<std::mutex> lock(shard.mu);
      auto it = shard.buckets.find(*e.key);
      if (it == shard.buckets.end()) {
        if (delta < 0) break;  // nothing counted there to correct
        if (live_buckets_.fetch_add(1, std::memory_order_relaxed) + 1 > core::kBudgetBucketsMax) {
          live_buckets_.fetch_sub(1, std::memory_order_relaxed);
          lock.unlock();
          if (attempt == 0) {
            CollectExpired();
            continue;
          }
          return MakeError(ErrorCode::kInternal, "budget recovery: the budget ledger is full (" +
                                                     std::to_string(core::kBudgetBucketsMax) +
                                                     " live buckets)");
        }
        it = shard.buckets.try_emplace(*e.key).first;
        shard.InitBucket(it->second, e.at);
      }
      shard.AddUsed(it->second, e.at, delta);
      it->second.last_micros = std::max(it->second.last_micros, e.at);
      break;
    }
  }
  return core::OkStatus();
}

Json BudgetLedger::Usage() const {
  const int64_t now = clock_.NowUnixMicros();
  Json budgets = Json::MakeArray();
  for (const auto& shard_ptr : shards_) {
    const Shard& shard = *shard_ptr;
    struct Row {
      std::string key;
      int64_t used;
      int64_t reserved;
      int64_t reset_at;
    };
    std::vector<Row> rows;
    {
      // Copy under the lock, build the JSON after it: Reserve waits only for the copy.
      std::lock_guard<std::mutex> lock(shard.mu);
      rows.reserve(shard.buckets.size());
      for (const auto& [key, b] : shard.buckets) {
        int64_t used = shard.UsedNow(b, now);
        if (used == 0 && b.reserved == 0) continue;
        int64_t reset_at = 0;
        if (shard.spec.window.kind == Window::Kind::kCalendarDay) {
          reset_at = (b.day + 1) * kMicrosPerDay;
        } else if (shard.spec.window.kind == Window::Kind::kSliding) {
          int64_t newest = b.slots->NewestUsed(shard.SlotOf(now));
          if (newest != kNever) reset_at = (newest + kSlots) * shard.slot_micros;
        }
        rows.push_back(Row{key, used, b.reserved, reset_at});
      }
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key < b.key; });
    Json bucket_array = Json::MakeArray();
    for (const Row& row : rows) {
      bucket_array.Push(Json(Json::Object{{"key", Json(row.key)},
                                          {"used", Json(row.used)},
                                          {"reserved", Json(row.reserved)},
                                          {"limit", Json(shard.spec.limit)},
                                          {"reset_at_unix_micros", Json(row.reset_at)}}));
    }
    budgets.Push(Json(Json::Object{{"name", Json(shard.spec.name)},
                                   {"metric", Json(shard.spec.metric.name)},
                                   {"limit", Json(shard.spec.limit)},
                                   {"window", Json(shard.spec.window.ToString())},
                                   {"scope", Json(ScopeName(shard.spec.scope))},
                                   {"buckets", std::move(bucket_array)}}));
  }
  return Json(Json::Object{{"buckets_live", Json(static_cast<int64_t>(live_buckets()))},
                           {"buckets_max", Json(static_cast<int64_t>(core::kBudgetBucketsMax))},
                           {"budgets", std::move(budgets)}});
}

}  // namespace mandate::budget
