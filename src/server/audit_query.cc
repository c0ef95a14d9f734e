#include "server/audit_query.h"

#include <algorithm>
#include <limits>
#include <set>

#include "mandate/core/clock.h"
#include "mandate/core/limits.h"
#include "mandate/net/form.h"
#include "server/config.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

constexpr int64_t kMicrosPerSecond = 1000000;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at text[*pos].
std::optional<int> Digits(std::string_view text, size_t* pos, size_t n) {
  if (*pos + n > text.size()) return std::nullopt;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (!IsDigit(c)) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  return v;
}

bool Expect(std::string_view text, size_t* pos, std::string_view any_of) {
  if (*pos >= text.size() || any_of.find(text[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}


int DaysInMonth(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Up to 6 fraction digits after a '.', as microseconds; more digits are ignored.
std::optional<int64_t> Fraction(std::string_view text, size_t* pos) {
  if (*pos >= text.size() || text[*pos] != '.') return 0;
  ++*pos;
  const size_t start = *pos;
  int64_t micros = 0;
  int64_t scale = 100000;
  while (*pos < text.size() && IsDigit(text[*pos])) {
    if (scale > 0) {
      micros += (text[*pos] - '0') * scale;
      scale /= 10;
    }
    ++*pos;
  }
  if (*pos == start) return std::nullopt;
  return micros;
}

std::optional<int64_t> ParseRfc3339(std::string_view t) {
  size_t p = 0;
  auto year = Digits(t, &p, 4);
  if (!year || !Expect(t, &p, "-")) return std::nullopt;
  auto month = Digits(t, &p, 2);
  if (!month || !Expect(t, &p, "-")) return std::nullopt;
  auto day = Digits(t, &p, 2);
  if (!day || !Expect(t, &p, "Tt ")) return std::nullopt;
  auto hour = Digits(t, &p, 2);
  if (!hour || !Expect(t, &p, ":")) return std::nullopt;
  auto minute = Digits(t, &p, 2);
  if (!minute || !Expect(t, &p, ":")) return std::nullopt;
  auto second = Digits(t, &p, 2);
  if (!second) return std::nullopt;
  auto frac = Fraction(t, &p);
  if (!frac) return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > DaysInMonth(*year, *month) || *hour > 23 ||
      *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  int64_t offset_seconds = 0;
  if (p < t.size() && (t[p] == 'Z' || t[p] == 'z')) {
    ++p;
  } else if (p < t.size() && (t[p] == '+' || t[p] == '-')) {
    const int64_t sign = t[p] == '-' ? -1 : 1;
    ++p;
    auto oh = Digits(t, &p, 2);
    if (!oh || !Expect(t, &p, ":")) return std::nullopt;
    auto om = Digits(t, &p, 2);
    if (!om || *oh > 23 || *om > 59) return std::nullopt;
    offset_seconds = sign * (*oh * 3600 + *om * 60);
  } else {
    return std::nullopt;  // RFC 3339 requires the offset
  }
  if (p != t.size()) return std::nullopt;
  const int64_t secs = core::DaysFromCivil(*year, *month, *day) * 86400 + *hour * 3600 + *minute * 60 +
                       std::min(*second, 59) - offset_seconds;
  return secs * kMicrosPerSecond + *frac;
}

std::optional<int64_t> ParseUnixSeconds(std::string_view t) {
  size_t p = 0;
  int64_t secs = 0;
  while (p < t.size() && IsDigit(t[p])) {
    if (p >= 12) return std::nullopt;  // beyond year 33000: not a timestamp
    secs = secs * 10 + (t[p] - '0');
    ++p;
  }
  if (p == 0) return std::nullopt;
  auto frac = Fraction(t, &p);
  if (!frac || p != t.size()) return std::nullopt;
  return secs * kMicrosPerSecond + *frac;
}

core::Result<uint64_t> ParseSeq(const std::string& name, const std::string& v) {
  if (v.empty() || v.size() > 18 || !std::all_of(v.begin(), v.end(), IsDigit)) {
    return MakeError(ErrorCode::kBadRequest,
                     name + " must be a record's seq (a decimal integer >= 0)");
  }
  return std::stoull(v);
}

}  // namespace

core::Result<int64_t> ParseAuditTime(std::string_view text, int64_t now_micros) {
  if (auto t = ParseRfc3339(text)) return *t;
  if (auto t = ParseUnixSeconds(text)) return *t;
  if (!text.empty() && IsDigit(text.front()) && !IsDigit(text.back())) {
    auto ms = ParseDurationMillis(text);
    if (ms.ok() && *ms <= std::numeric_limits<int64_t>::max() / 1000)
      return now_micros - *ms * 1000;
  }
  return MakeError(ErrorCode::kBadRequest,
                   "\"" + std::string(text.substr(0, 64)) +
                       "\" is not a time: use an RFC 3339 date-time (2026-11-22T17:05:00Z), Unix "
                       "seconds (1767000000) or a duration before now (90s, 15m, 2h, 7d)");
}

core::Result<AuditQuery> ParseAuditQuery(std::string_view query,
                                         const std::vector<std::string_view>& allowed,
                                         size_t limit_max, int64_t now_micros) {
  auto params = net::ParseForm(query);
  if (!params.ok())
    return MakeError(ErrorCode::kBadRequest, "query string: " + params.error().message);
  AuditQuery q;
  for (const auto& [name, value] : *params) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return MakeError(ErrorCode::kBadRequest,
                       "unknown parameter \"" + name.substr(0, 64) + "\" (accepted: " + list + ")");
    }
    if (name == "limit") {
      if (value.empty() || value.size() > 9 || !std::all_of(value.begin(), value.end(), IsDigit) ||
          std::stoull(value) == 0 || std::stoull(value) > limit_max) {
        return MakeError(ErrorCode::kBadRequest, "limit must be 1.." + std::to_string(limit_max));
      }
      q.limit = static_cast<size_t>(std::stoull(value));
      continue;
    }
    if (name == "format") {
      if (value != "jsonl" && value != "otlp") {
        return MakeError(ErrorCode::kBadRequest, "format must be jsonl or otlp");
      }
      q.format = value;
      continue;
    }
    q.filtered = true;
    if (name == "since" || name == "until") {
      auto t = ParseAuditTime(value, now_micros);
      if (!t.ok()) return MakeError(ErrorCode::kBadRequest, name + ": " + t.error().message);
      (name == "since" ? q.filter.since_us : q.filter.until_us) = *t;
      continue;
    }
    if (name == "after_seq") {
      MANDATE_ASSIGN_OR_RETURN(q.filter.after_seq, ParseSeq(name, value));
      continue;
    }
    std::string* field = name == "run"      ? &q.filter.run
                         : name == "sid"    ? &q.filter.sid
                         : name == "agent"  ? &q.filter.agent
                         : name == "human"  ? &q.filter.human
                         : name == "action" ? &q.filter.action
                         : name == "type"   ? &q.filter.type
                                            : nullptr;
    if (field == nullptr)
      return MakeError(ErrorCode::kBadRequest, "unsupported parameter \"" + name + "\"");
    if (value.empty() || value.size() > core::kAuditIndexFieldBytesMax ||
        !core::IsValidUtf8(value)) {
      return MakeError(ErrorCode::kBadRequest, name + " must be 1.." +
                                                   std::to_string(core::kAuditIndexFieldBytesMax) +
                                                   " bytes of UTF-8");
    }
    *field = value;
  }
  if (q.filter.since_us && q.filter.until_us && *q.filter.since_us >= *q.filter.until_us) {
    return MakeError(ErrorCode::kBadRequest, "since must be before until");
  }
  return q;
}

core::Result<AuditPage> ReadAuditPage(store::Store& store, audit::RecordReader& reader,
                                      store::AuditIndexFilter filter, size_t limit,
                                      size_t bytes_max) {
  // One row more than the page: whether a next page exists.
  filter.limit = std::min(limit, core::kAuditIndexQueryRowsMax - 1) + 1;
  limit = filter.limit - 1;
  MANDATE_ASSIGN_OR_RETURN(std::vector<store::AuditIndexRow> rows, store.QueryAuditIndex(filter));
  AuditPage page;
  size_t bytes = 0;
  for (size_t i = 0; i < rows.size() && i < limit; ++i) {
    const store::AuditIndexRow& row = rows[i];
    MANDATE_ASSIGN_OR_RETURN(std::string line,
                             reader.ReadAt(audit::RecordPosition{row.segment, row.offset}));
    if (!page.records.empty() && bytes + line.size() > bytes_max) {
      page.next_after_seq = static_cast<uint64_t>(page.records.back().GetInt("seq", 0));
      return page;
    }
    auto rec = Json::Parse(line, core::kAuditRecordBytesMax);
    if (!rec.ok() || rec->GetInt("seq", -1) != static_cast<int64_t>(row.seq)) {
      return MakeError(
          ErrorCode::kInternal,
          "the audit index is out of step with the log at seq " + std::to_string(row.seq) +
              " (the log changed underneath it; restart the server to rebuild the index)");
    }
    bytes += line.size() + 1;
    page.records.push_back(std::move(rec).value());
    page.lines.push_back(std::move(line));
  }
  if (rows.size() > limit && !page.records.empty()) {
    page.next_after_seq = static_cast<uint64_t>(page.records.back().GetInt("seq", 0));
  }
  return page;
}

core::Result<std::vector<Json>> RelatedRevocations(store::Store& store, audit::RecordReader& reader,
                                                   const std::string& run,
                                                   std::optional<uint64_t> after_seq,
                                                   std::optional<uint64_t> up_to_seq) {
  std::set<std::string> agents, humans;
  std::string task;
  std::optional<uint64_t> run_start;
  for (const char* type : {"session.started", "session.delegated"}) {
    store::AuditIndexFilter f;
    f.run = run;
    f.type = type;
    f.limit = core::kAuditIndexQueryRowsMax;
    MANDATE_ASSIGN_OR_RETURN(std::vector<store::AuditIndexRow> rows, store.QueryAuditIndex(f));
    for (const auto& row : rows) {
      if (!row.agent.empty()) agents.insert(row.agent);
      if (!row.human.empty()) humans.insert(row.human);
      if (!run_start || row.seq < *run_start) run_start = row.seq;
      if (task.empty() && row.type == "session.started") {
        MANDATE_ASSIGN_OR_RETURN(std::string line,
                                 reader.ReadAt(audit::RecordPosition{row.segment, row.offset}));
        if (auto rec = Json::Parse(line, core::kAuditRecordBytesMax); rec.ok())
          task = rec->GetString("task");
      }
    }
  }
  std::vector<Json> out;
  if (!run_start) return out;
  store::AuditIndexFilter f;
  f.type = "session.revoked";
  f.after_seq = std::max(after_seq.value_or(0), *run_start);
  if (up_to_seq) f.before_seq = *up_to_seq + 1;
  f.limit = core::kAuditIndexQueryRowsMax;
  MANDATE_ASSIGN_OR_RETURN(std::vector<store::AuditIndexRow> rows, store.QueryAuditIndex(f));
  for (const auto& row : rows) {
    if (!row.run.empty()) continue;  // a session revocation names its run: already a run record
    MANDATE_ASSIGN_OR_RETURN(std::string line,
                             reader.ReadAt(audit::RecordPosition{row.segment, row.offset}));
    auto rec = Json::Parse(line, core::kAuditRecordBytesMax);
    if (!rec.ok()) continue;
    const std::string kind = rec->GetString("kind");
    const std::string subject = rec->GetString("subject");
    if ((kind == "agent" && agents.count(subject)) || (kind == "human" && humans.count(subject)) ||
        (kind == "task" && !task.empty() && subject == task)) {
      out.push_back(std::move(rec).value());
    }
  }
  return out;
}

}  // namespace mandate::server
