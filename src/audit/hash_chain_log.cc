#include "mandate/audit/hash_chain_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/core/check.h"
#include "mandate/core/crypto.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;

core::Error ErrnoError(ErrorCode code, const std::string& what) {
  return MakeError(code, what + ": " + std::strerror(errno));
}

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

core::Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(ErrorCode::kInternal, "audit write failed");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return core::OkStatus();
}

core::Status SyncFd(int fd, const char* what) {
  if (::fdatasync(fd) != 0) return ErrnoError(ErrorCode::kInternal, std::string(what) + " failed");
  return core::OkStatus();
}

// A torn last line found by Open, reported in the "audit.truncated" record.
struct TornTail {
  std::string file;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  std::string sha256;
};

}  // namespace

// One Append waiting for the writer. Lives on the appending thread's stack; the writer only
// touches it while that thread waits for `result` (set under mu_).
// A Submit()ted record is `detached`: heap-allocated, owned and freed by the writer.
// Each waiting Append has its own condition variable, so a batch wakes exactly its own
// appenders rather than every thread waiting on the log (measured: ~7 context switches per
// call in the writer path with one shared condition variable).
struct HashChainLog::Pending {
  core::Json record;
  std::optional<core::Result<uint64_t>> result;
  bool detached = false;
  std::condition_variable done;
};

struct HashChainLog::Batch {
  std::vector<Pending*> pending;
  std::vector<std::string> lines;   // canonical records, without '\n'
  std::vector<std::string> hashes;  // hex SHA-256 of each line (the next record's prev)
};

HashChainLog::HashChainLog(std::string dir, const core::Clock& clock, Options options)
    : dir_(std::move(dir)), clock_(clock), options_(options), tip_(internal::kGenesisPrev) {}

core::Result<std::unique_ptr<HashChainLog>> HashChainLog::Open(const std::string& dir,
                                                               const core::Clock& clock) {
  return Open(dir, clock, Options{});
}

