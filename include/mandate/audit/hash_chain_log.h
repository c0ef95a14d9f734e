// HashChainLog: the first AuditLog implementation. Records are canonical JSON lines in
// segment files <dir>/audit-NNNNNN.jsonl, each carrying the SHA-256 of the previous line
// ("prev") and of itself without "hash" ("hash"). Format: docs/formats/audit.md.
//
// Durability: one writer thread takes every queued append, writes the batch with one
// write() per segment touched and makes it durable with one fdatasync() (group commit)
// before any of those Appends return.
//
// Crash recovery: Open finds the last record and its hash. A torn last line (bytes after the
// final newline, left by a crash mid-write) is truncated away and an "audit.truncated"
// record naming the dropped bytes is appended. Any other damage makes Open fail: the log is
// evidence and is never repaired silently.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mandate/audit/audit_log.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::audit {

class HashChainLog final : public AuditLog {
 public:
  struct Options {
    // A segment rolls before a record would take it past this size. Tests make it small.
    size_t segment_bytes_max = core::kAuditSegmentBytesMax;
  };

  // Opens the log in `dir`, creating the directory (mode 0700) and the first segment (mode
  // 0600) if needed, and takes an exclusive lock on <dir>/audit.lock for the log's lifetime.
  // `clock` must outlive the log.
  // Errors: kInternal when the directory or a file cannot be created, opened, read, locked
  // or synced, or when the existing log is damaged anywhere but in its torn last line (run
  // VerifyLog to locate it); kConflict when another HashChainLog (in any process) holds it.
  static core::Result<std::unique_ptr<HashChainLog>> Open(const std::string& dir,
                                                          const core::Clock& clock);
  static core::Result<std::unique_ptr<HashChainLog>> Open(const std::string& dir,
                                                          const core::Clock& clock,
                                                          Options options);

  ~HashChainLog() override;
  HashChainLog(const HashChainLog&) = delete;
  HashChainLog& operator=(const HashChainLog&) = delete;

  core::Result<uint64_t> Append(core::Json record) override;
  core::Status Submit(core::Json record) override;
  void Close() override;

  // How many fdatasync() calls committed batches so far (observability and tests: fewer
  // syncs than appends means group commit is batching).
  uint64_t SyncCount() const;

 private:
  struct Pending;
  struct Batch;

  HashChainLog(std::string dir, const core::Clock& clock, Options options);
  void WriterLoop();
  // Checks that a record can be stored verifiably; the validation errors of Append.
  core::Status Validate(const core::Json& record) const;
  // Queues `p` (owned by the caller unless p->detached). Errors: log failed or closed.
  core::Status Enqueue(Pending* p, std::unique_lock<std::mutex>& lock);
  // Writes the batch's lines; sets how many of them are durable. Writer thread only.
  core::Status WriteBatch(const Batch& batch, size_t* durable);
  core::Status FlushAndSync(std::string* buffer);
  core::Status RollSegment();

  const std::string dir_;
  const core::Clock& clock_;
  const Options options_;

  // Files. Owned by Open until the writer starts, then by the writer thread alone.
  int dir_fd_ = -1;
  int lock_fd_ = -1;
  int segment_fd_ = -1;
  uint64_t segment_number_ = 0;
  uint64_t segment_bytes_ = 0;
  // Invariant: next_seq_ is the seq of the next record and tip_ the hex SHA-256 of the last
  // durable line (64 zeros before the first record). Writer thread only.
  uint64_t next_seq_ = 0;
  std::string tip_;

  mutable std::mutex mu_;
  std::condition_variable not_empty_;  // writer waits for work
  std::condition_variable not_full_;   // appenders wait for queue room
  std::deque<Pending*> queue_;         // bounded by kAuditQueueMax
  bool closing_ = false;               // guarded by mu_
  bool failed_ = false;                // guarded by mu_; sticky after an I/O failure
  std::string failure_;                // guarded by mu_
  uint64_t syncs_ = 0;                 // guarded by mu_
  std::thread writer_;
  std::once_flag close_once_;
};

}  // namespace mandate::audit
