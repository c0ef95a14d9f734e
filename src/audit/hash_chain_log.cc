#include "mandate/audit/hash_chain_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
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

// An Append waiting for its record to become durable (or for the lead). Lives on the
// appending thread's stack, registered in waiters_ while it waits. Each waiter has its own
// condition variable, so a finished batch wakes exactly its own appenders and one next leader
// rather than every thread waiting on the log.
struct HashChainLog::Waiter {
  uint64_t seq = 0;
  std::condition_variable cv;
};

// A record's own members rendered canonically, each followed by ',', and where each member
// the log adds goes to keep the keys sorted (byte offsets into `members`).
struct HashChainLog::Prepared {
  std::string members;
  size_t at_hash = 0, at_prev = 0, at_seq = 0, at_ts = 0;
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

  log->synced_bytes_ = log->segment_bytes_;
  log->written_ = log->durable_ = log->next_seq_;  // counts are seqs: the log may not start empty
  log->flusher_ = std::thread([raw = log.get()] { raw->FlusherLoop(); });

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
    flusher_cv_.notify_all();
    not_full_.notify_all();
    // The flusher writes and syncs whatever is still queued, then exits.
    if (flusher_.joinable()) flusher_.join();
    CloseFd(&segment_fd_);
    CloseFd(&dir_fd_);
    CloseFd(&lock_fd_);  // releases the flock
  });
}

uint64_t HashChainLog::SyncCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

core::Result<HashChainLog::Prepared> HashChainLog::Prepare(const core::Json& record) const {
  if (!record.is_object()) {
    return MakeError(ErrorCode::kBadRequest, "an audit record must be a JSON object");
  }
  for (const char* reserved : {"seq", "ts", "prev", "hash"}) {
    if (record.Find(reserved) != nullptr) {
      return MakeError(ErrorCode::kBadRequest, std::string("an audit record must not set \"") +
                                                   reserved + "\": the log assigns it");
    }
  }
  // Whatever is written must read back to the same bytes, or VerifyLog would call the log
  // tampered. CheckSerializable checks what the verifier's parser would refuse (UTF-8, depth,
  // duplicate keys) without re-parsing: the re-parse was ~10% of a governed call's CPU.
  if (auto st = record.CheckSerializable(); !st.ok()) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit record cannot be stored verifiably: " + st.error().message);
  }
  // The record's one serialization, done on the caller's thread: the members in canonical
  // (byte-sorted) order. Sequence() splices in the members the log adds.
  const core::Json::Object& obj = record.as_object();
  std::vector<const core::Json::Member*> sorted;
  sorted.reserve(obj.size());
  for (const auto& m : obj) sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(),
            [](const core::Json::Member* a, const core::Json::Member* b) { return a->first < b->first; });
  Prepared p;
  size_t* const slots[] = {&p.at_hash, &p.at_prev, &p.at_seq, &p.at_ts};
  const std::string_view names[] = {"hash", "prev", "seq", "ts"};  // sorted
  size_t next_slot = 0;
  for (const core::Json::Member* m : sorted) {
    while (next_slot < 4 && names[next_slot] < std::string_view(m->first)) {
      *slots[next_slot++] = p.members.size();
    }
    core::AppendJsonString(m->first, &p.members);
    p.members.push_back(':');
    m->second.CanonicalTo(&p.members);
    p.members.push_back(',');
  }
  while (next_slot < 4) *slots[next_slot++] = p.members.size();
  // members carries one ',' per member where the line has '{' and '}' less one comma.
  if (p.members.size() + 1 + core::kAuditFramingBytesMax > core::kAuditRecordBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "audit record of " + std::to_string(p.members.size() + 1) +
                         " bytes exceeds the limit of " +
                         std::to_string(core::kAuditRecordBytesMax - core::kAuditFramingBytesMax));
  }
  return p;
}

