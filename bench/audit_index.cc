// mandate_audit_index_bench: what the audit index costs per record as the number of sessions
// writing at once grows, with the store tuned as the server opens it (SqliteStore::Options'
// defaults: kStoreCacheKib of page cache, a checkpoint every kStoreWalCheckpointPages WAL pages)
// against the peer, the same store opened with SQLite's own defaults (2,000 KiB, 1,000 pages),
// in one run (docs/performance.md, "The audit index's cost and the number of sessions").
//
//   mandate_audit_index_bench [--sessions 32,200,1000,5000] [--rows N] [--batch N] [--rounds N]
//                             [--dir DIR]
//
// For each N of --sessions, each side indexes --rows rows (default 200,000) into a fresh store
// with SqliteStore::IndexAuditRecords, in batches of --batch rows (default 3,200: one 200 ms pass
// of the indexer at 16,000 records/s, the pace of the saturation benchmark). Rows alternate
// call.decided / call.completed, as a call's two records do; each pair belongs to one of N
// sessions (run = sid, a root session each), visited in a fixed scattered order, as concurrent
// sessions interleave in the log; agent, human and action are one each. The sides alternate
// --rounds times (default 2), the one going first swapped each round, each time into a new
// database file; the table shows the median microseconds per row of each side and the ratio
// peer / mandate. Everything lives in one fresh temp directory under --dir, else $TMPDIR, else
// /tmp, removed at the end; with the defaults the run takes about a minute on 2 CPUs.
// Exit status 1 when the store refuses a batch (the figures are then not a measurement).

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "mandate/store/sqlite_store.h"

namespace {

using mandate::bench::Clock;
using mandate::bench::Grouped;
using mandate::bench::SecondsSince;
using mandate::store::AuditIndexRow;
using mandate::store::SqliteStore;

constexpr int64_t kSessionsMax = 1'000'000;
constexpr int64_t kRowsMax = 100'000'000;
constexpr int64_t kRoundsMax = 100;
// SQLite's defaults, what the peer runs with.
constexpr int kSqliteDefaultCacheKib = 2000;
constexpr int kSqliteDefaultCheckpointPages = 1000;

struct Options {
  std::vector<int64_t> sessions{32, 200, 1000, 5000};
  int64_t rows = 200'000;
  int64_t batch = 3'200;
  int64_t rounds = 2;
  std::string dir;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "mandate_audit_index_bench: %s\n"
               "usage: mandate_audit_index_bench [--sessions 32,200,1000,5000] [--rows N]\n"
               "                                 [--batch N] [--rounds N] [--dir DIR]\n",
               why.c_str());
  std::exit(2);
}

// The rows of one run: call pairs of `sessions` sessions, 26-byte session ids.
std::vector<AuditIndexRow> MakeRows(int64_t rows, int64_t sessions) {
  std::vector<std::string> sids;
  for (int64_t i = 0; i < sessions; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "ses_%022lld", static_cast<long long>(i * 7919 + 12345));
    sids.emplace_back(id);
  }
  std::vector<AuditIndexRow> out;
  out.reserve(static_cast<size_t>(rows));
  for (int64_t seq = 0; seq < rows; ++seq) {
    AuditIndexRow r;
    r.seq = static_cast<uint64_t>(seq);
    r.ts = 1'795'000'000'000'000 + seq * 60;
    const bool decided = seq % 2 == 0;
    r.type = decided ? "call.decided" : "call.completed";
    // Pair p goes to session (p * 13) mod N: neighbours in the log belong to different sessions.
    r.run = r.sid = sids[static_cast<size_t>((seq / 2 * 13) % sessions)];
    r.agent = "bench-agent";
    r.human = "alice";
    r.action = "fast:echo";
    if (decided) r.decision = "allow";
    r.segment = 1;
    r.offset = static_cast<uint64_t>(seq) * 620;
    out.push_back(std::move(r));
  }
  return out;
}

