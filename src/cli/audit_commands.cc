#include "cli/audit_commands.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include "mandate/core/limits.h"
#include "server/audit_replay.h"

namespace mandate::cli {
namespace {

using core::Json;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Filters {
  std::string run, sid, agent, human, action, type, since, until;
  int64_t after_seq = -1;
  size_t limit = 0;
  bool all = false;
  std::string format = "jsonl";
  std::string output;
  std::string replay_run;

  // "&name=value" for each filter given.
  std::string Query() const {
    std::string q;
    auto add = [&](const char* name, const std::string& v) {
      if (!v.empty()) q += std::string("&") + name + "=" + QueryEscape(v);
    };
    add("run", run);
    add("sid", sid);
    add("agent", agent);
    add("human", human);
    add("action", action);
    add("type", type);
    add("since", since);
    add("until", until);
    return q;
  }
};

void AddFilterOptions(CLI::App* cmd, Filters* f, bool with_run) {
  if (with_run) cmd->add_option("--run", f->run, "the run (root session id)");
  cmd->add_option("--sid", f->sid, "a session id");
  cmd->add_option("--agent", f->agent, "the acting agent");
  cmd->add_option("--human", f->human, "the human on whose behalf");
  cmd->add_option("--action", f->action, "upstream:tool");
  cmd->add_option("--type", f->type, "record type, e.g. call.decided");
  cmd->add_option("--since", f->since,
                  "from this time: RFC 3339 (2026-11-22T17:05:00Z), Unix seconds, or a duration "
                  "ago (15m, 2h, 7d)");
  cmd->add_option("--until", f->until, "before this time (same forms)");
}

int Fail(const std::string& message, int code = kExitFailed) {
  std::cerr << "mandate: " << message << "\n";
  return code;
}

// Writes to stdout or to a new file (mode 0600: audit records name people and what they did).
class Output {
 public:
  static core::Result<Output> Open(const std::string& path) {
    Output o;
    if (path.empty() || path == "-") return o;
    o.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (o.fd_ < 0) {
      return core::MakeError(core::ErrorCode::kBadRequest,
                             "cannot create " + path + ": " + std::strerror(errno));
    }
    return o;
  }
  Output() = default;
  Output(Output&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Output& operator=(Output&&) = delete;
  ~Output() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool Write(std::string_view bytes) {
    if (fd_ < 0) {
      std::cout << bytes;
      return static_cast<bool>(std::cout);
    }
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool Close() {
    if (fd_ < 0) return static_cast<bool>(std::cout.flush());
    const bool ok = ::fsync(fd_) == 0 && ::close(fd_) == 0;
    fd_ = -1;
    return ok;
  }

 private:
  int fd_ = -1;
};

}  // namespace

std::string QueryEscape(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

void AddAuditQueryCommands(CLI::App* audit, const AuditCommandContext& ctx) {
  // query
  auto qf = std::make_shared<Filters>();
  auto* query = audit->add_subcommand(
      "query",
      "find records by run, session, agent, human, action, type and time (one page, oldest first)");
  AddFilterOptions(query, qf.get(), true);
  query
      ->add_option("--after-seq", qf->after_seq,
                   "only records after this seq (the previous page's next_after_seq)")
      ->check(CLI::NonNegativeNumber);
  qf->limit = 100;
  query
      ->add_option("--limit", qf->limit,
                   "records per page (default 100, at most " +
                       std::to_string(core::kAdminAuditPageMax) + ")")
      ->check(CLI::Range(size_t{1}, core::kAdminAuditPageMax));
  query->add_flag("--all", qf->all, "follow every page to the last matching record");
  query->callback([qf, ctx] {
    const Filters& f = *qf;
    std::optional<int64_t> after;
    if (f.after_seq >= 0) after = f.after_seq;
    std::string base = f.Query();
    // Without any filter the endpoint tails the log; "since the epoch" asks for every record
    // from the first instead.
    if (base.empty()) base = "&since=0";
    Json all_records = Json::MakeArray();  // for --json only; text is printed as it comes
    size_t printed = 0;
    Json next = Json();
    while (true) {
      std::string path = "/admin/v1/audit?limit=" + std::to_string(f.limit) + base;
      if (after) path += "&after_seq=" + std::to_string(*after);
      auto r = ctx.get_json(path);
      if (!r.ok()) {
        *ctx.rc = Fail(r.error().message);
        return;
      }
      const Json* records = r->FindArray("records");
      if (records == nullptr) {
        *ctx.rc = Fail("audit query: the admin API answered without records");
        return;
      }
      for (const Json& rec : records->as_array()) {
        if (*ctx.json) {
          all_records.Push(rec);
        } else {
          std::cout << server::FormatAuditLine(rec) << "\n";
          ++printed;
        }
      }
      next = r->Find("next_after_seq") ? *r->Find("next_after_seq") : Json();
      if (!f.all || !next.is_int()) break;
      after = next.as_int();
    }
    if (*ctx.json) {
      Json out = Json::MakeObject();
      out.Set("records", std::move(all_records));
      out.Set("next_after_seq", next);
      std::cout << out.Dump() << "\n";
    } else if (next.is_int()) {
      std::cerr << "mandate: more records match: add --after-seq " << next.as_int()
                << " (or --all)\n";
    } else if (printed == 0) {
      std::cerr << "mandate: no records match\n";
    }
  });

  // replay
  auto rf = std::make_shared<Filters>();
  auto* replay = audit->add_subcommand("replay",
                                       "show a run (its whole delegation tree) as a timeline: who, "
                                       "for whom, what was asked, decided and done");
  replay->add_option("RUN", rf->replay_run, "the run: its root session id")->required();
  replay->callback([rf, ctx] {
    const std::string run = rf->replay_run;
    Json records = Json::MakeArray();
    std::vector<Json> list;
    std::optional<int64_t> after;
    bool truncated = false;
    while (true) {
      std::string path = "/admin/v1/audit/replay?run=" + QueryEscape(run);
      if (after) path += "&after_seq=" + std::to_string(*after);
      auto r = ctx.get_json(path);
      if (!r.ok()) {
        *ctx.rc = Fail(r.error().message);
        return;
      }
      if (const Json* recs = r->FindArray("records")) {
        for (const Json& rec : recs->as_array()) {
          list.push_back(rec);
          records.Push(rec);
        }
      }
      const Json* next = r->Find("next_after_seq");
      if (next == nullptr || !next->is_int()) break;
      if (list.size() >= core::kAuditRunRecordsMax) {
        truncated = true;
        break;
      }
      after = next->as_int();
    }
    if (*ctx.json) {
      Json out = Json::MakeObject();
      out.Set("run", run);
      out.Set("records", std::move(records));
      out.Set("truncated", truncated);
      std::cout << out.Dump() << "\n";
      return;
    }
    std::cout << server::FormatReplayTimeline(run, list, truncated);
  });

  // export
  auto ef = std::make_shared<Filters>();
  auto* exp = audit->add_subcommand(
      "export",
      "write records as JSONL (as stored, verifiable) or as OpenTelemetry spans (OTLP/JSON)");
  exp->add_option("--format", ef->format, "jsonl (default) or otlp")
      ->check(CLI::IsMember({"jsonl", "otlp"}));
  AddFilterOptions(exp, ef.get(), true);
  exp->add_option("-o,--output", ef->output,
                  "write to FILE (created with mode 0600) instead of stdout");
  exp->callback([ef, ctx] {
    const Filters& f = *ef;
    auto out = Output::Open(f.output);
    if (!out.ok()) {
      *ctx.rc = Fail("audit export: " + out.error().message, kExitUsage);
      return;
    }
    size_t written = 0;
    if (f.format == "jsonl") {
      // Page by page through the query endpoint; each record back in its canonical form,
      // which is the stored line byte for byte (docs/formats/audit.md, "Records").
      std::string base = f.Query();
      if (base.empty()) base = "&since=0";  // every record (without a filter it would tail)
      std::optional<int64_t> after;
      while (true) {
        std::string path =
            "/admin/v1/audit?limit=" + std::to_string(core::kAdminAuditPageMax) + base;
        if (after) path += "&after_seq=" + std::to_string(*after);
        auto r = ctx.get_json(path);
        if (!r.ok()) {
          *ctx.rc = Fail("audit export: " + r.error().message);
          return;
        }
        std::string chunk;
        if (const Json* recs = r->FindArray("records")) {
          for (const Json& rec : recs->as_array()) {
            chunk += rec.Canonical();
            chunk.push_back('\n');
            ++written;
          }
        }
        if (!out->Write(chunk)) {
          *ctx.rc = Fail("audit export: cannot write the output");
          return;
        }
        const Json* next = r->Find("next_after_seq");
        if (next == nullptr || !next->is_int()) break;
        after = next->as_int();
      }
    } else {
      std::string path = "/admin/v1/audit/export?format=otlp" + f.Query();
      auto r = ctx.get_raw(path, core::kAuditExportResponseBytesMax);
      if (!r.ok()) {
        *ctx.rc = Fail("audit export: " + r.error().message);
        return;
      }
      if (r->status / 100 != 2) {
        auto parsed = Json::Parse(r->body);
        const Json* e = parsed.ok() ? parsed->FindObject("error") : nullptr;
        *ctx.rc =
            Fail("audit export: " + (e ? e->GetString("code") + ": " + e->GetString("message")
                                       : "admin API answered HTTP " + std::to_string(r->status)));
        return;
      }
      std::string body = std::move(r->body);
      if (!body.empty() && body.back() != '\n') body.push_back('\n');
      for (char c : body) written += c == '\n';
      // A failure midway ends the stream with an error line instead of a trace.
      const size_t start = body.size() < 2 ? 0 : body.rfind('\n', body.size() - 2);
      const std::string last_line =
          body.substr(start == std::string::npos || body.size() < 2 ? 0 : start + 1);
      if (last_line.rfind("{\"error\":", 0) == 0) {
        (void)out->Write(body);
        *ctx.rc = Fail("audit export: the export failed midway: " + last_line);
        return;
      }
      if (!out->Write(body)) {
        *ctx.rc = Fail("audit export: cannot write the output");
        return;
      }
    }
    if (!out->Close()) {
      *ctx.rc = Fail("audit export: cannot write the output");
      return;
    }
    if (!f.output.empty() && f.output != "-") {
      std::cerr << "mandate: wrote " << written << (f.format == "jsonl" ? " records" : " traces")
                << " to " << f.output << "\n";
    }
  });
}

}  // namespace mandate::cli