core::Result<std::unique_ptr<HashChainLog>> HashChainLog::Open(const std::string& dir,
                                                               const core::Clock& clock,
                                                               Options options) {
  if (dir.empty()) return MakeError(ErrorCode::kInternal, "audit directory is empty");
  if (options.segment_bytes_max == 0) {
    return MakeError(ErrorCode::kInternal, "audit segment_bytes_max must be positive");
  }
  std::unique_ptr<HashChainLog> log(new HashChainLog(dir, clock, options));

  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  if (ec) {
    return MakeError(ErrorCode::kInternal,
                     "cannot create audit directory " + dir + ": " + ec.message());
  }
  log->dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (log->dir_fd_ < 0) {
    return ErrnoError(ErrorCode::kInternal, "cannot open audit directory " + dir);
  }
  // One writer per log, across processes: two would interleave and fork the chain.
  log->lock_fd_ = ::openat(log->dir_fd_, std::string(internal::kLockFileName).c_str(),
                           O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (log->lock_fd_ < 0) return ErrnoError(ErrorCode::kInternal, "cannot create audit lock file");
  if (::flock(log->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return MakeError(ErrorCode::kConflict, "audit log " + dir + " is open in another writer");
    }
    return ErrnoError(ErrorCode::kInternal, "cannot lock audit log " + dir);
  }

  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  std::optional<TornTail> torn;
  if (segments.empty()) {
    log->segment_number_ = 1;
  } else {
    // Find the chain tip: the last complete line of the last segment holding one. Only the
    // final segment may end in a torn line (segments roll only after a sync).
    log->segment_number_ = segments.back().number;
    bool found_tip = false;
    for (size_t i = segments.size(); i-- > 0 && !found_tip;) {
      const internal::Segment& seg = segments[i];
      int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot open " + seg.path);
      // Segment 1 is anchored at the genesis; later ones continue from a chain we do not
      // re-read here (VerifyLog checks across segments).
      internal::ChainChecker checker =
          seg.number == 1 ? internal::ChainChecker(0, std::string(internal::kGenesisPrev))
                          : internal::ChainChecker();
      internal::LineReader reader(fd, core::kAuditRecordBytesMax);
      internal::LineReader::Line line;
      size_t line_no = 0;
      while (true) {
        auto more = reader.Next(&line);
        if (!more.ok()) {
          ::close(fd);
          return std::move(more).error();
        }
        if (!*more) break;
        ++line_no;
        if (!line.terminated) {
          if (i + 1 != segments.size()) {
            ::close(fd);
            return MakeError(ErrorCode::kInternal, "audit log is damaged: " + seg.name +
                                                       " ends in a truncated line; run "
                                                       "`mandate audit verify`");
          }
          // A crash tears at most the one record being written when it struck; a longer
          // unterminated tail is not a torn write, and is left for an operator to examine.
          if (line.overlong) {
            ::close(fd);
            return MakeError(ErrorCode::kInternal,
                             "audit log is damaged: " + seg.name +
                                 " ends in an unterminated line longer than a record; run "
                                 "`mandate audit verify`");
          }
          TornTail t;
          t.file = seg.name;
          t.offset = line.offset;
          t.bytes = line.bytes.size();
          t.sha256 = core::Sha256Hex(line.bytes);
          torn = std::move(t);
          break;
        }
        std::optional<std::string> problem =
            line.overlong ? std::optional<std::string>("line exceeds kAuditRecordBytesMax")
                          : checker.Check(line.bytes);
        if (problem) {
          ::close(fd);
          return MakeError(ErrorCode::kInternal, "audit log is damaged at " + seg.name + " line " +
                                                     std::to_string(line_no) + ": " + *problem +
                                                     "; run `mandate audit verify`");
        }
      }
      ::close(fd);
      if (checker.accepted() > 0) {
        found_tip = true;
        log->next_seq_ = *checker.expected_seq();
        log->tip_ = *checker.tip();
      } else if (seg.number == 1) {
        found_tip = true;  // an empty log
      }
    }
    if (!found_tip) {
      return MakeError(ErrorCode::kInternal,
                       "audit log is damaged: no record found in any segment, but segment 1 "
                       "is missing; run `mandate audit verify`");
    }
  }

  // Open (or create) the last segment for appending.
  std::string name = internal::SegmentName(log->segment_number_);
  log->segment_fd_ =
      ::openat(log->dir_fd_, name.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log->segment_fd_ < 0)
    return ErrnoError(ErrorCode::kInternal, "cannot open " + dir + "/" + name);
  if (segments.empty()) MANDATE_RETURN_IF_ERROR(SyncFd(log->dir_fd_, "audit directory sync"));
  if (torn) {
    if (::ftruncate(log->segment_fd_, static_cast<off_t>(torn->offset)) != 0) {
      return ErrnoError(ErrorCode::kInternal, "cannot truncate the torn tail of " + name);
    }
    MANDATE_RETURN_IF_ERROR(SyncFd(log->segment_fd_, "audit sync after truncation"));
  }
  struct stat st {};
  if (::fstat(log->segment_fd_, &st) != 0)
    return ErrnoError(ErrorCode::kInternal, "cannot stat " + name);
  log->segment_bytes_ = static_cast<uint64_t>(st.st_size);

  log->writer_ = std::thread([raw = log.get()] { raw->WriterLoop(); });

  if (torn) {
    core::Json note = core::Json::MakeObject();
    note.Set("type", "audit.truncated");
    note.Set("reason", "torn last line (crash during a write) removed on open");
    note.Set("file", torn->file);
    note.Set("offset", static_cast<int64_t>(torn->offset));
    note.Set("dropped_bytes", static_cast<int64_t>(torn->bytes));
    note.Set("dropped_sha256", torn->sha256);
    MANDATE_RETURN_IF_ERROR(log->Append(std::move(note)));
  }
  return log;
}

HashChainLog::~HashChainLog() { Close(); }

void HashChainLog::Close() {
  std::call_once(close_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
    if (writer_.joinable()) writer_.join();
    CloseFd(&segment_fd_);
    CloseFd(&dir_fd_);
    CloseFd(&lock_fd_);  // releases the flock
  });
}

