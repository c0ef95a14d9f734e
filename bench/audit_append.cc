// mandate_audit_bench: durable audit appends, Mandate's audit log vs SQLite, in one run (also
// `BENCH_SCENARIOS=audit scripts/run-bench.sh`).
//
//   mandate_audit_bench [--seconds S] [--max-records N] [--writers 1,8,64]
//                       [--slices N] [--verify-records N] [--verify-fill-seconds S]
//                       [--sqlite shared|per-thread] [--dir DIR] [--json]
//
// For each writer count W (default 1, 8 and 64), W threads append for --seconds (default 3)
// or until --max-records records (default 2,000,000), whichever comes first:
//   mandate  audit::OpenAuditLog(dir, clock) -> Append(record): each call returns once its
//            record is durable (written and fdatasync'ed by a group commit);
//   sqlite   the peer: SQLite 3 in WAL mode with PRAGMA synchronous=FULL, table
//            audit(seq INTEGER PRIMARY KEY, record TEXT), one INSERT of the record's canonical
//            text per autocommit transaction, so every INSERT returns once its record is
//            durable (the WAL is synced at each commit). Default --sqlite shared: one
//            connection, its INSERT under a mutex (the record is serialized outside it): the
//            faster of the two honest set-ups, since SQLite has one writer at a time anyway.
//            --sqlite per-thread: one connection per writer with a busy timeout; a writer that
//            finds the WAL write lock taken sleeps in SQLite's busy handler (1, 2, 5, 10 ... ms)
//            instead of queueing, which costs throughput and gives seconds-long tails.
// Record i is the same on both sides: a call.decided object shaped like the gateway's
// (gateway/pipeline.cc), about 600 bytes canonical, varying with i. A writer builds record i
// (not timed) and then times one call: Append(record) for Mandate; serializing the record
// canonically plus the INSERT for SQLite (Mandate serializes inside Append). Throughput is
// records acknowledged / time spent writing; ack latency is per call, merged over the
// writers, nearest-rank percentiles. The process's CPU time per record (user + system, record
// building included, 1 to 3 us) is printed with each side's progress line and in --json.
//
// The disk under both moves a lot on a shared VM (fdatasync at 0.15 ms one minute and 4 ms the
// next), so the two sides are interleaved: each config opens both, then runs --slices
// (default 3) rounds of one slice per side (--seconds / --slices each), the side going first
// alternating, and a short disk probe (write + fdatasync of a record-sized line) before each
// round. The row shows the median of those probes and the ceiling it implies: with W writers
// and one record in flight each, no log acknowledges more than about W / (one fdatasync)
// records/s.
//
// Verification: after the largest-W config, audit::VerifyLog over that log and SQLite's
// PRAGMA integrity_check over that database (reopened), both in records/s. Then a dedicated
// pass over a larger log of --verify-records records (default 1,000,000; 0 skips it), filled
// the fast way on both sides (Mandate: Submit from a few threads, then Close; SQLite: 10,000
// rows per transaction; these fill rates are not durability figures) and verified the same
// way. Filling Mandate's log stops after --verify-fill-seconds (default 6) with fewer records
// if it is slower than that, so the whole run stays under a minute with the defaults; SQLite
// gets the same records. Both sides read their files from the OS page cache, as written.
//
// Everything lives in one fresh temp directory under --dir, else $TMPDIR, else /tmp (so both
// sides share a filesystem), removed at the end.
//
// Output: a table (one row per writer count: appends/s of each side, the ratio
// mandate/sqlite, ack p50/p99 of each side, the disk's fdatasync p50 and the ceiling), the
// verification rates and their ratios, and a verdict against the targets (>= 100,000 durable
// records/s and >= 5x SQLite at 64 writers, ack p99 <= 2 ms, verification >= 1,000,000
// records/s). --json prints one JSON object instead (progress goes to stderr either way).
// Exit status 1 when any append, insert or verification failed (the figures are then not a
// measurement); missed targets are reported, not an error.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "mandate/audit/audit_log.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"