core::Result<uint64_t> HashChainLog::Sequence(const Prepared& p, std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (failed_) return MakeError(ErrorCode::kInternal, "audit log failed earlier: " + failure_);
    if (closing_) return MakeError(ErrorCode::kInternal, "audit log is closed");
    if (queued_.size() < core::kAuditQueueMax) break;
    if (!leading_) {
      Lead(lock, false);
    } else {
      not_full_.wait(lock);
    }
  }
  const uint64_t seq = next_seq_;
  // The line without "hash" (what "hash" is computed over), then with it. "hash" sorts before
  // the other members the log adds and is always followed by "prev".
  std::string line;
  line.reserve(p.members.size() + core::kAuditFramingBytesMax);
  line.push_back('{');
  std::string_view members = p.members;
  line.append(members.substr(0, p.at_prev));
  line.append("\"prev\":\"").append(tip_).append("\",");
  line.append(members.substr(p.at_prev, p.at_seq - p.at_prev));
  line.append("\"seq\":").append(std::to_string(seq)).push_back(',');
  line.append(members.substr(p.at_seq, p.at_ts - p.at_seq));
  line.append("\"ts\":").append(std::to_string(clock_.NowUnixMicros())).push_back(',');
  line.append(members.substr(p.at_ts));
  line.back() = '}';
  std::string hash_member = "\"hash\":\"" + core::Sha256Hex(line) + "\",";
  line.insert(1 + p.at_hash, hash_member);
  // Prepare() bounded the record so that the framing always fits.
  MANDATE_CHECK(line.size() <= core::kAuditRecordBytesMax);
  tip_ = core::Sha256Hex(line);
  queued_.push_back(std::move(line));
  ++next_seq_;
  return seq;
}

core::Result<uint64_t> HashChainLog::Append(core::Json record) {
  MANDATE_ASSIGN_OR_RETURN(Prepared prepared, Prepare(record));
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(uint64_t seq, Sequence(prepared, lock));
  Waiter self;
  self.seq = seq;
  bool registered = false;
  auto unregister = [&] {
    if (!registered) return;
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &self));
    registered = false;
  };
  for (;;) {
    if (durable_ > seq) break;
    if (failed_) {
      unregister();
      return MakeError(ErrorCode::kInternal, "audit append failed: " + failure_);
    }
    if (!leading_) {
      unregister();
      Lead(lock, true);
      continue;
    }
    if (!registered) {
      waiters_.push_back(&self);
      registered = true;
    }
    self.cv.wait(lock);
  }
  unregister();
  return seq;
}

core::Status HashChainLog::Submit(core::Json record) {
  MANDATE_ASSIGN_OR_RETURN(Prepared prepared, Prepare(record));
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_RETURN_IF_ERROR(Sequence(prepared, lock));
  // Written by the next group commit (under load, within the next fdatasync), or by the
  // flusher within kAuditFlushIntervalMillis: a write per submitted record was a syscall per
  // call on the hot path.
  if (!flusher_armed_) {
    flusher_armed_ = true;
    flusher_cv_.notify_one();
  }
  return core::OkStatus();
}

void HashChainLog::Lead(std::unique_lock<std::mutex>& lock, bool sync) {
  MANDATE_CHECK(!leading_);
  leading_ = true;
  std::vector<std::string> lines;
  lines.swap(queued_);
  if (!lines.empty()) not_full_.notify_all();
  const uint64_t written_before = written_;
  const bool do_sync = sync && (!lines.empty() || written_ > durable_);
  lock.unlock();
  size_t synced = 0;  // leading lines of `lines` covered by a sync
  uint64_t sync_calls = 0;
  core::Status st = WriteLines(lines, do_sync, &synced, &sync_calls);
  lock.lock();
  leading_ = false;
  syncs_ += sync_calls;
  if (synced > 0 || (do_sync && st.ok())) durable_ = written_before + synced;
  if (st.ok()) {
    written_ = written_before + lines.size();
  } else if (!failed_) {
    failed_ = true;
    failure_ = st.error().message;
  }
  // Wake the appenders this batch made durable (or failed), and one more to lead the next.
  Waiter* next = nullptr;
  for (Waiter* w : waiters_) {
    if (w->seq < durable_ || failed_) {
      w->cv.notify_one();
    } else if (next == nullptr || w->seq < next->seq) {
      next = w;
    }
  }
  if (next != nullptr) next->cv.notify_one();
  if (closing_) flusher_cv_.notify_all();
}

