// The audit endpoints of the admin API: GET /admin/v1/audit (tail and query),
// /admin/v1/audit/replay and /admin/v1/audit/export (docs/formats/audit.md, "Query, replay
// and export"). The rest of AdminApi is in admin_api.cc.
#include <algorithm>
#include <set>

#include "mandate/audit/audit_log.h"
#include "mandate/audit/reader.h"
#include "mandate/core/limits.h"
#include "server/admin_api.h"
#include "server/audit_export.h"
#include "server/audit_query.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;

constexpr size_t kExportChunkBytes = 64 * 1024;
constexpr size_t kTailDefault = 20;
constexpr size_t kQueryDefault = 100;

std::string_view QueryString(const net::HttpRequest& req) {
  const auto q = req.target.find('?');
  return q == std::string::npos ? std::string_view() : std::string_view(req.target).substr(q + 1);
}

Json NextAfterSeq(const std::optional<uint64_t>& next) {
  return next ? Json(static_cast<int64_t>(*next)) : Json();
}

// A sink that keeps what is streamed, for Handle (which answers in one piece).
class BufferSink final : public net::ResponseSink {
 public:
  bool Send(net::HttpResponse r) override {
    response_ = std::move(r);
    return true;
  }
  bool StartStream(int status, net::Headers headers) override {
    response_.status = status;
    response_.headers = std::move(headers);
    return true;
  }
  bool Write(std::string chunk) override {
    response_.body += chunk;
    return true;
  }
  void End() override {}
  net::HttpResponse Take() { return std::move(response_); }

 private:
  net::HttpResponse response_;
};

// Writes lines to a streamed answer in chunks of about kExportChunkBytes.
class ChunkWriter {
 public:
  explicit ChunkWriter(const std::shared_ptr<net::ResponseSink>& sink) : sink_(sink) {}
  // False once the client is gone.
  bool Line(std::string_view line) {
    buf_.append(line);
    buf_.push_back('\n');
    return buf_.size() < kExportChunkBytes || Flush();
  }
  bool Flush() {
    if (buf_.empty()) return ok_;
    ok_ = ok_ && sink_->Write(std::move(buf_));
    buf_.clear();
    return ok_;
  }

 private:
  const std::shared_ptr<net::ResponseSink>& sink_;
  std::string buf_;
  bool ok_ = true;
};

// The error line that ends an export that failed midway (the status line was already sent).
std::string ErrorLine(const core::Error& e) {
  Json err = Json::MakeObject();
  err.Set("code", std::string(core::PublicCode(e.code)));
  err.Set("message", e.message);
  Json j = Json::MakeObject();
  j.Set("error", std::move(err));
  return j.Dump();
}

}  // namespace

void AdminApi::Serve(const net::HttpRequest& req, const std::shared_ptr<net::ResponseSink>& sink) {
  if (req.method == "GET" && req.path == "/admin/v1/audit/export" && Authorized(req)) {
    ExportAudit(req, sink);
    return;
  }
  sink->Send(Handle(req));
}

net::HttpResponse AdminApi::BufferedExport(const net::HttpRequest& req) {
  auto sink = std::make_shared<BufferSink>();
  std::shared_ptr<net::ResponseSink> as_sink = sink;
  ExportAudit(req, as_sink);
  return sink->Take();
}

net::HttpResponse AdminApi::GetAudit(const net::HttpRequest& req) {
  const int64_t now = ctx_.clock->NowUnixMicros();
  auto q = ParseAuditQuery(
      QueryString(req),
      {"limit", "run", "sid", "agent", "human", "action", "type", "since", "until", "after_seq"},
      core::kAdminAuditPageMax, now);
  if (!q.ok()) return net::HttpResponse::Error(q.error());
  Json out = Json::MakeObject();
  if (!q->filtered) {
    // No filter: the newest `limit` records, oldest first, straight from the files.
    auto lines = audit::TailLog(ctx_.config->audit_dir, q->limit.value_or(kTailDefault));
    if (!lines.ok()) return net::HttpResponse::Error(lines.error());
    Json arr = Json::MakeArray();
    for (const auto& l : *lines) {
      auto rec = Json::Parse(l, core::kAuditRecordBytesMax);
      arr.Push(rec.ok() ? std::move(rec).value() : Json(l));
    }
    out.Set("records", std::move(arr));
    out.Set("next_after_seq", Json());
    return net::HttpResponse::Json(200, out.Dump());
  }
  if (ctx_.audit_index == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "the audit index is not available");
  auto caught_up = ctx_.audit_index->CatchUp(core::kAuditIndexCatchUpMillisMax);
  if (!caught_up.ok()) return net::HttpResponse::Error(caught_up.error());
  audit::RecordReader reader(ctx_.config->audit_dir);
  auto page = ReadAuditPage(*ctx_.store, reader, q->filter, q->limit.value_or(kQueryDefault),
                            core::kAdminAuditPageBytesMax);
  if (!page.ok()) return net::HttpResponse::Error(page.error());
  Json arr = Json::MakeArray();
  for (auto& r : page->records) arr.Push(std::move(r));
  out.Set("records", std::move(arr));
  out.Set("next_after_seq", NextAfterSeq(page->next_after_seq));
  if (!*caught_up) out.Set("index_behind", true);
  return net::HttpResponse::Json(200, out.Dump());
}