namespace {

namespace audit = mandate::audit;
using mandate::core::Json;
using Clock = mandate::bench::Clock;
using mandate::bench::Grouped;
using mandate::bench::SecondsSince;
using mandate::bench::SplitMix64;
using mandate::bench::SqliteError;
using mandate::bench::SqliteExec;

// Limits: every run is bounded in time and count, and so is what it keeps in memory.
constexpr double kSecondsMax = 600;
constexpr int64_t kRecordsPerConfigDefault = 2'000'000;  // also caps the latency samples kept
constexpr int64_t kRecordsPerConfigMax = 20'000'000;
constexpr int kWritersMax = 1024;
constexpr size_t kWriterCountsMax = 16;
constexpr int64_t kVerifyRecordsDefault = 1'000'000;
constexpr int64_t kVerifyRecordsMax = 20'000'000;
// The dedicated verify pass stops filling Mandate's log after this long even when fewer than
// --verify-records records are in, so a slow log cannot stretch the run (SQLite then gets the
// same, smaller, record count).
constexpr double kVerifyFillSecondsDefault = 6;
constexpr int kFillThreadsMax = 8;  // Submit threads filling the large log
constexpr int kSlicesDefault = 3;
constexpr int kSlicesMax = 100;
constexpr int kFsyncProbeCount = 200;        // at the start of the run
constexpr int kFsyncProbeRoundCount = 20;    // before each round of slices
constexpr size_t kRecordBytesNominal = 600;  // the probe's line; what the records aim at
constexpr int kRecordBuildSamples = 20'000;
constexpr int kSqliteBusyTimeoutMillis = 30'000;  // per-thread mode: wait for the write lock
constexpr int64_t kSqliteFillRowsPerTransaction = 10'000;

// The targets this benchmark reports against.
constexpr int kTargetWriters = 64;
constexpr double kTargetRecordsPerSecond = 100'000;  // durable, at kTargetWriters
constexpr double kTargetRatio = 5;                   // mandate / sqlite, at kTargetWriters
constexpr double kTargetAckP99Micros = 2'000;        // at every writer count
constexpr double kTargetVerifyRecordsPerSecond = 1'000'000;

struct Options {
  double seconds = 3;
  int slices = kSlicesDefault;
  int64_t max_records = kRecordsPerConfigDefault;
  std::vector<int> writers = {1, 8, 64};
  int64_t verify_records = kVerifyRecordsDefault;
  double verify_fill_seconds = kVerifyFillSecondsDefault;
  bool sqlite_shared = true;
  std::string dir;
  bool json = false;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "mandate_audit_bench: %s\n", why.c_str());
  std::fprintf(stderr,
               "usage: mandate_audit_bench [--seconds S] [--max-records N] [--writers 1,8,64]\n"
               "                           [--slices N] [--verify-records N]\n"
               "                           [--verify-fill-seconds S]\n"
               "                           [--sqlite shared|per-thread] [--dir DIR] [--json]\n");
  std::exit(2);
}

double ParseNumber(const std::string& flag, const char* v, double lo, double hi) {
  return mandate::bench::ParseNumber(flag, v, lo, hi, Usage);
}

double PercentileMicros(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return NAN;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

double Round1(double v) { return std::isfinite(v) ? std::round(v * 10.0) / 10.0 : 0; }
double Round2(double v) { return std::isfinite(v) ? std::round(v * 100.0) / 100.0 : 0; }

// CPU time (user + system) of the whole process so far, in seconds.
double ProcessCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// The records.

// 64 lowercase hex digits that differ for every i (stands in for a SHA-256, which the caller
// would have computed before appending; computing it is not what is measured here).
std::string FakeSha256Hex(uint64_t i) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint64_t k = 0; k < 4; ++k) {
    uint64_t w = SplitMix64(i * 4 + k);
    for (int b = 0; b < 16; ++b) out.push_back(kHex[(w >> (60 - 4 * b)) & 0xf]);
  }
  return out;
}

// Record i: a call.decided as the gateway writes it (Pipeline::Call; the decision abridged to
// its verdict and the policies that decided it), about 600 bytes canonical, with the session,
// the decision id, the arguments and their hash varying with i.
Json MakeRecord(int64_t i) {
  const std::string n = std::to_string(i);
  Json r = Json::MakeObject();
  r.Set("type", "call.decided");
  r.Set("run", "run_01jq8z3k5m7n9p");
  r.Set("sid", "ses_01jq8z3k5m" + n);
  r.Set("agent", "triage-bot");
  r.Set("human", "alice@example.com");
  r.Set("task", "TRIAGE-4821");
  r.Set("action", "github:add_issue_comment");
  r.Set("protocol", "mcp");
  r.Set("resource", "github:acme/widgets");
  Json args = Json::MakeObject();
  args.Set("owner", "acme");
  args.Set("repo", "widgets");
  args.Set("issue_number", static_cast<int64_t>(1000 + i % 9000));
  args.Set("body", "Triage note " + n + ": reproduced on main.");
  r.Set("args", std::move(args));
  r.Set("args_hash", FakeSha256Hex(static_cast<uint64_t>(i)));
  Json decision = Json::MakeObject();
  decision.Set("id", "dec_01jq8z3k5m" + n);
  decision.Set("decision", "allow");
  decision.Set("code", Json());
  decision.Set("reason", "permitted by github-triage-comment");
  decision.Set("scope_ok", true);
  decision.Set("policies", Json::StringArray({"github-triage-comment", "default-deny-writes"}));
  r.Set("decision", std::move(decision));
  return r;
}

// ---------------------------------------------------------------------------------------------
// The two sides, behind one interface so that the same driver runs both.

// One connection to the peer's database with its INSERT prepared.
class SqliteConnection {
 public:
  SqliteConnection() = default;
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;
  ~SqliteConnection() {
    if (insert_ != nullptr) sqlite3_finalize(insert_);
    if (db_ != nullptr) sqlite3_close_v2(db_);  // the last one checkpoints the WAL
  }

