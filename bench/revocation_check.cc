// mandate_revocation_bench: the per-call revocation check at scale, Mandate's in-memory
// RevocationSet vs a lookup of the store's revocations table in SQLite on every call, in one run
// (also `BENCH_SCENARIOS=revocation scripts/run-bench.sh`).
//
//   mandate_revocation_bench [--revocations 1000,100000,1000000] [--depths 1,4]
//                            [--threads 1,2] [--seconds S] [--slices N] [--callers N]
//                            [--peer-transaction check|lookup] [--dir DIR]
//
// The claim measured (issue 4, revocation_set.h): "the per-call check costs O(chain depth),
// independent of the number of sessions" (and of revoked subjects). For each N of
// --revocations, a real SqliteStore in a fresh temp dir holds N revocations of mixed kinds
// (70% sessions, 10% agents, 10% humans, 10% tasks), and the set is built the way the server
// builds it at start: RevocationSet::Load(store). Then, for each delegation depth D of --depths,
// each kind of caller and each thread count T of --threads, both sides check the same callers:
//   mandate  RevocationSet::Check(subjects): one hash lookup per subject, under a shared lock;
//   sqlite   the peer, what a gateway without an in-memory set does per call: for each distinct
//            subject Check looks at, in Check's order and stopping at the first hit, one
//            prepared `SELECT 1 FROM revocations WHERE kind = ?1 AND subject = ?2 LIMIT 1` on
//            the store's own file, answered from an index on (kind, subject) (see Fill: the
//            store has no such index, since it never looks a subject up; the peer gets one so
//            that it is an indexed lookup, not a scan). Each peer thread has its own connection
//            (WAL: readers do not block each other) with a page cache large enough for the
//            whole index (256 MiB), and queries a warm cache. Default --peer-transaction check:
//            the lookups of one check share one read transaction (BEGIN ... COMMIT), about 4x
//            cheaper here than --peer-transaction lookup (each lookup its own autocommit
//            statement, which takes and drops SQLite's file and WAL read locks every time).
//            The strongest honest set-up of the peer that we found.
// A caller at delegation depth D (Session::depth; D = 4 is tokens.max_delegation_depth's
// default) carries its sid, its D + 1 chain sids self first (as Pipeline::RevocationSubjects
// builds them from the token's act claims), its agent, its human and its task: Check does
// D + 5 lookups (sid twice), the peer D + 4 queries. Callers are either
//   clean    nothing of theirs is revoked (the common case: every lookup misses), or
//   revoked  exactly one subject is, cycling over the chain's root session (a tree revocation
//            stores only the root), the agent, the human and the task; the subject is drawn at
//            random from the N stored revocations of that kind.
// Each side answers every check and the answer is verified (nothing for a clean caller, the
// revoked subject's kind for a revoked one); a wrong answer or a SQLite error is an error.
//
// Timing: --callers callers (default 1,024) per (D, kind of caller), visited in order by each
// thread from its own offset, in batches of kBatchChecks checks timed with steady_clock;
// ns/check = batch time / kBatchChecks, per thread (with 2 threads both run at once, so the
// figure includes any contention on the set's shared lock). Each config runs --seconds
// (default 0.4) per side in --slices (default 4) interleaved slices, the side going first
// alternating, after one untimed pass over the callers. The rows show the median and p99 over
// all batches (nearest rank), the ratio sqlite/mandate of the medians, and at the end Mandate's
// flatness: median ns/check at the largest N / at the smallest, per config. The verdict: the
// check is flat when that ratio is <= kFlatnessMax for every config (1.0 is perfectly flat;
// the margin is for this shared VM's noise). The number of lookups does not depend on N; their
// cost does as soon as the touched part of the table outgrows the CPU caches (the 1,000,000-
// entry set is about 110 MB), and that is what the verdict tests: --callers sets how many
// distinct callers, so how many distinct lookups, the run cycles over (16 keeps them all in
// cache; 65,536 spreads them over the table).
//
// Everything lives in one fresh temp directory under --dir, else $TMPDIR, else /tmp, removed at
// the end. With the defaults the run takes about 30 s on 2 CPUs (filling and indexing the
// 1,000,000-row table are about 5 of them). Exit status 1 when any check answered wrongly or
// SQLite failed (the figures are then not a measurement); a missed verdict is reported, not
// an error.
#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"