net::HttpResponse AdminApi::GetAuditReplay(const net::HttpRequest& req) {
  auto q = ParseAuditQuery(QueryString(req), {"run", "after_seq", "limit"},
                           core::kAdminAuditPageMax, ctx_.clock->NowUnixMicros());
  if (!q.ok()) return net::HttpResponse::Error(q.error());
  const std::string run = q->filter.run;
  if (run.empty())
    return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                    "run is required (the root session id)");
  if (ctx_.audit_index == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "the audit index is not available");
  auto caught_up = ctx_.audit_index->CatchUp(core::kAuditIndexCatchUpMillisMax);
  if (!caught_up.ok()) return net::HttpResponse::Error(caught_up.error());
  audit::RecordReader reader(ctx_.config->audit_dir);
  auto page =
      ReadAuditPage(*ctx_.store, reader, q->filter, q->limit.value_or(core::kAdminAuditPageMax),
                    core::kAdminAuditPageBytesMax);
  if (!page.ok()) return net::HttpResponse::Error(page.error());
  if (page->records.empty() && !q->filter.after_seq) {
    return net::HttpResponse::Error(ErrorCode::kNotFound,
                                    "no audit records for run \"" + run + "\"");
  }
  // Revocations of the run's agents, humans or task name no run: merged in, in seq order,
  // with the page they fall in.
  auto related =
      RelatedRevocations(*ctx_.store, reader, run, q->filter.after_seq, page->next_after_seq);
  if (!related.ok()) return net::HttpResponse::Error(related.error());
  std::vector<Json> records = std::move(page->records);
  for (auto& r : *related) records.push_back(std::move(r));
  std::stable_sort(records.begin(), records.end(), [](const Json& a, const Json& b) {
    return a.GetInt("seq", 0) < b.GetInt("seq", 0);
  });
  Json arr = Json::MakeArray();
  for (auto& r : records) arr.Push(std::move(r));
  Json out = Json::MakeObject();
  out.Set("run", run);
  out.Set("records", std::move(arr));
  out.Set("next_after_seq", NextAfterSeq(page->next_after_seq));
  if (!*caught_up) out.Set("index_behind", true);
  return net::HttpResponse::Json(200, out.Dump());
}