  // Opens (creating) `path` as the peer is configured: WAL, synchronous=FULL, the table.
  std::string Open(const std::string& path) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, "open " + path);
    sqlite3_busy_timeout(db_, kSqliteBusyTimeoutMillis);
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                            "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, "
                            "record TEXT NOT NULL)"}) {
      std::string err = SqliteExec(db_, sql);
      if (!err.empty()) return err;
    }
    if (sqlite3_prepare_v2(db_, "INSERT INTO audit (record) VALUES (?1)", -1, &insert_, nullptr) !=
        SQLITE_OK) {
      return SqliteError(db_, "prepare INSERT");
    }
    return {};
  }

  // One INSERT in its own (autocommit) transaction: durable when it returns SQLITE_DONE.
  std::string Insert(const std::string& text) {
    sqlite3_bind_text(insert_, 1, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
    int rc = sqlite3_step(insert_);
    std::string err = rc == SQLITE_DONE ? std::string() : SqliteError(db_, "INSERT");
    sqlite3_reset(insert_);
    sqlite3_clear_bindings(insert_);
    return err;
  }

  sqlite3* db() { return db_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

// What a side does. Write may be called concurrently by writers 0..W-1.
class Side {
 public:
  virtual ~Side() = default;
  virtual std::string Name() const = 0;
  // Empty on success, else why not.
  virtual std::string Open() = 0;
  // Makes `record` durable; returns once it is. Empty on success, else why not.
  virtual std::string Write(int writer, Json record) = 0;
  // Closes what Open opened (every Write has returned by then).
  virtual void Close() = 0;
};

class MandateSide final : public Side {
 public:
  explicit MandateSide(std::string dir) : dir_(std::move(dir)) {}
  std::string Name() const override { return "mandate"; }
  std::string Open() override {
    auto opened = audit::OpenAuditLog(dir_, mandate::core::SystemClock::Instance());
    if (!opened.ok()) return "OpenAuditLog: " + opened.error().message;
    log_ = std::move(*opened);
    return {};
  }
  std::string Write(int, Json record) override {
    auto appended = log_->Append(record);
    return appended.ok() ? std::string() : "Append: " + appended.error().message;
  }
  void Close() override {
    if (log_ != nullptr) log_->Close();
    log_.reset();
  }

 private:
  std::string dir_;
  std::unique_ptr<audit::AuditLog> log_;
};

class SqliteSide final : public Side {
 public:
  SqliteSide(std::string path, int writers, bool shared)
      : path_(std::move(path)), writers_(writers), shared_(shared) {}
  std::string Name() const override { return "sqlite"; }
  std::string Open() override {
    // Shared: one connection and a mutex. Per-thread: one connection per writer, serialized by
    // SQLite's own WAL write lock and busy handler.
    for (int t = 0; t < (shared_ ? 1 : writers_); ++t) {
      conns_.push_back(std::make_unique<SqliteConnection>());
      std::string err = conns_.back()->Open(path_);
      if (!err.empty()) return err;
    }
    return {};
  }
  std::string Write(int writer, Json record) override {
    const std::string text = record.Canonical();
    if (!shared_) return conns_[static_cast<size_t>(writer)]->Insert(text);
    std::lock_guard<std::mutex> lock(mu_);
    return conns_[0]->Insert(text);
  }
  void Close() override { conns_.clear(); }

 private:
  std::string path_;
  int writers_;
  bool shared_;
  std::mutex mu_;
  std::vector<std::unique_ptr<SqliteConnection>> conns_;
};

// ---------------------------------------------------------------------------------------------
// The driver: W writer threads appending records until a deadline or a record cap.

// One side of one configuration, its slices merged.
struct SideResult {
  std::string side;
  int writers = 0;
  int64_t records = 0;  // acknowledged (durable) records
  int64_t errors = 0;
  std::string first_error;
  double seconds = 0;                     // time spent writing, over the slices
  double cpu_seconds = 0;                 // the process's CPU time meanwhile (user + system)
  std::vector<uint64_t> latencies_nanos;  // sorted by Finish()

  double Rate() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
  double P50() const { return PercentileMicros(latencies_nanos, 0.50); }
  double P99() const { return PercentileMicros(latencies_nanos, 0.99); }
  double CpuMicrosPerRecord() const { return records > 0 ? cpu_seconds * 1e6 / records : 0; }
  void Finish() { std::sort(latencies_nanos.begin(), latencies_nanos.end()); }
};

// Runs `writers` threads writing to `side` for `seconds`. Each takes the next record index
// from `next` and stops at the deadline, at index `max_index`, or at the first error (the
// audit log stays failed after one). Adds what happened to `r`.
void RunSlice(Side& side, int writers, double seconds, std::atomic<int64_t>& next,
              int64_t max_index, SideResult& r) {
  struct PerThread {
    std::vector<uint64_t> nanos;
    int64_t errors = 0;
    std::string first_error;
  };
  std::vector<PerThread> per(static_cast<size_t>(writers));
  std::atomic<bool> stop{false};
  std::latch ready(writers);
  std::latch go(1);
  Clock::time_point deadline;  // written before go.count_down(), read after go.wait()
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(writers));
  for (int t = 0; t < writers; ++t) {
    threads.emplace_back([&, t] {
      PerThread& mine = per[static_cast<size_t>(t)];
      mine.nanos.reserve(4096);
      ready.count_down();
      go.wait();
      while (!stop.load(std::memory_order_relaxed)) {
        const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= max_index) break;
        Json record = MakeRecord(i);
        const Clock::time_point t0 = Clock::now();
        if (t0 >= deadline) break;  // index i is skipped: the indices stay unique
        std::string err = side.Write(t, std::move(record));
        const Clock::time_point t1 = Clock::now();
        if (!err.empty()) {
          if (mine.errors++ == 0) mine.first_error = err;
          stop.store(true);
          break;
        }
        mine.nanos.push_back(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
      }
    });
  }
  ready.wait();
  const double cpu0 = ProcessCpuSeconds();
  const Clock::time_point start = Clock::now();
  deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  go.count_down();
  for (std::thread& th : threads) th.join();
  r.seconds += SecondsSince(start);
  r.cpu_seconds += ProcessCpuSeconds() - cpu0;
  for (PerThread& p : per) {
    r.records += static_cast<int64_t>(p.nanos.size());
    r.latencies_nanos.insert(r.latencies_nanos.end(), p.nanos.begin(), p.nanos.end());
    if (p.errors > 0 && r.errors == 0) r.first_error = p.first_error;
    r.errors += p.errors;
  }
}

// PRAGMA integrity_check over the database at `path` on a fresh connection (the writers'
// connections closed, so the WAL is checkpointed into it), after checking it holds `rows`
// rows. Returns the seconds the check took, or < 0 with `err` set.
double SqliteIntegrityCheck(const std::string& path, int64_t rows, std::string* err) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    *err = SqliteError(db, "open " + path);
    sqlite3_close_v2(db);
    return -1;
  }
  auto query = [&](const char* sql, std::string* first) -> bool {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
      *err = SqliteError(db, sql);
      return false;
    }
    int rc;
    bool got_first = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (!got_first) {
        const unsigned char* v = sqlite3_column_text(st, 0);
        *first = v != nullptr ? reinterpret_cast<const char*>(v) : "";
        got_first = true;
      } else {
        *first += " | more problems";
      }
    }
    if (rc != SQLITE_DONE) *err = SqliteError(db, sql);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE;
  };
  std::string count, check;
  double seconds = -1;
  if (query("SELECT count(*) FROM audit", &count)) {
    if (count != std::to_string(rows)) {
      *err = "the database holds " + count + " rows, " + std::to_string(rows) + " were inserted";
    } else {
      Clock::time_point t0 = Clock::now();
      if (query("PRAGMA integrity_check", &check)) {
        seconds = SecondsSince(t0);
        if (check != "ok") {
          *err = "integrity_check: " + check;
          seconds = -1;
        }
      }
    }
  }
  sqlite3_close_v2(db);
  return seconds;
}