namespace {

namespace revocation = mandate::revocation;
namespace store = mandate::store;
using revocation::Kind;
using Clock = mandate::bench::Clock;
using mandate::bench::Grouped;
using mandate::bench::Percentile;
using mandate::bench::SecondsSince;
using mandate::bench::SplitMix64;
using mandate::bench::SqliteError;
using mandate::bench::SqliteExec;

// Limits: every run is bounded in time and count, and so is what it keeps in memory.
constexpr int64_t kRevocationsMin = 10;  // a multiple of kKindCycle, so every kind is present
constexpr int64_t kRevocationsMax = 10'000'000;
constexpr size_t kRevocationCountsMax = 8;
constexpr int kDepthMax = 16;  // core::kDelegationDepthMax
constexpr size_t kDepthCountsMax = 8;
constexpr int kThreadsMax = 64;
constexpr size_t kThreadCountsMax = 8;
constexpr double kSecondsMax = 60;  // per side and config
constexpr int kSlicesMax = 100;
constexpr int kCallersMax = 1'000'000;
constexpr int kBatchChecks = 32;  // checks per timed batch: timer overhead < 2 ns/check
// Batches kept per side and config (a sample of 8 bytes each); past it, batches still run and
// count but are not kept, so a long --seconds cannot grow memory without bound.
constexpr size_t kBatchSamplesMax = 4'000'000;
constexpr int64_t kPeerCacheKibibytes = 256 * 1024;  // PRAGMA cache_size of each peer connection
constexpr int64_t kFillCacheKibibytes = 512 * 1024;  // of the filling connection
// The verdict: Mandate's median ns/check at the largest N over the smallest, every config.
constexpr double kFlatnessMax = 1.5;

// Kinds of the stored revocations: entry i has kind KindOfEntry(i), by i % kKindCycle.
constexpr int64_t kKindCycle = 10;  // residues 0-6 session, 7 agent, 8 human, 9 task
constexpr int64_t kNow = 1767000000;
// Names of clean subjects use entry numbers from here up, disjoint from the stored [0, N).
constexpr uint64_t kCleanEntryBase = uint64_t{1} << 40;

struct Options {
  std::vector<int64_t> revocations = {1'000, 100'000, 1'000'000};
  std::vector<int64_t> depths = {1, 4};
  std::vector<int64_t> threads = {1, 2};
  double seconds = 0.4;
  int slices = 4;
  int callers = 1'024;
  bool transaction_per_check = true;
  std::string dir;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "mandate_revocation_bench: %s\n", why.c_str());
  std::fprintf(stderr,
               "usage: mandate_revocation_bench [--revocations 1000,100000,1000000]\n"
               "                                [--depths 1,4] [--threads 1,2] [--seconds S]\n"
               "                                [--slices N] [--callers N]\n"
               "                                [--peer-transaction check|lookup] [--dir DIR]\n");
  std::exit(2);
}

double ParseNumber(const std::string& flag, const char* v, double lo, double hi) {
  return mandate::bench::ParseNumber(flag, v, lo, hi, Usage);
}

std::vector<int64_t> ParseList(const std::string& flag, const char* v, double lo, double hi,
                               size_t count_max) {
  return mandate::bench::ParseList(flag, v, lo, hi, count_max, Usage);
}

// ---------------------------------------------------------------------------------------------
// Subject names: deterministic, shaped like the real ones, distinct per kind and entry number.

// `chars` Crockford base-32 digits drawn from entry i under `salt` (as core::NewId spells ids).
std::string Crockford(uint64_t i, uint64_t salt, int chars) {
  static constexpr char kDigits[] = "0123456789abcdefghjkmnpqrstvwxyz";
  std::string out;
  uint64_t w = 0;
  for (int c = 0; c < chars; ++c) {
    if (c % 12 == 0) w = SplitMix64(i * 4 + salt + static_cast<uint64_t>(c / 12) * 0x1000003);
    out.push_back(kDigits[w & 31]);
    w >>= 5;
  }
  return out;
}

// Subject number i of `kind`: "ses_" + 26 digits like core::NewId("ses"); "bot-..." agents;
// "user-...@example.com" humans; "TASK-<i>" tasks.
std::string SubjectName(Kind kind, uint64_t i) {
  switch (kind) {
    case Kind::kSession:
      return "ses_" + Crockford(i, 1, 26);
    case Kind::kAgent:
      return "bot-" + Crockford(i, 2, 10);
    case Kind::kHuman:
      return "user-" + Crockford(i, 3, 12) + "@example.com";
    case Kind::kTask:
      return "TASK-" + std::to_string(i);
  }
  return {};
}

Kind KindOfEntry(int64_t i) {
  switch (i % kKindCycle) {
    case 7:
      return Kind::kAgent;
    case 8:
      return Kind::kHuman;
    case 9:
      return Kind::kTask;
    default:
      return Kind::kSession;
  }
}