void HashChainLog::FlusherLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const bool clean = queued_.empty() && written_ == durable_;
    if (closing_) {
      if (leading_) {
        flusher_cv_.wait(lock);
        continue;
      }
      if (clean || failed_) return;
      Lead(lock, true);
      continue;
    }
    if (clean || failed_) {
      flusher_armed_ = false;
      flusher_cv_.wait(lock);
      continue;
    }
    // Something is written but not synced: make it durable within one interval unless an
    // Append's group commit does first.
    const uint64_t target = next_seq_;
    flusher_cv_.wait_for(lock, std::chrono::milliseconds(core::kAuditFlushIntervalMillis),
                         [&] { return closing_; });
    if (!closing_ && !leading_ && !failed_ && durable_ < target) Lead(lock, true);
  }
}

core::Status HashChainLog::WriteLines(const std::vector<std::string>& lines, bool sync,
                                      size_t* synced, uint64_t* sync_calls) {
  *synced = 0;
  std::string buffer;
  size_t buffered = 0;  // lines in `buffer`
  size_t written = 0;   // lines of `lines` written to a file so far
  auto fail = [&](core::Status st) {
    // Best effort: drop the bytes that were not made durable, so a later reopen does not
    // resurrect records whose Append reported failure. The log stays failed anyway.
    if (segment_fd_ >= 0 && ::ftruncate(segment_fd_, static_cast<off_t>(synced_bytes_)) == 0) {
      segment_bytes_ = synced_bytes_;
    }
    return st;
  };
  auto flush = [&]() -> core::Status {
    MANDATE_RETURN_IF_ERROR(WriteAll(segment_fd_, buffer));
    segment_bytes_ += buffer.size();
    buffer.clear();
    written += buffered;
    buffered = 0;
    return core::OkStatus();
  };
  auto do_sync = [&]() -> core::Status {
    MANDATE_RETURN_IF_ERROR(SyncFd(segment_fd_, "audit fdatasync"));
    ++*sync_calls;
    synced_bytes_ = segment_bytes_;
    *synced = written;
    return core::OkStatus();
  };
  for (const std::string& line : lines) {
    uint64_t pending_bytes = segment_bytes_ + buffer.size();
    if (pending_bytes > 0 && pending_bytes + line.size() + 1 > options_.segment_bytes_max) {
      // A segment rolls only after everything in it is durable, so only the newest segment
      // can ever end in a torn line.
      if (core::Status st = flush(); !st.ok()) return fail(std::move(st));
      if (segment_bytes_ > synced_bytes_) {
        if (core::Status st = do_sync(); !st.ok()) return fail(std::move(st));
      }
      if (core::Status st = RollSegment(); !st.ok()) return fail(std::move(st));
    }
    buffer.append(line);
    buffer.push_back('\n');
    ++buffered;
  }
  if (core::Status st = flush(); !st.ok()) return fail(std::move(st));
  if (sync) {
    if (core::Status st = do_sync(); !st.ok()) return fail(std::move(st));
  }
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
  synced_bytes_ = 0;
  return core::OkStatus();
}

core::Result<std::unique_ptr<AuditLog>> OpenAuditLog(const std::string& dir,
                                                     const core::Clock& clock) {
  MANDATE_ASSIGN_OR_RETURN(std::unique_ptr<HashChainLog> log, HashChainLog::Open(dir, clock));
  return std::unique_ptr<AuditLog>(std::move(log));
}

}  // namespace mandate::audit