// ---------------------------------------------------------------------------------------------
// Verification.

struct VerifyResult {
  std::string label;
  int64_t records = 0;  // records on each side (the same records when filled for the pass)
  int64_t sqlite_rows = 0;
  double mandate_seconds = 0;
  double sqlite_seconds = 0;
  double mandate_fill_rate = 0;  // dedicated pass only
  double sqlite_fill_rate = 0;
  std::string error;

  double MandateRate() const {
    return mandate_seconds > 0 ? static_cast<double>(records) / mandate_seconds : 0;
  }
  double SqliteRate() const {
    return sqlite_seconds > 0 ? static_cast<double>(sqlite_rows) / sqlite_seconds : 0;
  }
  double Ratio() const { return SqliteRate() > 0 ? MandateRate() / SqliteRate() : 0; }
};

// Times VerifyLog over the closed log in `dir`, which must hold at least `records` records.
double MandateVerify(const std::string& dir, int64_t records, int64_t* verified, std::string* err) {
  Clock::time_point t0 = Clock::now();
  auto report = audit::VerifyLog(dir);
  double seconds = SecondsSince(t0);
  if (!report.ok()) {
    *err = "VerifyLog: " + report.error().message;
    return -1;
  }
  if (!report->ok) {
    *err = "VerifyLog: the log does not verify: " + report->problem;
    return -1;
  }
  // The log may add records of its own (e.g. on open); never fewer than were appended.
  if (static_cast<int64_t>(report->records) < records) {
    *err = "VerifyLog: " + std::to_string(report->records) + " records verified, " +
           std::to_string(records) + " were appended";
    return -1;
  }
  *verified = static_cast<int64_t>(report->records);
  return seconds;
}

