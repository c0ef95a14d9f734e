// Helpers shared by the standalone benchmarks (bench/audit_append.cc, bench/revocation_check.cc,
// bench/policy_eval.cc): argument parsing, number formatting, percentiles, timing, a
// deterministic mixer and SQLite error text.
// Header-only; each benchmark is its own executable.
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <cerrno>
#include <string>
#include <vector>

namespace mandate::bench {

using Clock = std::chrono::steady_clock;

// A command-line number of `flag` in [lo, hi]; anything else calls `usage` (which exits).
[[nodiscard]] inline double ParseNumber(const std::string& flag, const char* v, double lo, double hi,
                                        void (*usage)(const std::string&)) {
  if (v == nullptr) usage(flag + " needs a value");
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(d >= lo && d <= hi)) {
    usage(flag + " must be a number from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return d;
}

// "1,8,64" -> {1, 8, 64}, each in [lo, hi], at most `count_max` of them; anything else calls
// `usage` (which exits).
[[nodiscard]] inline std::vector<int64_t> ParseList(const std::string& flag, const char* v,
                                                    double lo, double hi, size_t count_max,
                                                    void (*usage)(const std::string&)) {
  if (v == nullptr) usage(flag + " needs a comma-separated list");
  std::vector<int64_t> out;
  std::string list = v;
  for (size_t at = 0; at <= list.size();) {
    size_t comma = std::min(list.find(',', at), list.size());
    std::string one = list.substr(at, comma - at);
    out.push_back(static_cast<int64_t>(ParseNumber(flag, one.c_str(), lo, hi, usage)));
    at = comma + 1;
  }
  if (out.size() > count_max) usage(flag + ": too many values");
  return out;
}

// Nearest-rank percentile of sorted samples; NaN when there are none.
inline double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return NAN;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// 1234567.8 -> "1,234,568".
inline std::string Grouped(double v) {
  if (!std::isfinite(v)) return "n/a";
  long long n = std::llround(v);
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

// A fresh directory for one run, <dir>/<prefix>.XXXXXX, <dir> being the --dir flag's value,
// else $TMPDIR, else /tmp. Says why on stderr and returns "" when it cannot be made.
inline std::string MakeRunDir(const std::string& dir, const std::string& prefix) {
  std::string base = dir;
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string tmpl = base + "/" + prefix + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "%s: cannot create a temp dir %s: %s\n", prefix.c_str(), tmpl.c_str(),
                 std::strerror(errno));
    return std::string();
  }
  return tmpl;
}

// Removes a run's file or directory tree (MakeRunDir's, or one inside it); a path that is
// already gone or cannot be removed is left alone: cleanup never fails a run.
inline void RemoveRunPath(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

// The 1-, 5- and 15-minute load averages from /proc/loadavg (zeros where it cannot be read),
// printed by every benchmark so a reader can tell a busy machine's figures.
struct LoadAverage {
  double one = 0, five = 0, fifteen = 0;
};
inline LoadAverage ReadLoadAverage() {
  LoadAverage l;
  if (std::ifstream la("/proc/loadavg"); la) la >> l.one >> l.five >> l.fifteen;
  return l;
}

inline double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// splitmix64: a deterministic, well-mixed 64-bit value from a counter.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

inline std::string SqliteError(sqlite3* db, const std::string& what) {
  return what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory");
}

// Runs `sql`; returns "" or the error.
inline std::string SqliteExec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string err = sql + ": " + (msg != nullptr ? msg : "?");
    sqlite3_free(msg);
    return err;
  }
  return {};
}

}  // namespace mandate::bench