// A stored entry of `kind` chosen by `draw`, for n stored revocations (n % kKindCycle == 0).
uint64_t StoredEntryOfKind(Kind kind, int64_t n, uint64_t draw) {
  const uint64_t cycle = SplitMix64(draw) % static_cast<uint64_t>(n / kKindCycle);
  uint64_t residue = 0;
  switch (kind) {
    case Kind::kSession:
      residue = SplitMix64(draw + 1) % 7;
      break;
    case Kind::kAgent:
      residue = 7;
      break;
    case Kind::kHuman:
      residue = 8;
      break;
    case Kind::kTask:
      residue = 9;
      break;
  }
  return cycle * kKindCycle + residue;
}

// ---------------------------------------------------------------------------------------------
// Callers: what one authenticated call hands to the revocation check.

struct Caller {
  revocation::Subjects subjects;
  std::optional<Kind> expected;  // what Check must answer
};

// A pool of callers at one depth, clean or each with one revoked subject. The subjects are
// views into `names_`, whose strings never move (a deque does not relocate on push_back).
class CallerPool {
 public:
  CallerPool(int count, int depth, bool revoked, int64_t stored, uint64_t seed) {
    static constexpr Kind kRevokedKinds[] = {Kind::kSession, Kind::kAgent, Kind::kHuman,
                                             Kind::kTask};
    uint64_t next = kCleanEntryBase + seed * static_cast<uint64_t>(kCallersMax) * (kDepthMax + 4);
    for (int c = 0; c < count; ++c) {
      Caller caller;
      const Kind hit = kRevokedKinds[c % 4];
      auto name = [&](Kind kind, bool stored_one) -> std::string_view {
        const uint64_t entry =
            stored_one
                ? StoredEntryOfKind(kind, stored, seed * 1'000'003 + static_cast<uint64_t>(c))
                : next++;
        names_.push_back(SubjectName(kind, entry));
        return names_.back();
      };
      // Self first, then the parent, up to the root: the chain sids of Pipeline's Subjects.
      for (int d = 0; d <= depth; ++d) {
        const bool root = d == depth;
        caller.subjects.ancestor_sids.push_back(
            name(Kind::kSession, revoked && root && hit == Kind::kSession));
      }
      caller.subjects.sid = caller.subjects.ancestor_sids.front();
      caller.subjects.agent = name(Kind::kAgent, revoked && hit == Kind::kAgent);
      caller.subjects.human = name(Kind::kHuman, revoked && hit == Kind::kHuman);
      caller.subjects.task = name(Kind::kTask, revoked && hit == Kind::kTask);
      if (revoked) caller.expected = hit;
      callers_.push_back(std::move(caller));
    }
  }
  CallerPool(const CallerPool&) = delete;
  CallerPool& operator=(const CallerPool&) = delete;

  const std::vector<Caller>& callers() const { return callers_; }

 private:
  std::deque<std::string> names_;
  std::vector<Caller> callers_;
};

// ---------------------------------------------------------------------------------------------
// The store: filled through its own schema, then loaded the way the server loads it.

struct FillTimes {
  double rows_seconds = 0;
  double index_seconds = 0;
};

