#include "server/audit_indexer.h"

#include <chrono>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "mandate/core/limits.h"
#include "mandate/core/thread_name.h"

namespace mandate::server {
namespace {

// `s` cut to at most kAuditIndexFieldBytesMax bytes without splitting a UTF-8 character.
std::string Field(const std::string* s) {
  if (s == nullptr) return std::string();
  if (s->size() <= core::kAuditIndexFieldBytesMax) return *s;
  size_t n = core::kAuditIndexFieldBytesMax;
  while (n > 0 && (static_cast<unsigned char>((*s)[n]) & 0xC0) == 0x80) --n;
  return s->substr(0, n);
}

// The members AuditIndexRowFor reads: the indexer's scans build only these (and "seq"), not
// the arguments, results and policy checks that make up most of a record.
constexpr std::string_view kIndexedMembers[] = {"/ts",    "/type",  "/run",    "/sid",
                                                "/agent", "/human", "/action", "/decision/decision"};

}  // namespace

store::AuditIndexRow AuditIndexRowFor(const core::Json& record, uint64_t seq,
                                      const audit::RecordPosition& position) {
  store::AuditIndexRow r;
  r.seq = seq;
  r.ts = record.GetInt("ts", 0);
  r.type = Field(record.FindString("type"));
  r.run = Field(record.FindString("run"));
  r.sid = Field(record.FindString("sid"));
  r.agent = Field(record.FindString("agent"));
  r.human = Field(record.FindString("human"));
  r.action = Field(record.FindString("action"));
  if (const core::Json* d = record.FindObject("decision"))
    r.decision = Field(d->FindString("decision"));
  r.segment = position.segment;
  r.offset = position.offset;
  return r;
}

AuditIndexer::AuditIndexer(std::string audit_dir, store::Store* store, const core::Clock* clock,
                           std::function<void(const std::string&)> log)
    : dir_(std::move(audit_dir)), store_(store), clock_(clock), log_(std::move(log)) {}

AuditIndexer::~AuditIndexer() { Stop(); }

void AuditIndexer::Start() {
  std::lock_guard<std::mutex> lock(wake_mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] {
    core::NameThisThread("audit-index");
    Loop();
  });
}

void AuditIndexer::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AuditIndexer::Wake() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    wake_ = true;
  }
  wake_cv_.notify_all();
}

core::Status AuditIndexer::ResumeLocked() {
  MANDATE_ASSIGN_OR_RETURN(uint64_t upto, store_->AuditIndexedUpTo());
  cursor_ = audit::ScanCursor{};
  if (upto > 0) {
    store::AuditIndexFilter last;
    last.descending = true;
    last.limit = 1;
    MANDATE_ASSIGN_OR_RETURN(std::vector<store::AuditIndexRow> rows, store_->QueryAuditIndex(last));
    bool matches = false;
    if (!rows.empty()) {
      const store::AuditIndexRow& row = rows.front();
      const audit::RecordPosition at{row.segment, row.offset};
      auto line = audit::ReadRecordAt(dir_, at);
      if (line.ok()) {
        auto rec = core::Json::Parse(*line, core::kAuditRecordBytesMax);
        matches = rec.ok() && rec->GetInt("seq", -1) == static_cast<int64_t>(row.seq) &&
                  rec->GetInt("ts", -1) == row.ts;
        if (matches) {
          cursor_.next_seq = row.seq + 1;
          cursor_.at = audit::RecordPosition{row.segment, row.offset + line->size() + 1};
        }
      } else if (line.error().code != core::ErrorCode::kNotFound) {
        return line.error();
      }
    }
    if (!matches) {
      log_("audit index: the log does not hold the last indexed record (seq " +
           std::to_string(upto - 1) + "); rebuilding the index from the log");
      MANDATE_RETURN_IF_ERROR(store_->DeleteAuditIndexFrom(0));
      cursor_ = audit::ScanCursor{};
    }
  }
  indexed_up_to_.store(cursor_.next_seq);
  resumed_ = true;
  return core::OkStatus();
}

core::Status AuditIndexer::IndexBatchLocked(size_t yield_every, bool* at_end) {
  if (!resumed_) MANDATE_RETURN_IF_ERROR(ResumeLocked());
  std::vector<store::AuditIndexRow> rows;
  auto next = audit::ScanLog(dir_, cursor_, core::kAuditIndexBatchMax,
                             [&](const audit::ScannedRecord& r) -> core::Status {
                               rows.push_back(AuditIndexRowFor(*r.record, r.seq, r.position));
                               if (yield_every != 0 && rows.size() % yield_every == 0) {
                                 std::this_thread::yield();
                               }
                               return core::OkStatus();
                             },
                             kIndexedMembers);
  if (!next.ok()) {
    // No log directory yet: nothing to index.
    if (next.error().code == core::ErrorCode::kNotFound) {
      *at_end = true;
      return core::OkStatus();
    }
    return next.error();
  }
  if (!rows.empty()) {
    std::function<void()> pace;
    if (yield_every != 0) pace = [] { std::this_thread::yield(); };
    if (auto st = store_->IndexAuditRecords(rows, yield_every, pace); !st.ok()) {
      // Someone else indexed these (or the index moved): find our place again next time.
      resumed_ = false;
      return st;
    }
  }
  cursor_ = *next;
  indexed_up_to_.store(cursor_.next_seq);
  *at_end = rows.size() < core::kAuditIndexBatchMax;
  return core::OkStatus();
}

core::Result<bool> AuditIndexer::CatchUp(int64_t max_wait_millis) {
  const int64_t deadline = clock_->NowUnixMillis() + max_wait_millis;
  std::lock_guard<std::mutex> lock(pass_mu_);
  while (true) {
    bool at_end = false;
    MANDATE_RETURN_IF_ERROR(IndexBatchLocked(/*yield_every=*/0, &at_end));
    if (at_end) return true;
    if (clock_->NowUnixMillis() >= deadline) return false;
  }
}

void AuditIndexer::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(wake_mu_);
      wake_cv_.wait_for(lock, std::chrono::milliseconds(core::kAuditIndexIntervalMillis),
                        [&] { return stop_ || wake_; });
      if (stop_) return;
      wake_ = false;
    }
    // Batch by batch, releasing the pass lock in between so CatchUp callers interleave.
    while (true) {
      bool at_end = true;
      core::Status st;
      {
        std::lock_guard<std::mutex> lock(pass_mu_);
        st = IndexBatchLocked(core::kAuditIndexYieldEvery, &at_end);
        if (!st.ok()) {
          if (st.error().message != last_error_) {
            last_error_ = st.error().message;
            log_("audit index: cannot index new records: " + last_error_ +
                 " (queries miss them until this is fixed; retrying)");
          }
        } else if (!last_error_.empty()) {
          last_error_.clear();
          log_("audit index: indexing again");
        }
      }
      if (!st.ok() || at_end) break;
      std::lock_guard<std::mutex> lock(wake_mu_);
      if (stop_) return;
    }
  }
}

}  // namespace mandate::server