uint64_t HashChainLog::SyncCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

core::Status HashChainLog::Validate(const core::Json& record) const {
  if (!record.is_object()) {
    return MakeError(ErrorCode::kBadRequest, "an audit record must be a JSON object");
  }
  for (const char* reserved : {"seq", "ts", "prev", "hash"}) {
    if (record.Find(reserved) != nullptr) {
      return MakeError(ErrorCode::kBadRequest, std::string("an audit record must not set \"") +
                                                   reserved + "\": the log assigns it");
    }
  }
  // Done here, on the caller's thread, so the single writer only orders and hashes.
  std::string canonical = record.Canonical();
  if (canonical.size() + core::kAuditFramingBytesMax > core::kAuditRecordBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "audit record of " + std::to_string(canonical.size()) +
                         " bytes exceeds the limit of " +
                         std::to_string(core::kAuditRecordBytesMax - core::kAuditFramingBytesMax));
  }
  // Whatever is written must read back to the same bytes, or VerifyLog would call the log
  // tampered. CheckSerializable checks what the verifier's parser would refuse (UTF-8, depth,
  // duplicate keys) without re-parsing: the re-parse was ~10% of a governed call's CPU.
  if (auto st = record.CheckSerializable(); !st.ok()) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit record cannot be stored verifiably: " + st.error().message);
  }
  return core::OkStatus();
}

core::Status HashChainLog::Enqueue(Pending* p, std::unique_lock<std::mutex>& lock) {
  not_full_.wait(lock, [&] { return closing_ || failed_ || queue_.size() < core::kAuditQueueMax; });
  if (failed_) return MakeError(ErrorCode::kInternal, "audit log failed earlier: " + failure_);
  if (closing_) return MakeError(ErrorCode::kInternal, "audit log is closed");
  queue_.push_back(p);
  not_empty_.notify_one();
  return core::OkStatus();
}

core::Result<uint64_t> HashChainLog::Append(core::Json record) {
  MANDATE_RETURN_IF_ERROR(Validate(record));
  Pending p{std::move(record), std::nullopt, false, {}};
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_RETURN_IF_ERROR(Enqueue(&p, lock));
  p.done.wait(lock, [&] { return p.result.has_value(); });
  return std::move(*p.result);
}

core::Status HashChainLog::Submit(core::Json record) {
  MANDATE_RETURN_IF_ERROR(Validate(record));
  auto p = std::make_unique<Pending>();
  p->record = std::move(record);
  p->detached = true;
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_RETURN_IF_ERROR(Enqueue(p.get(), lock));
  p.release();  // the writer owns it now
  return core::OkStatus();
}

void HashChainLog::WriterLoop() {
  while (true) {
    Batch batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      not_empty_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and drained
      batch.pending.assign(queue_.begin(), queue_.end());
      queue_.clear();
      if (failed_) {
        for (Pending* p : batch.pending) {
          if (p->detached) {
            delete p;
            continue;
          }
          p->result = MakeError(ErrorCode::kInternal, "audit log failed earlier: " + failure_);
          p->done.notify_one();
        }
        not_full_.notify_all();
        continue;
      }
    }
    not_full_.notify_all();

    // Sequence, timestamp and chain the batch. Invariant: lines[i] has seq next_seq_ + i.
    std::string prev = tip_;
    batch.lines.reserve(batch.pending.size());
    batch.hashes.reserve(batch.pending.size());
    for (size_t i = 0; i < batch.pending.size(); ++i) {
      core::Json& r = batch.pending[i]->record;
      r.Set("seq", static_cast<int64_t>(next_seq_ + i));
      r.Set("ts", clock_.NowUnixMicros());
      r.Set("prev", prev);
      std::string hash = core::Sha256Hex(r.Canonical());  // over everything but "hash"
      r.Set("hash", std::move(hash));
      std::string line = r.Canonical();
      // Append() bounded the record so that the framing always fits.
      MANDATE_CHECK(line.size() <= core::kAuditRecordBytesMax);
      prev = core::Sha256Hex(line);
      batch.lines.push_back(std::move(line));
      batch.hashes.push_back(prev);
    }

    size_t durable = 0;
    core::Status st = WriteBatch(batch, &durable);
    if (durable > 0) {
      next_seq_ += durable;
      tip_ = batch.hashes[durable - 1];
    }

    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < batch.pending.size(); ++i) {
      Pending* p = batch.pending[i];
      if (p->detached) {
        delete p;
        continue;
      }
      if (i < durable) {
        p->result = static_cast<uint64_t>(p->record.GetInt("seq", -1));
      } else {
        p->result = MakeError(ErrorCode::kInternal, "audit append failed: " + st.error().message);
      }
      p->done.notify_one();
    }
    if (!st.ok() && !failed_) {
      failed_ = true;
      failure_ = st.error().message;
    }
    not_full_.notify_all();
  }
}