// Microseconds per row to index `rows` into a fresh store at `path`, or -1 with `err` set.
double IndexInto(const std::string& path, const SqliteStore::Options& options,
                 const std::vector<AuditIndexRow>& rows, int64_t batch, std::string* err) {
  auto store = SqliteStore::Open(path, options);
  if (!store.ok()) {
    *err = "open: " + store.error().message;
    return -1;
  }
  std::vector<AuditIndexRow> chunk;
  const Clock::time_point t0 = Clock::now();
  for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(rows.size(), i + static_cast<size_t>(batch));
    chunk.assign(rows.begin() + static_cast<std::ptrdiff_t>(i),
                 rows.begin() + static_cast<std::ptrdiff_t>(end));
    if (auto st = (*store)->IndexAuditRecords(chunk); !st.ok()) {
      *err = "IndexAuditRecords: " + st.error().message;
      return -1;
    }
  }
  return SecondsSince(t0) * 1e6 / static_cast<double>(rows.size());
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--sessions") {
      o.sessions = mandate::bench::ParseList(a, v, 1, kSessionsMax, 16, Usage);
    } else if (a == "--rows") {
      o.rows = static_cast<int64_t>(mandate::bench::ParseNumber(a, v, 2, kRowsMax, Usage));
    } else if (a == "--batch") {
      o.batch = static_cast<int64_t>(mandate::bench::ParseNumber(a, v, 1, kRowsMax, Usage));
    } else if (a == "--rounds") {
      o.rounds = static_cast<int64_t>(mandate::bench::ParseNumber(a, v, 1, kRoundsMax, Usage));
    } else if (a == "--dir") {
      if (v == nullptr) Usage("--dir needs a directory");
      o.dir = v;
    } else {
      Usage("unknown flag " + a);
    }
    ++i;
  }
  const std::string work = mandate::bench::MakeRunDir(o.dir, "mandate-audit-index-bench");
  if (work.empty()) return 1;

  const mandate::bench::LoadAverage load = mandate::bench::ReadLoadAverage();
  std::printf("== machine: load average %.2f %.2f %.2f; temp dir %s\n", load.one, load.five,
              load.fifteen, work.c_str());
  std::printf("== %s rows per run in batches of %s, %lld round(s) per side, sides alternating\n",
              Grouped(static_cast<double>(o.rows)).c_str(),
              Grouped(static_cast<double>(o.batch)).c_str(), static_cast<long long>(o.rounds));
  std::printf("== mandate: SqliteStore as the server opens it (cache %d KiB, checkpoint every %d "
              "WAL pages)\n== peer:    the same store with SQLite's defaults (cache %d KiB, "
              "checkpoint every %d WAL pages)\n",
              mandate::core::kStoreCacheKib, mandate::core::kStoreWalCheckpointPages,
              kSqliteDefaultCacheKib, kSqliteDefaultCheckpointPages);
  std::fflush(stdout);

  const SqliteStore::Options mandate_side{};
  const SqliteStore::Options peer_side{kSqliteDefaultCacheKib, kSqliteDefaultCheckpointPages};
  std::printf("\nsessions | mandate us/row |  peer us/row | peer/mandate\n");
  int run = 0;
  for (int64_t n : o.sessions) {
    const std::vector<AuditIndexRow> rows = MakeRows(o.rows, n);
    std::vector<double> mine, peer;
    for (int64_t r = 0; r < o.rounds; ++r) {
      for (int side = 0; side < 2; ++side) {
        const bool mandate_turn = (side == 0) == (r % 2 == 0);
        const std::string path = work + "/run-" + std::to_string(run++) + ".db";
        std::string err;
        const double us = IndexInto(path, mandate_turn ? mandate_side : peer_side, rows, o.batch, &err);
        if (us < 0) {
          std::fprintf(stderr, "!!!!! %s side, %lld sessions: %s\n", mandate_turn ? "mandate" : "peer",
                       static_cast<long long>(n), err.c_str());
          mandate::bench::RemoveRunPath(work);
          return 1;
        }
        (mandate_turn ? mine : peer).push_back(us);
        std::error_code ec;
        for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
      }
    }
    const double m = Median(mine), p = Median(peer);
    std::printf("%8lld | %14.2f | %12.2f | %11.2fx\n", static_cast<long long>(n), m, p, p / m);
    std::fflush(stdout);
  }
  mandate::bench::RemoveRunPath(work);
  return 0;
}
