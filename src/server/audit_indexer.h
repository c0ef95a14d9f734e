// The audit index keeper: a background thread that reads new records from the audit log's
// files and adds them to the store's audit index (store::AuditIndexRow), so the admin API can
// find records by run, session, agent, human, action, type and time without reading the log
// (docs/formats/audit.md, "Query, replay and export").
//
// It is off the call path: the gateway appends to the log and never waits for the index. The
// thread indexes whatever is complete in the files every kAuditIndexIntervalMillis (or when
// woken), in transactions of at most kAuditIndexBatchMax records, yielding the CPU every
// kAuditIndexYieldEvery records so that the calls it shares the CPUs with never wait long
// behind it. CatchUp() does the same synchronously, without yielding, so a query sees every
// record that was in the files when it arrived.
//
// The index is derived data. At the first pass the last indexed row is checked against the
// log (same seq and ts at the stored position); if the log no longer holds it (the log was
// replaced or restored, or the machine lost records that were never synced), the index is
// dropped and rebuilt from the log's first record.
//
// Thread safety: every method may be called from any thread; indexing passes are serialized.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "mandate/audit/reader.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/store/store.h"

namespace mandate::server {

// The index row of one record: the string members type, run, sid, agent, human and action
// (empty when absent or not a string), decision.decision, cut to kAuditIndexFieldBytesMax
// at a UTF-8 character boundary.
store::AuditIndexRow AuditIndexRowFor(const core::Json& record, uint64_t seq,
                                      const audit::RecordPosition& position);

class AuditIndexer {
 public:
  // `store` and `clock` are not owned and must outlive the indexer; `log` gets one line when
  // indexing starts failing (and when it recovers) and when the index is rebuilt.
  AuditIndexer(std::string audit_dir, store::Store* store, const core::Clock* clock,
               std::function<void(const std::string&)> log);
  ~AuditIndexer();
  AuditIndexer(const AuditIndexer&) = delete;
  AuditIndexer& operator=(const AuditIndexer&) = delete;

  // Starts the background thread. Idempotent.
  void Start();
  // Stops it (waits for the pass in progress). Idempotent; the destructor calls it.
  void Stop();
  // Makes the background thread look for new records now.
  void Wake();

  // Indexes every record complete in the files now, for at most `max_wait_millis` (a
  // rebuild of a large log can take longer; the background thread carries on). Returns
  // whether the index reached the end of the log.
  // Errors: the reader's (kInternal: a damaged log) and the store's.
  core::Result<bool> CatchUp(int64_t max_wait_millis);

  // The next seq to index (what the index covers: every seq below it).
  uint64_t indexed_up_to() const { return indexed_up_to_.load(); }

 private:
  // One batch of at most kAuditIndexBatchMax records, in one transaction; sets *at_end when
  // the log had no more complete records. With `yield_every` > 0 it yields the CPU after
  // every that many records read and written. Needs pass_mu_.
  core::Status IndexBatchLocked(size_t yield_every, bool* at_end);
  // Positions the cursor after the last indexed row, or rebuilds. Needs pass_mu_.
  core::Status ResumeLocked();
  void Loop();

  const std::string dir_;
  store::Store* store_;
  const core::Clock* clock_;
  std::function<void(const std::string&)> log_;

  std::mutex pass_mu_;  // one indexing pass at a time; guards the members below
  bool resumed_ = false;
  audit::ScanCursor cursor_;
  std::string last_error_;  // logged once until it changes or clears
  std::atomic<uint64_t> indexed_up_to_{0};

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool wake_ = false;  // guarded by wake_mu_
  bool stop_ = false;  // guarded by wake_mu_
  std::thread thread_;
};

}  // namespace mandate::server