core::Status HashChainLog::WriteBatch(const Batch& batch, size_t* durable) {
  *durable = 0;
  std::string buffer;
  size_t buffered = 0;  // lines in `buffer`
  uint64_t synced_bytes = segment_bytes_;
  auto fail = [&](core::Status st) {
    // Best effort: drop the bytes of records that were not made durable, so a later reopen
    // does not resurrect records whose Append reported failure. The log stays failed anyway.
    if (segment_fd_ >= 0 && ::ftruncate(segment_fd_, static_cast<off_t>(synced_bytes)) == 0) {
      segment_bytes_ = synced_bytes;
    }
    return st;
  };
  for (size_t i = 0; i < batch.lines.size(); ++i) {
    const std::string& line = batch.lines[i];
    uint64_t pending_bytes = segment_bytes_ + buffer.size();
    if (pending_bytes > 0 && pending_bytes + line.size() + 1 > options_.segment_bytes_max) {
      if (!buffer.empty()) {
        core::Status st = FlushAndSync(&buffer);
        if (!st.ok()) return fail(std::move(st));
        *durable += buffered;
        buffered = 0;
        synced_bytes = segment_bytes_;
      }
      if (segment_bytes_ > 0) {
        core::Status st = RollSegment();
        if (!st.ok()) return fail(std::move(st));
        synced_bytes = 0;
      }
    }
    buffer.append(line);
    buffer.push_back('\n');
    ++buffered;
  }
  if (!buffer.empty()) {
    core::Status st = FlushAndSync(&buffer);
    if (!st.ok()) return fail(std::move(st));
    *durable += buffered;
  }
  return core::OkStatus();
}

core::Status HashChainLog::FlushAndSync(std::string* buffer) {
  MANDATE_RETURN_IF_ERROR(WriteAll(segment_fd_, *buffer));
  segment_bytes_ += buffer->size();
  buffer->clear();
  MANDATE_RETURN_IF_ERROR(SyncFd(segment_fd_, "audit fdatasync"));
  std::lock_guard<std::mutex> lock(mu_);
  ++syncs_;
  return core::OkStatus();
}

core::Status HashChainLog::RollSegment() {
  std::string name = internal::SegmentName(segment_number_ + 1);
  int fd =
      ::openat(dir_fd_, name.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot create audit segment " + name);
  // The new name must be durable before records in it are reported durable.
  if (::fsync(dir_fd_) != 0) {
    ::close(fd);
    return ErrnoError(ErrorCode::kInternal, "audit directory sync failed");
  }
  CloseFd(&segment_fd_);
  segment_fd_ = fd;
  ++segment_number_;
  segment_bytes_ = 0;
  return core::OkStatus();
}

core::Result<std::unique_ptr<AuditLog>> OpenAuditLog(const std::string& dir,
                                                     const core::Clock& clock) {
  MANDATE_ASSIGN_OR_RETURN(std::unique_ptr<HashChainLog> log, HashChainLog::Open(dir, clock));
  return std::unique_ptr<AuditLog>(std::move(log));
}

}  // namespace mandate::audit