// Writes n revocations into the store file at `path`, which SqliteStore::Open has created (so
// the table is the store's own, at its schema version), and adds the peer's index.
//
// Why not Store::AddRevocation: it is one durable transaction per revocation (BEGIN IMMEDIATE,
// an fsync at COMMIT, synchronous=FULL), and the store has no batch API; 1,000,000 of them
// would take hours on this disk. So the rows go in through a plain SQLite connection to the
// same file, in one transaction, with the store's own INSERT (the text of kSqlInsertRevocation
// in sqlite_store.cc), synchronous=OFF and a rollback journal for the fill only (restored to
// WAL before the store reopens the file). Session revocations are stored without their
// sessions' rows: neither RevocationSet::Load nor the peer reads the sessions table, and
// AddRevocation's check that the session exists is not what is measured here.
std::string Fill(const std::string& path, int64_t n, FillTimes* times) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string err = SqliteError(db, "open " + path);
    sqlite3_close_v2(db);
    return err;
  }
  sqlite3_stmt* ins = nullptr;
  auto fail = [&](const std::string& err) {
    if (ins != nullptr) sqlite3_finalize(ins);
    sqlite3_close_v2(db);
    return err;
  };
  for (const std::string& sql :
       {std::string("PRAGMA journal_mode = DELETE"), std::string("PRAGMA synchronous = OFF"),
        "PRAGMA cache_size = -" + std::to_string(kFillCacheKibibytes)}) {
    if (std::string err = SqliteExec(db, sql); !err.empty()) return fail(err);
  }
  Clock::time_point t0 = Clock::now();
  if (std::string err = SqliteExec(db, "BEGIN"); !err.empty()) return fail(err);
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO revocations (kind, subject, at, reason) VALUES (?1, ?2, ?3, "
                         "?4)",
                         -1, &ins, nullptr) != SQLITE_OK) {
    return fail(SqliteError(db, "prepare INSERT"));
  }
  for (int64_t i = 0; i < n; ++i) {
    const Kind kind = KindOfEntry(i);
    const std::string_view kind_name = revocation::KindName(kind);
    const std::string subject = SubjectName(kind, static_cast<uint64_t>(i));
    sqlite3_bind_text(ins, 1, kind_name.data(), static_cast<int>(kind_name.size()), SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, subject.data(), static_cast<int>(subject.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, kNow - n + i);
    sqlite3_bind_text(ins, 4, "bench", 5, SQLITE_STATIC);
    if (sqlite3_step(ins) != SQLITE_DONE) return fail(SqliteError(db, "INSERT revocation"));
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  ins = nullptr;
  if (std::string err = SqliteExec(db, "COMMIT"); !err.empty()) return fail(err);
  times->rows_seconds = SecondsSince(t0);
  // The peer's index (not in the store's schema; see the top of the file).
  t0 = Clock::now();
  if (std::string err = SqliteExec(db,
                                   "CREATE INDEX bench_revocations_by_kind_subject ON "
                                   "revocations(kind, subject)");
      !err.empty()) {
    return fail(err);
  }
  times->index_seconds = SecondsSince(t0);
  if (std::string err = SqliteExec(db, "PRAGMA journal_mode = WAL"); !err.empty()) {
    return fail(err);
  }
  sqlite3_close_v2(db);
  return {};
}

// ---------------------------------------------------------------------------------------------
// The peer: one connection per thread, a prepared indexed lookup per subject.

class PeerConnection {
 public:
  PeerConnection() = default;
  PeerConnection(const PeerConnection&) = delete;
  PeerConnection& operator=(const PeerConnection&) = delete;
  ~PeerConnection() {
    for (sqlite3_stmt* st : {q_, begin_, commit_}) {
      if (st != nullptr) sqlite3_finalize(st);
    }
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  // `transaction_per_check`: the lookups of one check share one read transaction (BEGIN ...
  // COMMIT around them), else each is its own autocommit statement.
  std::string Open(const std::string& path, bool transaction_per_check) {
    transaction_per_check_ = transaction_per_check;
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      return SqliteError(db_, "open " + path);
    }
    for (const std::string& sql : {"PRAGMA cache_size = -" + std::to_string(kPeerCacheKibibytes),
                                   std::string("PRAGMA query_only = ON")}) {
      if (std::string err = SqliteExec(db_, sql); !err.empty()) return err;
    }
    static constexpr char kLookup[] =
        "SELECT 1 FROM revocations WHERE kind = ?1 AND subject = ?2 LIMIT 1";
    if (sqlite3_prepare_v3(db_, kLookup, -1, SQLITE_PREPARE_PERSISTENT, &q_, nullptr) !=
        SQLITE_OK) {
      return SqliteError(db_, "prepare the lookup");
    }
    if (sqlite3_prepare_v3(db_, "BEGIN", -1, SQLITE_PREPARE_PERSISTENT, &begin_, nullptr) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(db_, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &commit_, nullptr) !=
            SQLITE_OK) {
      return SqliteError(db_, "prepare BEGIN / COMMIT");
    }
    // Refuse to measure a scan: the plan must search the index.
    sqlite3_stmt* plan = nullptr;
    if (sqlite3_prepare_v2(db_, ("EXPLAIN QUERY PLAN " + std::string(kLookup)).c_str(), -1, &plan,
                           nullptr) != SQLITE_OK) {
      return SqliteError(db_, "prepare EXPLAIN QUERY PLAN");
    }
    plan_.clear();
    while (sqlite3_step(plan) == SQLITE_ROW) {
      const unsigned char* detail = sqlite3_column_text(plan, 3);
      if (detail != nullptr) plan_ += reinterpret_cast<const char*>(detail);
    }
    sqlite3_finalize(plan);
    if (plan_.find("bench_revocations_by_kind_subject") == std::string::npos) {
      return "the peer's lookup does not use the (kind, subject) index: " + plan_;
    }
    return {};
  }

  // Check's answer, from SQLite: the same subjects in the same order, the first hit wins. The
  // sid is queried once (Check looks it up twice: as sid and as the chain's first entry).
  // Sets *error on a SQLite failure (the answer is then meaningless).
  std::optional<Kind> Check(const revocation::Subjects& s, bool* error) {
    if (!transaction_per_check_) return Lookups(s, error);
    Step(begin_, error);
    std::optional<Kind> answer = Lookups(s, error);
    Step(commit_, error);
    return answer;
  }

  const std::string& plan() const { return plan_; }

 private:
  std::optional<Kind> Lookups(const revocation::Subjects& s, bool* error) {
    if (Has(Kind::kSession, s.sid, error)) return Kind::kSession;
    for (std::string_view a : s.ancestor_sids) {
      if (a != s.sid && Has(Kind::kSession, a, error)) return Kind::kSession;
    }
    if (Has(Kind::kAgent, s.agent, error)) return Kind::kAgent;
    if (Has(Kind::kHuman, s.human, error)) return Kind::kHuman;
    if (Has(Kind::kTask, s.task, error)) return Kind::kTask;
    return std::nullopt;
  }

  void Step(sqlite3_stmt* st, bool* error) {
    if (sqlite3_step(st) != SQLITE_DONE) *error = true;
    sqlite3_reset(st);
  }

  bool Has(Kind kind, std::string_view subject, bool* error) {
    if (subject.empty()) return false;
    const std::string_view k = revocation::KindName(kind);
    sqlite3_bind_text(q_, 1, k.data(), static_cast<int>(k.size()), SQLITE_STATIC);
    sqlite3_bind_text(q_, 2, subject.data(), static_cast<int>(subject.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(q_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) *error = true;
    sqlite3_reset(q_);
    return rc == SQLITE_ROW;
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* q_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  bool transaction_per_check_ = true;
  std::string plan_;
};

// ---------------------------------------------------------------------------------------------
// The driver: T threads checking callers in timed batches until a deadline.

struct SideResult {
  std::vector<double> ns_per_check;  // one per kept batch
  int64_t checks = 0;
  int64_t wrong = 0;   // answers that differ from the caller's expected kind
  int64_t errors = 0;  // SQLite failures
  double P50() const { return Percentile(ns_per_check, 0.50); }
  double P99() const { return Percentile(ns_per_check, 0.99); }
};

// Runs one slice of one side with `threads` threads for `seconds`, adding to *out. `check` is
// called as check(thread, subjects, &error) and returns the answer.
template <typename CheckFn>
void RunSlice(const std::vector<Caller>& callers, int threads, double seconds, CheckFn check,
              SideResult* out) {
  struct PerThread {
    std::vector<double> samples;
    int64_t checks = 0, wrong = 0, errors = 0;
  };
  std::vector<PerThread> per(static_cast<size_t>(threads));
  std::latch start(threads);
  std::vector<std::thread> pool;
  const size_t room = kBatchSamplesMax - std::min(kBatchSamplesMax, out->ns_per_check.size());
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      PerThread& me = per[static_cast<size_t>(t)];
      me.samples.reserve(std::min<size_t>(room / static_cast<size_t>(threads), 1 << 16));
      // Each thread starts at its own offset, so two threads do not walk the same callers.
      size_t next = callers.size() * static_cast<size_t>(t) / static_cast<size_t>(threads);
      start.arrive_and_wait();
      const Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                            std::chrono::duration<double>(seconds));
      while (true) {
        int64_t wrong = 0;
        bool error = false;
        const Clock::time_point b0 = Clock::now();
        for (int k = 0; k < kBatchChecks; ++k) {
          const Caller& c = callers[next];
          if (++next == callers.size()) next = 0;
          wrong += check(t, c.subjects, &error) != c.expected ? 1 : 0;
        }
        const Clock::time_point b1 = Clock::now();
        const double ns = static_cast<double>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(b1 - b0).count());
        if (me.samples.size() < room / static_cast<size_t>(threads)) {
          me.samples.push_back(ns / kBatchChecks);
        }
        me.checks += kBatchChecks;
        me.wrong += wrong;
        me.errors += error ? 1 : 0;
        if (b1 >= deadline) break;
      }
    });
  }
  for (auto& th : pool) th.join();
  for (const PerThread& p : per) {
    out->ns_per_check.insert(out->ns_per_check.end(), p.samples.begin(), p.samples.end());
    out->checks += p.checks;
    out->wrong += p.wrong;
    out->errors += p.errors;
  }
}