// Fills a fresh log with records 0..k-1 the fast way, k = n or fewer when filling takes longer
// than `fill_seconds`, and a fresh database with the same records; then verifies both.
VerifyResult DedicatedVerify(const std::string& base, int64_t n, double fill_seconds) {
  VerifyResult v;
  const std::string dir = base + "/mandate-verify";
  const std::string db_path = base + "/sqlite-verify.db";
  {
    auto opened = audit::OpenAuditLog(dir, mandate::core::SystemClock::Instance());
    if (!opened.ok()) {
      v.error = "OpenAuditLog: " + opened.error().message;
      return v;
    }
    std::unique_ptr<audit::AuditLog> log = std::move(*opened);
    const int threads =
        std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kFillThreadsMax);
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mu;
    Clock::time_point t0 = Clock::now();
    const Clock::time_point deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(fill_seconds));
    std::vector<std::thread> fill;
    for (int t = 0; t < threads; ++t) {
      fill.emplace_back([&] {
        // Invariant: every index taken below n is submitted, so the log holds 0..k-1.
        while (!failed.load(std::memory_order_relaxed) && Clock::now() < deadline) {
          const int64_t i = next.fetch_add(1);
          if (i >= n) break;
          auto s = log->Submit(MakeRecord(i));
          if (!s.ok()) {
            std::lock_guard<std::mutex> lock(err_mu);
            if (!failed.exchange(true)) v.error = "Submit: " + s.error().message;
          }
        }
      });
    }
    for (std::thread& th : fill) th.join();
    log->Close();  // completes every queued record
    n = std::min(next.load(), n);
    v.mandate_fill_rate = static_cast<double>(n) / SecondsSince(t0);
    if (!v.error.empty()) return v;
  }
  v.label = Grouped(static_cast<double>(n)) + "-record log";
  {
    SqliteConnection c;
    std::string err = c.Open(db_path);
    Clock::time_point t0 = Clock::now();
    for (int64_t i = 0; i < n && err.empty(); i += kSqliteFillRowsPerTransaction) {
      err = SqliteExec(c.db(), "BEGIN");
      for (int64_t k = i; k < std::min(n, i + kSqliteFillRowsPerTransaction) && err.empty(); ++k) {
        err = c.Insert(MakeRecord(k).Canonical());
      }
      if (err.empty()) err = SqliteExec(c.db(), "COMMIT");
    }
    v.sqlite_fill_rate = static_cast<double>(n) / SecondsSince(t0);
    if (!err.empty()) {
      v.error = "sqlite fill: " + err;
      return v;
    }
  }
  v.sqlite_rows = n;
  v.mandate_seconds = MandateVerify(dir, n, &v.records, &v.error);
  if (v.mandate_seconds < 0) return v;
  v.sqlite_seconds = SqliteIntegrityCheck(db_path, n, &v.error);
  return v;
}

// ---------------------------------------------------------------------------------------------
// The disk under both: write + fdatasync of a record-sized line, as mcp_load fsync-probe.

struct FsyncProbe {
  double p50 = 0, p99 = 0;
  std::string error;
};

// Appends `count` samples (nanoseconds) to `nanos`; an empty string, else why it failed.
std::string ProbeDisk(const std::string& dir, int count, std::vector<uint64_t>* nanos) {
  std::string path = dir + "/fsync-probe.tmp";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot create " + path + ": " + std::strerror(errno);
  std::string line(kRecordBytesNominal - 1, 'x');
  line.push_back('\n');
  std::string err;
  for (int i = 0; i < count; ++i) {
    Clock::time_point t0 = Clock::now();
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
        ::fdatasync(fd) != 0) {
      err = std::string("write or fdatasync failed: ") + std::strerror(errno);
      break;
    }
    nanos->push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  }
  ::close(fd);
  ::unlink(path.c_str());
  return err;
}

FsyncProbe ProbeDisk(const std::string& dir, int count) {
  FsyncProbe p;
  std::vector<uint64_t> nanos;
  p.error = ProbeDisk(dir, count, &nanos);
  std::sort(nanos.begin(), nanos.end());
  p.p50 = PercentileMicros(nanos, 0.50);
  p.p99 = PercentileMicros(nanos, 0.99);
  return p;
}

// ---------------------------------------------------------------------------------------------

Json SideJson(const SideResult& r) {
  Json j = Json::MakeObject();
  j.Set("records", r.records);
  j.Set("seconds", Round2(r.seconds));
  j.Set("per_second", Round1(r.Rate()));
  j.Set("ack_p50_us", Round1(r.P50()));
  j.Set("ack_p99_us", Round1(r.P99()));
  j.Set("ack_max_us", Round1(r.latencies_nanos.empty() ? 0 : r.latencies_nanos.back() / 1000.0));
  j.Set("cpu_us_per_record", Round1(r.CpuMicrosPerRecord()));
  j.Set("errors", r.errors);
  if (!r.first_error.empty()) j.Set("first_error", r.first_error);
  return j;
}