void AdminApi::ExportAudit(const net::HttpRequest& req,
                           const std::shared_ptr<net::ResponseSink>& sink) {
  auto q = ParseAuditQuery(
      QueryString(req),
      {"format", "run", "sid", "agent", "human", "action", "type", "since", "until", "after_seq"},
      core::kAdminAuditPageMax, ctx_.clock->NowUnixMicros());
  if (!q.ok()) {
    sink->Send(net::HttpResponse::Error(q.error()));
    return;
  }
  if (ctx_.audit_index == nullptr) {
    sink->Send(net::HttpResponse::Error(ErrorCode::kNotFound, "the audit index is not available"));
    return;
  }
  if (auto caught_up = ctx_.audit_index->CatchUp(core::kAuditIndexCatchUpMillisMax);
      !caught_up.ok()) {
    sink->Send(net::HttpResponse::Error(caught_up.error()));
    return;
  }
  audit::RecordReader reader(ctx_.config->audit_dir);
  store::Store& store = *ctx_.store;
  const std::string format = q->format.empty() ? "jsonl" : q->format;
  const net::Headers ndjson = {{"Content-Type", "application/x-ndjson"},
                               {"Cache-Control", "no-store"}};

  if (format == "jsonl") {
    // Every matching record as stored, byte for byte (so each line still checks against the
    // log's Merkle tree), in seq order.
    if (!sink->StartStream(200, ndjson)) return;
    ChunkWriter out(sink);
    store::AuditIndexFilter filter = q->filter;
    while (true) {
      auto page = ReadAuditPage(store, reader, filter, core::kAdminAuditPageMax,
                                core::kAdminAuditPageBytesMax);
      if (!page.ok()) {
        out.Line(ErrorLine(page.error()));
        break;
      }
      bool client_gone = false;
      for (const std::string& line : page->lines) {
        if (!out.Line(line)) {
          client_gone = true;
          break;
        }
      }
      if (client_gone || !page->next_after_seq) break;
      filter.after_seq = page->next_after_seq;
    }
    out.Flush();
    sink->End();
    return;
  }

  // OTLP: the runs that have a record matching the filters, each whole, one trace each.
  std::vector<std::string> runs;
  const bool only_run = !q->filter.run.empty() && q->filter.sid.empty() &&
                        q->filter.agent.empty() && q->filter.human.empty() &&
                        q->filter.action.empty() && q->filter.type.empty() && !q->filter.since_us &&
                        !q->filter.until_us && !q->filter.after_seq;
  {
    std::set<std::string> seen;
    store::AuditIndexFilter f = q->filter;
    f.limit = only_run ? 1 : core::kAuditIndexQueryRowsMax;
    while (true) {
      auto rows = store.QueryAuditIndex(f);
      if (!rows.ok()) {
        sink->Send(net::HttpResponse::Error(rows.error()));
        return;
      }
      for (const auto& row : *rows) {
        if (row.run.empty() || seen.count(row.run)) continue;
        if (runs.size() >= core::kAuditExportRunsMax) {
          sink->Send(net::HttpResponse::Error(
              ErrorCode::kPayloadTooLarge,
              "more than " + std::to_string(core::kAuditExportRunsMax) +
                  " runs match: narrow the export with since/until or run"));
          return;
        }
        seen.insert(row.run);
        runs.push_back(row.run);
      }
      if (only_run || rows->size() < f.limit || rows->empty()) break;
      f.after_seq = rows->back().seq;
    }
  }
  auto run_trace = [&](const std::string& run) -> core::Result<Json> {
    OtlpTraceBuilder builder;
    store::AuditIndexFilter f;
    f.run = run;
    size_t read = 0;
    while (true) {
      MANDATE_ASSIGN_OR_RETURN(
          AuditPage page,
          ReadAuditPage(store, reader, f, core::kAdminAuditPageMax, core::kAdminAuditPageBytesMax));
      for (const Json& r : page.records) builder.Add(r);
      read += page.records.size();
      if (!page.next_after_seq) break;
      if (read >= core::kAuditRunRecordsMax) {
        builder.MarkTruncated();
        break;
      }
      f.after_seq = page.next_after_seq;
    }
    return builder.Build();
  };
  if (!q->filter.run.empty()) {
    // One run: one ExportTraceServiceRequest, the body a collector's /v1/traces accepts.
    if (runs.empty()) {
      sink->Send(net::HttpResponse::Error(
          ErrorCode::kNotFound, "no audit records match for run \"" + q->filter.run + "\""));
      return;
    }
    auto trace = run_trace(runs.front());
    if (!trace.ok()) {
      sink->Send(net::HttpResponse::Error(trace.error()));
      return;
    }
    auto r = net::HttpResponse::Json(200, trace->Dump());
    r.headers.emplace_back("Cache-Control", "no-store");
    sink->Send(std::move(r));
    return;
  }
  // Several runs: JSON lines, one ExportTraceServiceRequest per run (the OpenTelemetry
  // Collector's otlpjsonfile format).
  if (!sink->StartStream(200, ndjson)) return;
  ChunkWriter out(sink);
  for (const std::string& run : runs) {
    auto trace = run_trace(run);
    if (!trace.ok()) {
      out.Line(ErrorLine(trace.error()));
      break;
    }
    if (!out.Line(trace->Dump())) break;
  }
  out.Flush();
  sink->End();
}

}  // namespace mandate::server