struct Row {
  int64_t n = 0;
  int depth = 0;
  bool revoked = false;
  int threads = 0;
  SideResult m, s;
  double Ratio() const { return m.P50() > 0 ? s.P50() / m.P50() : NAN; }
  int64_t Failures() const { return m.wrong + m.errors + s.wrong + s.errors; }
};

std::string ConfigName(int depth, bool revoked, int threads) {
  return "depth " + std::to_string(depth) + ", " + (revoked ? "revoked" : "clean  ") + ", " +
         std::to_string(threads) + (threads == 1 ? " thread " : " threads");
}

void Progress(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--revocations") {
      o.revocations = ParseList(a, v, static_cast<double>(kRevocationsMin),
                                static_cast<double>(kRevocationsMax), kRevocationCountsMax);
      for (int64_t n : o.revocations) {
        if (n % kKindCycle != 0) Usage("--revocations: each count must be a multiple of 10");
      }
    } else if (a == "--depths") {
      o.depths = ParseList(a, v, 0, kDepthMax, kDepthCountsMax);
    } else if (a == "--threads") {
      o.threads = ParseList(a, v, 1, kThreadsMax, kThreadCountsMax);
    } else if (a == "--seconds") {
      o.seconds = ParseNumber(a, v, 0.01, kSecondsMax);
    } else if (a == "--slices") {
      o.slices = static_cast<int>(ParseNumber(a, v, 1, kSlicesMax));
    } else if (a == "--callers") {
      o.callers = static_cast<int>(ParseNumber(a, v, 1, kCallersMax));
    } else if (a == "--peer-transaction") {
      if (v == nullptr || (std::string(v) != "check" && std::string(v) != "lookup")) {
        Usage("--peer-transaction must be check or lookup");
      }
      o.transaction_per_check = std::string(v) == "check";
    } else if (a == "--dir") {
      if (v == nullptr) Usage("--dir needs a directory");
      o.dir = v;
    } else {
      Usage("unknown flag " + a);
    }
    ++i;
  }
  const int max_threads = static_cast<int>(*std::max_element(o.threads.begin(), o.threads.end()));

  const std::string base = mandate::bench::MakeRunDir(o.dir, "mandate-revocation-bench");
  if (base.empty()) return 1;

  const mandate::bench::LoadAverage load = mandate::bench::ReadLoadAverage();
  char head[1024];
  std::snprintf(
      head, sizeof head,
      "== machine: %u CPUs, load average %.2f %.2f %.2f; temp dir %s\n"
      "== revocations: 70%% sessions, 10%% agents, 10%% humans, 10%% tasks, in a SqliteStore; "
      "mandate = RevocationSet::Load(store) then Check\n"
      "== peer: SQLite %s, one connection per thread (cache_size %lld MiB), per distinct "
      "subject: SELECT 1 FROM revocations WHERE kind = ?1 AND subject = ?2 LIMIT 1, on an "
      "index (kind, subject); %s\n"
      "== callers: %s per (depth, clean|revoked); each config %.2f s per side in %d "
      "interleaved slices, batches of %d checks",
      std::thread::hardware_concurrency(), load.one, load.five, load.fifteen, base.c_str(),
      sqlite3_libversion(), static_cast<long long>(kPeerCacheKibibytes / 1024),
      o.transaction_per_check ? "one read transaction per check" : "one transaction per lookup",
      Grouped(o.callers).c_str(), o.seconds, o.slices, kBatchChecks);
  Progress(head);

  std::vector<Row> rows;
  int64_t failures = 0;
  const Clock::time_point run0 = Clock::now();
  for (size_t ni = 0; ni < o.revocations.size() && failures == 0; ++ni) {
    const int64_t n = o.revocations[ni];
    const std::string path = base + "/n" + std::to_string(n) + ".db";
    // Create the store (its schema), close it, fill its table, reopen it and load the set: the
    // set comes from the store exactly as at a server's start.
    {
      auto created = store::SqliteStore::Open(path);
      if (!created.ok()) {
        Progress("!!!!! SqliteStore::Open: " + created.error().message);
        ++failures;
        break;
      }
    }
    FillTimes fill;
    if (std::string err = Fill(path, n, &fill); !err.empty()) {
      Progress("!!!!! fill: " + err);
      ++failures;
      break;
    }
    auto opened = store::SqliteStore::Open(path);
    if (!opened.ok()) {
      Progress("!!!!! SqliteStore::Open: " + opened.error().message);
      ++failures;
      break;
    }
    std::unique_ptr<store::SqliteStore> db = std::move(opened).value();
    Clock::time_point l0 = Clock::now();
    auto loaded = revocation::RevocationSet::Load(*db);
    const double load_seconds = SecondsSince(l0);
    if (!loaded.ok()) {
      Progress("!!!!! RevocationSet::Load: " + loaded.error().message);
      ++failures;
      break;
    }
    std::unique_ptr<revocation::RevocationSet> set = std::move(loaded).value();
    std::vector<std::unique_ptr<PeerConnection>> peers;
    for (int t = 0; t < max_threads && failures == 0; ++t) {
      peers.push_back(std::make_unique<PeerConnection>());
      if (std::string err = peers.back()->Open(path, o.transaction_per_check); !err.empty()) {
        Progress("!!!!! peer: " + err);
        ++failures;
      }
    }
    if (failures > 0) break;
    std::error_code ec;
    const auto file_bytes = std::filesystem::file_size(path, ec);
    char line[512];
    std::snprintf(line, sizeof line,
                  "-- N = %s revocations: rows in %.2f s, peer index in %.2f s, "
                  "RevocationSet::Load %.2f s; store file %.1f MB; peer plan: %s",
                  Grouped(static_cast<double>(n)).c_str(), fill.rows_seconds, fill.index_seconds,
                  load_seconds, ec ? 0.0 : static_cast<double>(file_bytes) / 1e6,
                  peers.front()->plan().c_str());
    Progress(line);

    for (int64_t depth : o.depths) {
      for (bool revoked : {false, true}) {
        const uint64_t seed = static_cast<uint64_t>(depth) * 2 + (revoked ? 1 : 0);
        CallerPool pool(o.callers, static_cast<int>(depth), revoked, n, seed);
        const std::vector<Caller>& callers = pool.callers();
        auto mandate_check = [&set](int, const revocation::Subjects& s, bool*) {
          return set->Check(s);
        };
        auto peer_check = [&peers](int t, const revocation::Subjects& s, bool* error) {
          return peers[static_cast<size_t>(t)]->Check(s, error);
        };
        for (int64_t threads : o.threads) {
          Row row;
          row.n = n;
          row.depth = static_cast<int>(depth);
          row.revoked = revoked;
          row.threads = static_cast<int>(threads);
          // One untimed pass over every caller on each side and peer connection: warms the
          // caches and verifies every answer once.
          {
            bool error = false;
            for (const Caller& c : callers) {
              if (set->Check(c.subjects) != c.expected) ++row.m.wrong;
              for (const auto& p : peers) {
                if (p->Check(c.subjects, &error) != c.expected) ++row.s.wrong;
              }
            }
            if (error) ++row.s.errors;
          }
          for (int slice = 0; slice < o.slices; ++slice) {
            const bool mandate_first = (slice + rows.size()) % 2 == 0;
            for (int turn = 0; turn < 2; ++turn) {
              if ((turn == 0) == mandate_first) {
                RunSlice(callers, row.threads, o.seconds / o.slices, mandate_check, &row.m);
              } else {
                RunSlice(callers, row.threads, o.seconds / o.slices, peer_check, &row.s);
              }
            }
          }
          std::sort(row.m.ns_per_check.begin(), row.m.ns_per_check.end());
          std::sort(row.s.ns_per_check.begin(), row.s.ns_per_check.end());
          std::snprintf(line, sizeof line,
                        "   %s | mandate p50 %7.1f p99 %8.1f ns/check | sqlite p50 %9.1f p99 "
                        "%9.1f ns/check | sqlite/mandate %6.1fx%s",
                        ConfigName(row.depth, revoked, row.threads).c_str(), row.m.P50(),
                        row.m.P99(), row.s.P50(), row.s.P99(), row.Ratio(),
                        row.Failures() > 0 ? "  WRONG ANSWERS OR ERRORS" : "");
          Progress(line);
          failures += row.Failures();
          rows.push_back(std::move(row));
        }
      }
    }
    peers.clear();
    set.reset();
    db.reset();
    for (const char* suffix : {"", "-wal", "-shm", "-journal"})
      mandate::bench::RemoveRunPath(path + suffix);
  }
  mandate::bench::RemoveRunPath(base);
  const double run_seconds = SecondsSince(run0);

  // The table: per config, each N's mandate and sqlite medians and their ratio.
  const int64_t n_lo = *std::min_element(o.revocations.begin(), o.revocations.end());
  const int64_t n_hi = *std::max_element(o.revocations.begin(), o.revocations.end());
  auto find = [&rows](int64_t n, int depth, bool revoked, int threads) -> const Row* {
    for (const Row& r : rows) {
      if (r.n == n && r.depth == depth && r.revoked == revoked && r.threads == threads) return &r;
    }
    return nullptr;
  };
  std::printf(
      "\n== Revocation check at scale: RevocationSet::Check vs SQLite %s indexed lookups "
      "(median ns/check; %.0f s)\n",
      sqlite3_libversion(), run_seconds);
  std::printf("%-33s", "config");
  for (int64_t n : o.revocations) {
    std::printf(" | N=%-25s", Grouped(static_cast<double>(n)).c_str());
  }
  std::printf(" | mandate   sqlite\n%-33s", "");
  for (size_t k = 0; k < o.revocations.size(); ++k) {
    std::printf(" | %8s %8s %9s", "mandate", "sqlite", "sql/man");
  }
  std::printf(" | N max/min N max/min\n");
  double flat_min = INFINITY, flat_max = 0, ratio_min = INFINITY, ratio_max = 0;
  bool complete = true;
  for (int64_t depth : o.depths) {
    for (bool revoked : {false, true}) {
      for (int64_t threads : o.threads) {
        const int d = static_cast<int>(depth), t = static_cast<int>(threads);
        std::printf("%-33s", ConfigName(d, revoked, t).c_str());
        for (int64_t n : o.revocations) {
          const Row* r = find(n, d, revoked, t);
          if (r == nullptr) {
            std::printf(" | %27s", "not run");
            complete = false;
            continue;
          }
          std::printf(" | %8.1f %8.1f %8.1fx", r->m.P50(), r->s.P50(), r->Ratio());
        }
        const Row* lo = find(n_lo, d, revoked, t);
        const Row* hi = find(n_hi, d, revoked, t);
        if (lo != nullptr && hi != nullptr) {
          const double flat = hi->m.P50() / lo->m.P50();
          const double peer_flat = hi->s.P50() / lo->s.P50();
          flat_min = std::min(flat_min, flat);
          flat_max = std::max(flat_max, flat);
          ratio_min = std::min(ratio_min, hi->Ratio());
          ratio_max = std::max(ratio_max, hi->Ratio());
          std::printf(" | %8.2fx %8.2fx\n", flat, peer_flat);
        } else {
          std::printf(" |\n");
        }
      }
    }
  }
  std::printf(
      "(ns/check: median over batches of %d checks, per thread; sql/man = sqlite / mandate; "
      "N max/min = ns/check at N=%s over N=%s; p99s in the progress lines above)\n",
      kBatchChecks, Grouped(static_cast<double>(n_hi)).c_str(),
      Grouped(static_cast<double>(n_lo)).c_str());

  // O(chain depth): the cost per lookup, at the largest N, single thread, clean callers.
  if (o.depths.size() >= 2) {
    const int d_lo = static_cast<int>(*std::min_element(o.depths.begin(), o.depths.end()));
    const int d_hi = static_cast<int>(*std::max_element(o.depths.begin(), o.depths.end()));
    const int t_lo = static_cast<int>(*std::min_element(o.threads.begin(), o.threads.end()));
    const Row* a = find(n_hi, d_lo, false, t_lo);
    const Row* b = find(n_hi, d_hi, false, t_lo);
    if (a != nullptr && b != nullptr) {
      std::printf(
          "chain depth: clean callers at N=%s, %d thread(s): depth %d / depth %d = %.2fx "
          "mandate (lookups %d / %d = %.2fx), %.2fx sqlite (queries %d / %d = %.2fx)\n",
          Grouped(static_cast<double>(n_hi)).c_str(), t_lo, d_hi, d_lo, b->m.P50() / a->m.P50(),
          d_hi + 5, d_lo + 5, static_cast<double>(d_hi + 5) / (d_lo + 5), b->s.P50() / a->s.P50(),
          d_hi + 4, d_lo + 4, static_cast<double>(d_hi + 4) / (d_lo + 4));
    }
  }
  if (complete && n_hi > n_lo && std::isfinite(flat_min)) {
    const bool flat = flat_max <= kFlatnessMax;
    std::printf(
        "verdict: Mandate's check is %s in the number of revocations: ns/check at N=%s over "
        "N=%s is %.2fx to %.2fx across the configs (1.0 = flat; target <= %.1fx): %s; at N=%s "
        "SQLite lookups cost %.1fx to %.1fx Mandate's check\n",
        flat ? "flat" : "NOT flat", Grouped(static_cast<double>(n_hi)).c_str(),
        Grouped(static_cast<double>(n_lo)).c_str(), flat_min, flat_max, kFlatnessMax,
        flat ? "MET" : "MISSED", Grouped(static_cast<double>(n_hi)).c_str(), ratio_min, ratio_max);
  } else {
    std::printf("verdict: none (needs two or more revocation counts, all configs run)\n");
  }
  if (failures > 0) {
    std::printf(
        "!!!!! %lld wrong answers or errors: the numbers above are not valid measurements\n",
        static_cast<long long>(failures));
    return 1;
  }
  return 0;
}