Json VerifyJson(const VerifyResult& v) {
  Json j = Json::MakeObject();
  j.Set("log", v.label);
  j.Set("mandate_records", v.records);
  j.Set("sqlite_rows", v.sqlite_rows);
  j.Set("mandate_verify_per_second", Round1(v.MandateRate()));
  j.Set("sqlite_integrity_check_per_second", Round1(v.SqliteRate()));
  j.Set("ratio", Round2(v.Ratio()));
  if (v.mandate_fill_rate > 0) j.Set("mandate_submit_fill_per_second", Round1(v.mandate_fill_rate));
  if (v.sqlite_fill_rate > 0) j.Set("sqlite_batched_fill_per_second", Round1(v.sqlite_fill_rate));
  if (!v.error.empty()) j.Set("error", v.error);
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--seconds") {
      o.seconds = ParseNumber(a, v, 0.1, kSecondsMax);
    } else if (a == "--slices") {
      o.slices = static_cast<int>(ParseNumber(a, v, 1, kSlicesMax));
    } else if (a == "--max-records") {
      o.max_records = static_cast<int64_t>(ParseNumber(a, v, 1, kRecordsPerConfigMax));
    } else if (a == "--verify-records") {
      o.verify_records = static_cast<int64_t>(ParseNumber(a, v, 0, kVerifyRecordsMax));
    } else if (a == "--verify-fill-seconds") {
      o.verify_fill_seconds = ParseNumber(a, v, 0.1, kSecondsMax);
    } else if (a == "--writers") {
      if (v == nullptr) Usage("--writers needs a list such as 1,8,64");
      o.writers.clear();
      std::string list = v;
      for (size_t at = 0; at <= list.size();) {
        size_t comma = std::min(list.find(',', at), list.size());
        std::string one = list.substr(at, comma - at);
        o.writers.push_back(static_cast<int>(ParseNumber(a, one.c_str(), 1, kWritersMax)));
        at = comma + 1;
      }
      if (o.writers.size() > kWriterCountsMax) Usage("--writers: too many writer counts");
    } else if (a == "--sqlite") {
      if (v == nullptr || (std::string(v) != "shared" && std::string(v) != "per-thread")) {
        Usage("--sqlite must be shared or per-thread");
      }
      o.sqlite_shared = std::string(v) == "shared";
    } else if (a == "--dir") {
      if (v == nullptr) Usage("--dir needs a directory");
      o.dir = v;
    } else {
      Usage("unknown flag " + a);
    }
    ++i;
  }

  const std::string base = mandate::bench::MakeRunDir(o.dir, "mandate-audit-bench");
  if (base.empty()) return 1;
  const std::string sqlite_mode = o.sqlite_shared
                                      ? "one shared connection, its INSERT under a mutex"
                                      : "one connection per writer, busy_timeout " +
                                            std::to_string(kSqliteBusyTimeoutMillis) + " ms";
  // Progress goes to stderr, so --json leaves stdout to the JSON object.
  auto progress = [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  };

  FsyncProbe probe = ProbeDisk(base, kFsyncProbeCount);
  if (!probe.error.empty()) {
    std::fprintf(stderr, "mandate_audit_bench: disk probe: %s\n", probe.error.c_str());
    mandate::bench::RemoveRunPath(base);
    return 1;
  }

  // What building one record costs the writer (outside the timed call, inside the wall time of
  // both sides alike).
  size_t record_bytes_min = SIZE_MAX, record_bytes_max = 0;
  Clock::time_point b0 = Clock::now();
  for (int i = 0; i < kRecordBuildSamples; ++i) {
    Json r = MakeRecord(i * 7919);
    if (i % 100 == 0) {
      size_t bytes = r.Canonical().size();
      record_bytes_min = std::min(record_bytes_min, bytes);
      record_bytes_max = std::max(record_bytes_max, bytes);
    }
  }
  const double build_micros = SecondsSince(b0) * 1e6 / kRecordBuildSamples;

  const mandate::bench::LoadAverage load = mandate::bench::ReadLoadAverage();
  char head[512];
  std::snprintf(head, sizeof head,
                "== machine: %u CPUs, load average %.2f %.2f %.2f; temp dir %s (both sides)\n"
                "== disk: write+fdatasync of a %zu-byte line p50 %.0f us, p99 %.0f us "
                "(one serial writer: ~%s syncs/s)",
                std::thread::hardware_concurrency(), load.one, load.five, load.fifteen,
                base.c_str(), kRecordBytesNominal, probe.p50, probe.p99,
                Grouped(probe.p50 > 0 ? 1e6 / probe.p50 : 0).c_str());
  progress(head);
  std::snprintf(head, sizeof head,
                "== records: call.decided, %zu to %zu bytes canonical; building one costs %.1f us "
                "(not in the ack latency)\n"
                "== peer: SQLite %s, WAL, synchronous=FULL, one INSERT per autocommit "
                "transaction, %s\n"
                "== each config: %.1f s or %s records per side, whichever comes first, in %d "
                "interleaved slices per side",
                record_bytes_min, record_bytes_max, build_micros, sqlite3_libversion(),
                sqlite_mode.c_str(), o.seconds, Grouped(static_cast<double>(o.max_records)).c_str(),
                o.slices);
  progress(head);

  struct Row {
    SideResult m, s;
    double fsync_p50 = 0, fsync_p99 = 0;  // the probes of this config's rounds
    double Ratio() const { return s.Rate() > 0 ? m.Rate() / s.Rate() : 0; }
    double Ceiling() const { return fsync_p50 > 0 ? m.writers * 1e6 / fsync_p50 : 0; }
  };
  std::vector<Row> rows;
  std::vector<VerifyResult> verifies;
  int64_t failures = 0;
  const int verify_writers = *std::max_element(o.writers.begin(), o.writers.end());
  bool verified_run = false;
  for (size_t k = 0; k < o.writers.size(); ++k) {
    const int w = o.writers[k];
    const std::string dir = base + "/mandate-w" + std::to_string(w);
    const std::string db = base + "/sqlite-w" + std::to_string(w) + ".db";
    Row row;
    row.m.side = "mandate";
    row.s.side = "sqlite";
    row.m.writers = row.s.writers = w;
    MandateSide mandate_side(dir);
    SqliteSide sqlite_side(db, w, o.sqlite_shared);
    std::string open_error = mandate_side.Open();
    if (!open_error.empty()) {
      row.m.errors = 1;
      row.m.first_error = open_error;
    } else if (open_error = sqlite_side.Open(); !open_error.empty()) {
      row.s.errors = 1;
      row.s.first_error = open_error;
    }
    std::atomic<int64_t> m_next{0}, s_next{0};
    std::vector<uint64_t> disk_nanos;
    for (int slice = 0; slice < o.slices && open_error.empty(); ++slice) {
      if (std::string err = ProbeDisk(base, kFsyncProbeRoundCount, &disk_nanos); !err.empty()) {
        row.m.errors = 1;
        row.m.first_error = "disk probe: " + err;
        break;
      }
      // Alternate which side goes first, so a drift of the machine's state favours neither.
      const bool mandate_first = (slice + k) % 2 == 0;
      for (int turn = 0; turn < 2; ++turn) {
        if ((turn == 0) == mandate_first) {
          RunSlice(mandate_side, w, o.seconds / o.slices, m_next, o.max_records, row.m);
        } else {
          RunSlice(sqlite_side, w, o.seconds / o.slices, s_next, o.max_records, row.s);
        }
      }
      if (row.m.errors + row.s.errors > 0) break;
    }
    mandate_side.Close();  // every Append has returned: everything counted is already durable
    sqlite_side.Close();
    row.m.Finish();
    row.s.Finish();
    std::sort(disk_nanos.begin(), disk_nanos.end());
    row.fsync_p50 = PercentileMicros(disk_nanos, 0.50);
    row.fsync_p99 = PercentileMicros(disk_nanos, 0.99);
    for (const SideResult* r : {&row.m, &row.s}) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "   %-7s %3d writers: %s records in %.2f s = %s/s, ack p50 %.0f us, p99 %.0f "
                    "us; CPU %.1f us/record (disk fdatasync p50 %.0f us)%s",
                    r->side.c_str(), w, Grouped(static_cast<double>(r->records)).c_str(),
                    r->seconds, Grouped(r->Rate()).c_str(), r->P50(), r->P99(),
                    r->CpuMicrosPerRecord(), row.fsync_p50, r->errors > 0 ? "  ERRORS" : "");
      progress(line);
      if (r->errors > 0) progress("!!!!! " + r->side + ": " + r->first_error);
    }
    failures += row.m.errors + row.s.errors;
    if (w == verify_writers && !verified_run && row.m.errors + row.s.errors == 0) {
      verified_run = true;
      VerifyResult v;
      v.label = std::to_string(w) + "-writer log";
      v.sqlite_rows = row.s.records;
      v.mandate_seconds = MandateVerify(dir, row.m.records, &v.records, &v.error);
      if (v.mandate_seconds >= 0) {
        v.sqlite_seconds = SqliteIntegrityCheck(db, row.s.records, &v.error);
      }
      if (!v.error.empty()) {
        ++failures;
        progress("!!!!! verify: " + v.error);
      }
      verifies.push_back(std::move(v));
    }
    mandate::bench::RemoveRunPath(dir);
    for (const char* suffix : {"", "-wal", "-shm"}) mandate::bench::RemoveRunPath(db + suffix);
    rows.push_back(std::move(row));
  }
  if (o.verify_records > 0) {
    progress("   dedicated verify pass: filling a log and a database with up to " +
             Grouped(static_cast<double>(o.verify_records)) + " records ...");
    VerifyResult v = DedicatedVerify(base, o.verify_records, o.verify_fill_seconds);
    if (!v.error.empty()) {
      ++failures;
      progress("!!!!! dedicated verify: " + v.error);
    }
    verifies.push_back(std::move(v));
  }
  mandate::bench::RemoveRunPath(base);

  // The verdict against the targets.
  struct Verdict {
    std::string what;
    std::string value;
    bool met;
  };
  std::vector<Verdict> verdicts;
  const Row* at_target = nullptr;
  for (const Row& row : rows) {
    if (row.m.writers == kTargetWriters) at_target = &row;
  }
  if (at_target != nullptr) {
    const double rate = at_target->m.Rate();
    const double ratio = at_target->Ratio();
    char buf[128];
    verdicts.push_back({"durable records/s at 64 writers >= " + Grouped(kTargetRecordsPerSecond),
                        Grouped(rate), rate >= kTargetRecordsPerSecond});
    std::snprintf(buf, sizeof buf, "%.2fx", ratio);
    verdicts.push_back({"mandate/sqlite at 64 writers >= 5x", buf, ratio >= kTargetRatio});
  }
  {
    std::string values;
    bool met = !rows.empty();
    for (const Row& row : rows) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%d w %s us", values.empty() ? "" : ", ", row.m.writers,
                    Grouped(row.m.P99()).c_str());
      values += buf;
      met = met && row.m.P99() <= kTargetAckP99Micros;
    }
    verdicts.push_back({"ack p99 <= 2,000 us at every writer count", values, met});
  }
  if (!verifies.empty()) {
    // The largest log verified is the one the target is about.
    const VerifyResult& v = verifies.back();
    verdicts.push_back(
        {"verify >= " + Grouped(kTargetVerifyRecordsPerSecond) + " records/s (" + v.label + ")",
         Grouped(v.MandateRate()) + "/s",
         v.error.empty() && v.MandateRate() >= kTargetVerifyRecordsPerSecond});
  }

  if (o.json) {
    Json out = Json::MakeObject();
    Json machine = Json::MakeObject();
    machine.Set("cpus", static_cast<int64_t>(std::thread::hardware_concurrency()));
    machine.Set("load_average_1m", load.one);
    machine.Set("fsync_p50_us", Round1(probe.p50));
    machine.Set("fsync_p99_us", Round1(probe.p99));
    out.Set("machine", std::move(machine));
    out.Set("sqlite_version", sqlite3_libversion());
    out.Set("sqlite_mode", o.sqlite_shared ? "shared" : "per-thread");
    out.Set("seconds_per_config", o.seconds);
    out.Set("slices", o.slices);
    out.Set("record_bytes_min", static_cast<int64_t>(record_bytes_min));
    out.Set("record_bytes_max", static_cast<int64_t>(record_bytes_max));
    Json configs = Json::MakeArray();
    for (const Row& row : rows) {
      Json c = Json::MakeObject();
      c.Set("writers", row.m.writers);
      c.Set("mandate", SideJson(row.m));
      c.Set("sqlite", SideJson(row.s));
      c.Set("ratio", Round2(row.Ratio()));
      c.Set("fsync_p50_us", Round1(row.fsync_p50));
      c.Set("fsync_p99_us", Round1(row.fsync_p99));
      c.Set("ceiling_per_second", Round1(row.Ceiling()));
      configs.Push(std::move(c));
    }
    out.Set("configs", std::move(configs));
    Json vs = Json::MakeArray();
    for (const VerifyResult& v : verifies) vs.Push(VerifyJson(v));
    out.Set("verify", std::move(vs));
    Json ts = Json::MakeArray();
    for (const Verdict& t : verdicts) {
      Json j = Json::MakeObject();
      j.Set("target", t.what);
      j.Set("value", t.value);
      j.Set("met", t.met);
      ts.Push(std::move(j));
    }
    out.Set("targets", std::move(ts));
    out.Set("errors", failures);
    std::printf("%s\n", out.Dump().c_str());
    return failures > 0 ? 1 : 0;
  }

  std::printf(
      "\n== Durable audit appends: Mandate's audit log vs SQLite %s (WAL, "
      "synchronous=FULL, %s)\n",
      sqlite3_libversion(), sqlite_mode.c_str());
  std::printf("%7s | %11s %11s %8s | %9s %9s | %9s %9s | %8s %10s\n", "writers", "mandate",
              "sqlite", "mandate/", "mandate", "mandate", "sqlite", "sqlite", "disk", "ceiling");
  std::printf("%7s | %11s %11s %8s | %9s %9s | %9s %9s | %8s %10s\n", "", "appends/s", "inserts/s",
              "sqlite", "p50 us", "p99 us", "p50 us", "p99 us", "fsync us", "W/fsync");
  for (const Row& row : rows) {
    std::printf("%7d | %11s %11s %7.2fx | %9s %9s | %9s %9s | %8s %10s%s\n", row.m.writers,
                Grouped(row.m.Rate()).c_str(), Grouped(row.s.Rate()).c_str(), row.Ratio(),
                Grouped(row.m.P50()).c_str(), Grouped(row.m.P99()).c_str(),
                Grouped(row.s.P50()).c_str(), Grouped(row.s.P99()).c_str(),
                Grouped(row.fsync_p50).c_str(), Grouped(row.Ceiling()).c_str(),
                row.m.errors + row.s.errors > 0 ? "  ERRORS: not a measurement" : "");
  }
  std::printf(
      "(records acknowledged durable / time spent writing, both sides interleaved in %d slices;\n"
      " ack = one Append / one INSERT call, p50/p99 over every call; disk fsync = p50 of a\n"
      " write+fdatasync of a %zu-byte line probed before each slice round; ceiling = writers /\n"
      " that p50, about the most W writers with one record in flight each get acknowledged)\n",
      o.slices, kRecordBytesNominal);
  for (const VerifyResult& v : verifies) {
    std::printf(
        "verify, %s: mandate VerifyLog %s records/s (%s records) | sqlite "
        "integrity_check %s records/s (%s rows) | mandate/sqlite %.2fx%s\n",
        v.label.c_str(), Grouped(v.MandateRate()).c_str(),
        Grouped(static_cast<double>(v.records)).c_str(), Grouped(v.SqliteRate()).c_str(),
        Grouped(static_cast<double>(v.sqlite_rows)).c_str(), v.Ratio(),
        v.error.empty() ? "" : ("  ERROR: " + v.error).c_str());
    if (v.mandate_fill_rate > 0) {
      std::printf(
          "   (filled the fast way, not a durability figure: mandate Submit %s records/s, "
          "sqlite %s-row transactions %s rows/s)\n",
          Grouped(v.mandate_fill_rate).c_str(),
          Grouped(static_cast<double>(kSqliteFillRowsPerTransaction)).c_str(),
          Grouped(v.sqlite_fill_rate).c_str());
    }
  }
  std::printf("targets:\n");
  bool all_met = true;
  for (const Verdict& t : verdicts) {
    std::printf("   %-58s %s: %s\n", t.what.c_str(), t.value.c_str(), t.met ? "MET" : "MISSED");
    all_met = all_met && t.met;
  }
  std::printf("verdict: %s\n", all_met ? "all targets met" : "TARGETS MISSED");
  if (failures > 0) {
    std::printf("!!!!! %lld ERRORS in this run: the numbers above are not valid measurements\n",
                static_cast<long long>(failures));
    return 1;
  }
  return 0;
}
