#include "mandate/audit/merkle_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <vector>

#include "audit/internal/segment.h"
#include "audit/internal/wake_word.h"
#include "mandate/core/check.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/thread_name.h"

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

// Writes all of `bytes` at `offset` (the segment is not opened O_APPEND: its end is
// preallocated).
core::Status PwriteAll(int fd, std::string_view bytes, uint64_t offset) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(ErrorCode::kInternal, "audit write failed");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return core::OkStatus();
}

// Writes `n` NUL bytes at `offset`.
core::Status WriteZeros(int fd, uint64_t offset, uint64_t n) {
  static constexpr size_t kZeroBlock = 64 * 1024;
  static const char kZeros[kZeroBlock] = {};
  while (n > 0) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(n, kZeroBlock));
    MANDATE_RETURN_IF_ERROR(PwriteAll(fd, std::string_view(kZeros, len), offset));
    offset += len;
    n -= len;
  }
  return core::OkStatus();
}

core::Status SyncFd(int fd, const char* what) {
  if (::fdatasync(fd) != 0) return ErrnoError(ErrorCode::kInternal, std::string(what) + " failed");
  return core::OkStatus();
}

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

core::Result<std::string> ReadSmallFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot open " + path);
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return ErrnoError(ErrorCode::kInternal, "cannot read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kNoteBytesMax) {
      ::close(fd);
      return MakeError(ErrorCode::kInternal, path + " is too large to be a key");
    }
  }
  ::close(fd);
  return out;
}

// Creates `name` in `dir_fd` (failing if it exists), writes `bytes` and syncs it.
core::Status WriteNewFile(int dir_fd, std::string_view name, std::string_view bytes, mode_t mode) {
  int fd = ::openat(dir_fd, std::string(name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                    mode);
  if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot create " + std::string(name));
  core::Status st = WriteAll(fd, bytes);
  if (st.ok()) st = SyncFd(fd, "key file sync");
  ::close(fd);
  return st;
}

constexpr size_t kPreparedBytesGuess = 1024;

// Bytes after the newest segment's last complete record found by Open (a torn line, or a
// crash's unsynced writes in its preallocated space), reported in the "audit.truncated"
// record.
struct TornTail {
  std::string file;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  std::string sha256;
};

}  // namespace

// A record's own members rendered canonically, each followed by ',', and where each member
// the log adds goes to keep the keys sorted (byte offsets into `members`).
struct MerkleLog::Prepared {
  std::string members;
  size_t at_prev = 0, at_seq = 0, at_ts = 0;
};

MerkleLog::MerkleLog(std::string dir, const core::Clock& clock, Options options)
    : dir_(std::move(dir)), clock_(clock), options_(options), tip_(internal::kGenesisPrev) {}

core::Result<std::unique_ptr<MerkleLog>> MerkleLog::Open(const std::string& dir,
                                                               const core::Clock& clock) {
  return Open(dir, clock, Options{});
}

core::Result<std::unique_ptr<MerkleLog>> MerkleLog::Open(const std::string& dir,
                                                         const core::Clock& clock,
                                                         Options options) {
  if (dir.empty()) return MakeError(ErrorCode::kInternal, "audit directory is empty");
  if (options.segment_bytes_max == 0) {
    return MakeError(ErrorCode::kBadRequest, "audit segment_bytes_max must be positive");
  }
  if (options.queue_records_max == 0 || options.queue_records_max > core::kAuditQueueMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit queue_records_max must be 1.." + std::to_string(core::kAuditQueueMax));
  }
  if (options.checkpoint_records == 0 || options.checkpoint_interval_micros <= 0) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit checkpoint_records and checkpoint_interval must be positive");
  }
  if (!options.origin.empty() && !ValidNoteName(options.origin)) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit origin must be 1-128 printable ASCII characters without space or '+'");
  }
  std::unique_ptr<MerkleLog> log(new MerkleLog(dir, clock, options));

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
  // One writer per log, across processes: two would interleave and fork the tree.
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
  bool has_bytes = false;
  for (const internal::Segment& seg : segments) {
    std::error_code size_ec;
    if (std::filesystem::file_size(seg.path, size_ec) > 0 || size_ec) has_bytes = true;
  }
  MANDATE_RETURN_IF_ERROR(log->LoadOrCreateKey(has_bytes));

  // The newest checkpoint, read before the records so the scan can compute the root at its
  // size. A torn last note (a crash while appending it) is cut off below.
  std::optional<Checkpoint> last_checkpoint;
  std::optional<TornTail> torn_checkpoint;
  log->checkpoints_fd_ = ::openat(log->dir_fd_, std::string(internal::kCheckpointsFileName).c_str(),
                                  O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log->checkpoints_fd_ < 0) {
    return ErrnoError(ErrorCode::kInternal, "cannot open " + dir + "/checkpoints");
  }
  {
    MANDATE_ASSIGN_OR_RETURN(NoteVerifier verifier, NoteVerifier::Parse(log->verifier_key_));
    internal::NoteReader reader(log->checkpoints_fd_);
    internal::NoteReader::Note note;
    std::optional<internal::NoteReader::Malformed> malformed;
    std::string last_text;
    uint64_t count = 0;
    uint64_t previous_size = 0;
    while (true) {
      MANDATE_ASSIGN_OR_RETURN(bool more, reader.Next(&note, &malformed));
      if (!more) break;
      if (malformed) {
        if (!malformed->at_end) {
          return MakeError(ErrorCode::kInternal,
                           "audit log is damaged: checkpoints line " +
                               std::to_string(malformed->line) + ": " + malformed->problem +
                               "; run `mandate audit verify`");
        }
        struct stat st {};
        if (::fstat(log->checkpoints_fd_, &st) != 0) {
          return ErrnoError(ErrorCode::kInternal, "cannot stat the checkpoints file");
        }
        std::string dropped(static_cast<size_t>(st.st_size) - malformed->offset, '\0');
        if (::pread(log->checkpoints_fd_, dropped.data(), dropped.size(),
                    static_cast<off_t>(malformed->offset)) != static_cast<ssize_t>(dropped.size())) {
          return ErrnoError(ErrorCode::kInternal, "cannot read the checkpoints file");
        }
        TornTail t;
        t.file = std::string(internal::kCheckpointsFileName);
        t.offset = malformed->offset;
        t.bytes = dropped.size();
        t.sha256 = core::Sha256Hex(dropped);
        torn_checkpoint = std::move(t);
        break;
      }
      // Every older checkpoint is checked for form, origin and order (cheap); only the newest
      // one's signature (the one Open relies on): `mandate audit verify` checks them all.
      {
        const size_t split = note.text.rfind("\n\n");
        auto cp = split == std::string::npos
                      ? core::Result<Checkpoint>(MakeError(ErrorCode::kBadRequest, "no text"))
                      : ParseCheckpointText(std::string_view(note.text).substr(0, split + 1));
        if (!cp.ok() || cp->origin != verifier.name() || cp->size < previous_size) {
          return MakeError(ErrorCode::kInternal,
                           "audit log is damaged: checkpoints line " + std::to_string(note.line) +
                               " is not a checkpoint of this log in order; run `mandate audit "
                               "verify`");
        }
        previous_size = cp->size;
      }
      ++count;
      last_text = std::move(note.text);
    }
    if (count > 0) {
      auto text = verifier.Open(last_text);
      core::Result<Checkpoint> cp =
          text.ok() ? ParseCheckpointText(*text) : core::Result<Checkpoint>(text.error());
      if (!cp.ok() || cp->origin != verifier.name()) {
        return MakeError(ErrorCode::kInternal,
                         "audit log is damaged: the newest checkpoint does not verify with "
                         "log.pub (" + (cp.ok() ? std::string("wrong origin") : cp.error().message) +
                             "); run `mandate audit verify`");
      }
      last_checkpoint = *cp;
    }
    if (torn_checkpoint) {
      if (::ftruncate(log->checkpoints_fd_, static_cast<off_t>(torn_checkpoint->offset)) != 0) {
        return ErrnoError(ErrorCode::kInternal, "cannot truncate the torn checkpoint");
      }
      MANDATE_RETURN_IF_ERROR(SyncFd(log->checkpoints_fd_, "checkpoints sync after truncation"));
    }
  }

  // Rebuild the tree from every record. Older segments are only hashed (their records were
  // checked when they were the newest); the newest is checked line by line, anchored at the
  // tree before it, and may end in a torn line.
  std::optional<TornTail> torn;
  std::optional<uint64_t> data_end;  // of the newest segment
  std::optional<Hash> root_at_checkpoint;
  if (last_checkpoint && last_checkpoint->size == 0) root_at_checkpoint = EmptyTreeHash();
  log->segment_number_ = segments.empty() ? 1 : segments.back().number;
  for (size_t i = 0; i < segments.size(); ++i) {
    const internal::Segment& seg = segments[i];
    if (seg.number != i + 1) {
      return MakeError(ErrorCode::kInternal, "audit log is damaged: segment " +
                                                 internal::SegmentName(i + 1) +
                                                 " is missing; run `mandate audit verify`");
    }
    const bool newest = i + 1 == segments.size();
    int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot open " + seg.path);
    internal::ChainChecker checker(log->acc_.size(), log->tip_);
    internal::LineReader reader(fd, core::kAuditRecordBytesMax,
                                    internal::LineReader::Nul::kEndsData);
    internal::LineReader::Line line;
    size_t line_no = 0;
    auto damaged = [&](const std::string& what) {
      ::close(fd);
      return MakeError(ErrorCode::kInternal, "audit log is damaged at " + seg.name + " line " +
                                                 std::to_string(line_no) + ": " + what +
                                                 "; run `mandate audit verify`");
    };
    while (true) {
      auto more = reader.Next(&line);
      if (!more.ok()) {
        ::close(fd);
        return std::move(more).error();
      }
      if (!*more) break;
      ++line_no;
      if (line.overlong) return damaged("line exceeds kAuditRecordBytesMax");
      if (!line.terminated) {
        if (!newest) return damaged("truncated line in a segment that is not the newest");
        data_end = line.offset;
        break;
      }
      Hash leaf;
      if (newest) {
        if (std::optional<std::string> problem = checker.Check(line.bytes)) return damaged(*problem);
        leaf = checker.last_leaf();
      } else {
        leaf = LeafHash(line.bytes);
      }
      log->acc_.Push(leaf);
      internal::HexInto(leaf, log->tip_.data());
      if (last_checkpoint && log->acc_.size() == last_checkpoint->size) {
        root_at_checkpoint = log->acc_.Root();
      }
    }
    if (!newest && reader.nul_offset()) {
      ++line_no;
      return damaged("NUL bytes in a segment that is not the newest (only the newest has "
                     "preallocated space)");
    }
    if (newest) {
      // Where the records end: before a torn line, at the preallocated space, or at the end.
      if (!data_end) data_end = reader.nul_offset();
      if (!data_end) {
        struct stat st {};
        if (::fstat(fd, &st) != 0) {
          ::close(fd);
          return ErrnoError(ErrorCode::kInternal, "cannot stat " + seg.path);
        }
        data_end = static_cast<uint64_t>(st.st_size);
      }
      // Anything but NUL after it is the unsynced remains of a write the crash cut short:
      // never acknowledged, dropped, and recorded.
      auto end = internal::EndOfNonZero(fd, *data_end);
      if (!end.ok()) {
        ::close(fd);
        return std::move(end).error();
      }
      if (*end > *data_end) {
        if (*end - *data_end > core::kAuditSegmentBytesMax) {
          ++line_no;
          return damaged("more than a segment's worth of bytes after the last record");
        }
        TornTail t;
        t.file = seg.name;
        t.offset = *data_end;
        t.bytes = *end - *data_end;
        std::string dropped(t.bytes, '\0');
        if (::pread(fd, dropped.data(), dropped.size(), static_cast<off_t>(t.offset)) !=
            static_cast<ssize_t>(dropped.size())) {
          ::close(fd);
          return ErrnoError(ErrorCode::kInternal, "cannot read the torn tail of " + seg.path);
        }
        t.sha256 = core::Sha256Hex(dropped);
        torn = std::move(t);
      }
    }
    ::close(fd);
  }
  if (last_checkpoint) {
    if (!root_at_checkpoint) {
      return MakeError(ErrorCode::kInternal,
                       "audit log is damaged: the newest checkpoint covers " +
                           std::to_string(last_checkpoint->size) + " records but the log holds " +
                           std::to_string(log->acc_.size()) +
                           " (records removed from its end); run `mandate audit verify`");
    }
    if (*root_at_checkpoint != last_checkpoint->root) {
      return MakeError(ErrorCode::kInternal,
                       "audit log is damaged: the records do not match the newest checkpoint's "
                       "root; run `mandate audit verify`");
    }
    log->checkpointed_ = last_checkpoint->size;
  }
  log->next_seq_ = log->acc_.size();
  log->checkpointed_at_micros_ = SteadyMicros();

  // Open (or create) the last segment for appending.
  std::string name = internal::SegmentName(log->segment_number_);
  log->segment_fd_ = ::openat(log->dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (log->segment_fd_ < 0)
    return ErrnoError(ErrorCode::kInternal, "cannot open " + dir + "/" + name);
  if (segments.empty()) MANDATE_RETURN_IF_ERROR(SyncFd(log->dir_fd_, "audit directory sync"));
  struct stat st {};
  if (::fstat(log->segment_fd_, &st) != 0)
    return ErrnoError(ErrorCode::kInternal, "cannot stat " + name);
  const uint64_t records_end = data_end.value_or(0);
  if (static_cast<uint64_t>(st.st_size) > records_end) {
    // Cut off a torn tail and the old preallocated space; the preallocator fills it anew.
    if (::ftruncate(log->segment_fd_, static_cast<off_t>(records_end)) != 0) {
      return ErrnoError(ErrorCode::kInternal, "cannot truncate the tail of " + name);
    }
    MANDATE_RETURN_IF_ERROR(SyncFd(log->segment_fd_, "audit sync after truncation"));
  }
  log->segment_bytes_ = records_end;
  // A spare left by a crash may be half filled: made anew when needed.
  if (::unlinkat(log->dir_fd_, std::string(internal::kSpareFileName).c_str(), 0) != 0 &&
      errno != ENOENT) {
    return ErrnoError(ErrorCode::kInternal, "cannot remove the old audit spare segment");
  }
  log->zeroed_to_.store(records_end, std::memory_order_relaxed);
  log->zero_target_ =
      std::min<uint64_t>(options.segment_bytes_max, records_end + core::kAuditPreallocAheadBytes);

  log->synced_bytes_ = log->segment_bytes_;
  // Counts are seqs: the log may not start empty.
  log->written_ = log->next_seq_;
  log->durable_.store(log->next_seq_, std::memory_order_relaxed);
  log->awaited_ = log->next_seq_;
  log->preallocator_ = std::thread([raw = log.get()] {
    core::NameThisThread("audit-prealloc");
    raw->PreallocLoop();
  });
  log->committer_ = std::thread([raw = log.get()] {
    core::NameThisThread("audit-commit");
    raw->CommitLoop();
  });
  log->flusher_ = std::thread([raw = log.get()] {
    core::NameThisThread("audit-flush");
    raw->FlusherLoop();
  });
  {
    // Records not yet covered (a crash since the last checkpoint) get one soon.
    std::lock_guard<std::mutex> lock(log->mu_);
    if (log->durable_ > log->checkpointed_) log->flusher_armed_ = true;
  }
  log->flusher_cv_.notify_all();

  for (const std::optional<TornTail>* t : {&torn, &torn_checkpoint}) {
    if (!t->has_value()) continue;
    core::Json note = core::Json::MakeObject();
    note.Set("type", "audit.truncated");
    note.Set("reason", t == &torn ? "bytes after the last complete record (a crash during a "
                                    "write) removed on open"
                                  : "torn last checkpoint (crash during a write) removed on open");
    note.Set("file", (*t)->file);
    note.Set("offset", static_cast<int64_t>((*t)->offset));
    note.Set("dropped_bytes", static_cast<int64_t>((*t)->bytes));
    note.Set("dropped_sha256", (*t)->sha256);
    MANDATE_RETURN_IF_ERROR(log->Append(note));
  }
  return log;
}

core::Status MerkleLog::LoadOrCreateKey(bool log_has_records) {
  const std::string key_path = dir_ + "/" + std::string(internal::kKeyFileName);
  const std::string pub_path = dir_ + "/" + std::string(internal::kPublicKeyFileName);
  std::error_code ec;
  if (std::filesystem::exists(key_path, ec)) {
    MANDATE_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(key_path));
    while (!text.empty() && text.back() == '\n') text.pop_back();
    auto signer = NoteSigner::Parse(text);
    if (!signer.ok()) {
      return MakeError(ErrorCode::kInternal, "audit log key " + key_path + " is malformed: " +
                                                 signer.error().message);
    }
    signer_ = std::make_unique<NoteSigner>(std::move(signer).value());
  } else {
    if (log_has_records) {
      return MakeError(ErrorCode::kInternal,
                       "audit log has records but its signing key " + key_path +
                           " is missing: restore it from backup (a new key cannot vouch for "
                           "old records)");
    }
    std::string origin = options_.origin;
    if (origin.empty()) origin = "mandate.local/audit/" + core::HexEncode(core::RandomBytes(8));
    MANDATE_ASSIGN_OR_RETURN(NoteSigner signer, NoteSigner::Generate(origin));
    MANDATE_RETURN_IF_ERROR(WriteNewFile(dir_fd_, internal::kKeyFileName,
                                         signer.PrivateKeyText() + "\n", 0600));
    signer_ = std::make_unique<NoteSigner>(std::move(signer));
  }
  verifier_key_ = signer_->VerifierKeyText();
  if (std::filesystem::exists(pub_path, ec)) {
    MANDATE_ASSIGN_OR_RETURN(std::string pub, ReadSmallFile(pub_path));
    while (!pub.empty() && pub.back() == '\n') pub.pop_back();
    if (pub != verifier_key_) {
      return MakeError(ErrorCode::kInternal, "audit verifier key " + pub_path +
                                                 " does not match the log's key log.key");
    }
  } else {
    MANDATE_RETURN_IF_ERROR(
        WriteNewFile(dir_fd_, internal::kPublicKeyFileName, verifier_key_ + "\n", 0644));
  }
  return SyncFd(dir_fd_, "audit directory sync");
}

MerkleLog::~MerkleLog() { Close(); }

void MerkleLog::Close() {
  std::call_once(close_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    flusher_cv_.notify_all();
    committer_cv_.notify_all();
    not_full_.notify_all();
    // The committer stops leading; the flusher writes and syncs whatever is still queued,
    // checkpoints it, then exits.
    if (committer_.joinable()) committer_.join();
    if (flusher_.joinable()) flusher_.join();
    // The flusher made every record it could durable; a callback still here (the log failed)
    // learns its record's fate now, so none is left without an answer.
    {
      Ready ready;
      {
        std::lock_guard<std::mutex> lock(mu_);
        TakeReadyLocked(&ready, true);
      }
      RunReady(&ready);
    }
    // Every record is written: cut the segment back to its records, so a closed log's
    // segments hold nothing but records.
    const uint64_t filled = StopPreallocation();
    if (preallocator_.joinable()) preallocator_.join();
    if (spare_fd_ >= 0) {
      CloseFd(&spare_fd_);
      (void)::unlinkat(dir_fd_, std::string(internal::kSpareFileName).c_str(), 0);
    }
    if (segment_fd_ >= 0 && filled > segment_bytes_ && !failed_.load()) {
      if (::ftruncate(segment_fd_, static_cast<off_t>(segment_bytes_)) == 0) {
        (void)::fdatasync(segment_fd_);  // best effort: a reopen cuts NUL bytes off anyway
      }
    }
    CloseFd(&checkpoints_fd_);
    CloseFd(&segment_fd_);
    CloseFd(&dir_fd_);
    CloseFd(&lock_fd_);  // releases the flock
  });
}

uint64_t MerkleLog::SyncCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

bool MerkleLog::SpareReady() const {
  std::lock_guard<std::mutex> lock(zero_mu_);
  return spare_ready_;
}

uint64_t MerkleLog::CheckpointedSize() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpointed_;
}

core::Result<MerkleLog::Prepared> MerkleLog::Prepare(const core::Json& record) const {
  if (!record.is_object()) {
    return MakeError(ErrorCode::kBadRequest, "an audit record must be a JSON object");
  }
  for (const char* reserved : {"seq", "ts", "prev"}) {
    if (record.Find(reserved) != nullptr) {
      return MakeError(ErrorCode::kBadRequest, std::string("an audit record must not set \"") +
                                                   reserved + "\": the log assigns it");
    }
  }
  // Whatever is written must read back to the same bytes, or VerifyLog would call the log
  // tampered: the serialization below checks what the verifier's parser would refuse (UTF-8,
  // depth, duplicate keys) as it goes, without re-parsing (the re-parse was ~10% of a
  // governed call's CPU).
  const auto unverifiable = [](std::string_view why) {
    return MakeError(ErrorCode::kBadRequest,
                     "audit record cannot be stored verifiably: " + std::string(why));
  };
  // The record's one serialization, done on the caller's thread: the members in canonical
  // (byte-sorted) order. Sequence() splices in the members the log adds.
  const core::Json::Object& obj = record.as_object();
  std::vector<const core::Json::Member*> sorted;
  sorted.reserve(obj.size());
  for (const auto& m : obj) sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(),
            [](const core::Json::Member* a, const core::Json::Member* b) { return a->first < b->first; });
  Prepared p;
  // Typical records (a governed call's) are 300-800 bytes: one allocation instead of a few.
  p.members.reserve(kPreparedBytesGuess);
  size_t* const slots[] = {&p.at_prev, &p.at_seq, &p.at_ts};
  const std::string_view names[] = {"prev", "seq", "ts"};  // sorted
  constexpr size_t kSlots = 3;
  size_t next_slot = 0;
  const core::Json::Member* previous = nullptr;
  for (const core::Json::Member* m : sorted) {
    if (!core::IsValidUtf8(m->first)) return unverifiable("a JSON object key is not valid UTF-8");
    if (previous != nullptr && previous->first == m->first) {
      return unverifiable("duplicate JSON object key \"" + m->first + "\"");
    }
    previous = m;
    while (next_slot < kSlots && names[next_slot] < std::string_view(m->first)) {
      *slots[next_slot++] = p.members.size();
    }
    core::AppendJsonString(m->first, &p.members);
    p.members.push_back(':');
    // The record is the root (depth 1): its members' values sit at depth 2.
    if (auto st = m->second.CheckedCanonicalTo(&p.members, 2); !st.ok()) {
      return unverifiable(st.error().message);
    }
    p.members.push_back(',');
  }
  while (next_slot < kSlots) *slots[next_slot++] = p.members.size();
  // members carries one ',' per member where the line has '{' and '}' less one comma.
  if (p.members.size() + 1 + core::kAuditFramingBytesMax > core::kAuditRecordBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "audit record of " + std::to_string(p.members.size() + 1) +
                         " bytes exceeds the limit of " +
                         std::to_string(core::kAuditRecordBytesMax - core::kAuditFramingBytesMax));
  }
  return p;
}

core::Result<uint64_t> MerkleLog::Sequence(const Prepared& p, std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (failed_) return MakeError(ErrorCode::kInternal, "audit log failed earlier: " + failure_);
    if (closing_) return MakeError(ErrorCode::kInternal, "audit log is closed");
    if (queued_.size() < options_.queue_records_max) break;
    if (!leading_) {
      Ready ready;
      if (const WakeMask wake = Lead(lock, false, 0, &ready); wake != 0 || !ready.empty()) {
        lock.unlock();
        RunReady(&ready);
        Wake(wake);
        lock.lock();
      }
    } else {
      not_full_.wait(lock);
    }
  }
  const uint64_t seq = next_seq_;
  // This runs under mu_ for every record: no allocation but the line itself.
  char seq_text[24];
  char ts_text[24];
  const size_t seq_len = static_cast<size_t>(
      std::to_chars(seq_text, seq_text + sizeof seq_text, seq).ptr - seq_text);
  const size_t ts_len = static_cast<size_t>(
      std::to_chars(ts_text, ts_text + sizeof ts_text, clock_.NowUnixMicros()).ptr - ts_text);
  std::string line;
  line.reserve(p.members.size() + core::kAuditFramingBytesMax);
  line.push_back('{');
  std::string_view members = p.members;
  line.append(members.substr(0, p.at_prev));
  line.append("\"prev\":\"").append(tip_).append("\",");
  line.append(members.substr(p.at_prev, p.at_seq - p.at_prev));
  line.append("\"seq\":").append(seq_text, seq_len).push_back(',');
  line.append(members.substr(p.at_seq, p.at_ts - p.at_seq));
  line.append("\"ts\":").append(ts_text, ts_len).push_back(',');
  line.append(members.substr(p.at_ts));
  line.back() = '}';
  // Prepare() bounded the record so that the framing always fits.
  MANDATE_CHECK(line.size() <= core::kAuditRecordBytesMax);
  Hash leaf = LeafHash(line);
  MANDATE_DCHECK(tip_.size() == 64);
  internal::HexInto(leaf, tip_.data());
  queued_.push_back(Queued{std::move(line), leaf});
  ++next_seq_;
  return seq;
}

core::Result<uint64_t> MerkleLog::Append(const core::Json& record) {
  MANDATE_ASSIGN_OR_RETURN(Prepared prepared, Prepare(record));
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(uint64_t seq, Sequence(prepared, lock));
  if (!leading_) {
    // No write in progress: commit this batch here, so a lone Append costs no hand-off.
    Ready ready;
    const WakeMask wake = Lead(lock, true, 0, &ready);
    const bool durable = durable_.load(std::memory_order_relaxed) > seq;
    std::string failure = durable ? std::string() : failure_;
    lock.unlock();
    RunReady(&ready);
    Wake(wake);
    if (!durable) return MakeError(ErrorCode::kInternal, "audit append failed: " + failure);
    return seq;
  }
  // A batch is being written: the committer takes this record with the next one, and wakes
  // this batch's slot once it is durable (or the log failed).
  WakeSlot& slot = wake_slots_[(batches_ + 1) % kWakeSlots];
  awaited_ = std::max(awaited_, seq + 1);
  lock.unlock();
  bool slept = false;
  bool durable = false;
  for (;;) {
    const uint32_t seen = slot.word.load(std::memory_order_acquire);
    if (durable_.load(std::memory_order_acquire) > seq) {
      durable = true;
      break;
    }
    if (failed_.load(std::memory_order_acquire)) break;
    internal::WaitWhileEquals(slot.word, seen);
    slept = true;
  }
  // The waker woke one sleeper: the first one up wakes the others (WakeSlot::relay).
  if (slept && slot.relay.exchange(false, std::memory_order_acq_rel)) {
    internal::WakeSleepers(slot.word, INT_MAX);
  }
  if (durable) return seq;
  // The log failed. Under mu_ the two agree: a record synced before the failure succeeds.
  lock.lock();
  if (durable_.load(std::memory_order_relaxed) > seq) return seq;
  return MakeError(ErrorCode::kInternal, "audit append failed: " + failure_);
}

core::Result<uint64_t> MerkleLog::AppendThen(const core::Json& record, DurableCallback on_durable) {
  MANDATE_ASSIGN_OR_RETURN(Prepared prepared, Prepare(record));
  std::unique_lock<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(uint64_t seq, Sequence(prepared, lock));
  // The committer takes this record with the next batch and runs the callback once it is
  // durable; unlike a lone Append, the caller never writes and syncs the batch itself: it has
  // its own work to do meanwhile (the point of not waiting), and a caller sleeping in
  // fdatasync is a caller not doing it.
  on_durable_.push_back(OnDurable{seq, std::move(on_durable)});
  awaited_ = std::max(awaited_, seq + 1);
  if (!leading_) committer_cv_.notify_one();
  return seq;
}

void MerkleLog::TakeReadyLocked(Ready* ready, bool all) {
  const uint64_t durable = durable_.load(std::memory_order_relaxed);
  const bool failed = failed_.load(std::memory_order_relaxed);
  size_t n = 0;
  while (n < on_durable_.size() && (all || failed || on_durable_[n].seq < durable)) ++n;
  if (n == 0) return;
  for (size_t i = 0; i < n; ++i) {
    OnDurable& d = on_durable_[i];
    ready->emplace_back(std::move(d.fn),
                        d.seq < durable ? core::OkStatus()
                                        : core::Status(MakeError(ErrorCode::kInternal,
                                                                 "audit append failed: " +
                                                                     (failed ? failure_ : std::string("the log closed first")))));
  }
  on_durable_.erase(on_durable_.begin(), on_durable_.begin() + static_cast<std::ptrdiff_t>(n));
}

void MerkleLog::RunReady(Ready* ready) {
  for (auto& [fn, status] : *ready) fn(status);
  ready->clear();
}

core::Status MerkleLog::Submit(const core::Json& record) {
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

MerkleLog::WakeMask MerkleLog::Lead(std::unique_lock<std::mutex>& lock, bool sync,
                                    WakeMask wake_first, Ready* ready) {
  MANDATE_CHECK(!leading_);
  MANDATE_DCHECK(ready->empty());
  leading_ = true;
  const uint64_t batch = ++batches_;
  // The batch takes the whole queue; the queue continues in the spare vector's capacity.
  std::vector<Queued> lines = std::move(queued_);
  queued_ = std::move(spare_);
  queued_.clear();
  if (!lines.empty()) not_full_.notify_all();
  const uint64_t written_before = written_;
  const uint64_t durable_before = durable_.load(std::memory_order_relaxed);
  const bool do_sync = sync && (!lines.empty() || written_before > durable_before);
  lock.unlock();
  Wake(wake_first);
  size_t synced = 0;  // leading lines of `lines` covered by a sync
  uint64_t sync_calls = 0;
  core::Status st = WriteLines(lines, do_sync, &synced, &sync_calls);
  if (st.ok()) {
    // The tree follows the written records; the leader alone touches it.
    for (const Queued& q : lines) acc_.Push(q.leaf);
  }
  const size_t count = lines.size();
  lines.clear();  // frees the lines outside the mutex, keeps the capacity
  lock.lock();
  spare_ = std::move(lines);
  leading_ = false;
  syncs_ += sync_calls;
  uint64_t durable = durable_before;
  if (synced > 0 || (do_sync && st.ok())) durable = written_before + synced;
  // durable_ before failed_: a waiter that sees the failure also sees what was made durable.
  durable_.store(durable, std::memory_order_release);
  if (st.ok()) {
    written_ = written_before + count;
  } else if (!failed_.load(std::memory_order_relaxed)) {
    failure_ = st.error().message;
    failed_.store(true, std::memory_order_release);
  }
  // The appenders this batch made durable (or failed) sleep on its slot; a sync that also
  // covered records an earlier batch wrote without syncing wakes every slot. No wake-up when
  // no Append waits for a record that was not durable before (a lone Append leading its own
  // batch): every waiter raised awaited_ under mu_ before its batch was taken.
  WakeMask wake = 0;
  if (failed_.load(std::memory_order_relaxed)) {
    wake = kWakeAll;
  } else if (durable > durable_before && awaited_ > durable_before) {
    wake = durable_before < written_before ? kWakeAll : WakeMask{1} << (batch % kWakeSlots);
  }
  // The callbacks of what this batch made durable (or failed) run once mu_ is released.
  TakeReadyLocked(ready);
  if (st.ok() && written_ == durable) MaybeSnapshot(false);
  // Appends still wait for records this batch did not cover: the committer leads next (a
  // no-op when the committer is the caller: it checks before waiting).
  if (!failed_.load(std::memory_order_relaxed) && awaited_ > durable) committer_cv_.notify_one();
  // An idle flusher learns that records await a checkpoint (it then waits out the interval).
  const bool wake_idle_flusher = !flusher_armed_ && durable > checkpointed_;
  if (wake_idle_flusher) flusher_armed_ = true;
  if (closing_ || pending_checkpoint_ || wake_idle_flusher) flusher_cv_.notify_all();
  // Appenders waiting for room (Sequence) wait for a leader to take the queue: now that this
  // one is done, one of them leads the full queue itself, or all learn that the log failed
  // (after a failure nobody leads again, so a waiter not woken here would wait forever).
  if (failed_.load(std::memory_order_relaxed) || queued_.size() >= options_.queue_records_max) {
    not_full_.notify_all();
  }
  return wake;
}

void MerkleLog::Wake(WakeMask mask) {
  for (size_t i = 0; i < kWakeSlots; ++i) {
    if ((mask & (WakeMask{1} << i)) == 0) continue;
    wake_slots_[i].relay.store(true, std::memory_order_release);
    internal::BumpAndWake(wake_slots_[i].word, 1);
  }
}

void MerkleLog::CommitLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  WakeMask wake = 0;  // the last batch's words, bumped by the next Lead once mu_ is released
  Ready ready;        // the last batch's AppendThen callbacks
  for (;;) {
    if (!ready.empty()) {
      // The callbacks (the calls' gated sends) run before the next batch is taken, so the
      // records that come in meanwhile ride with it instead of waiting for a further sync.
      lock.unlock();
      RunReady(&ready);
      lock.lock();
      continue;
    }
    if (!closing_ && !failed_.load(std::memory_order_relaxed) && !leading_ &&
        awaited_ > durable_.load(std::memory_order_relaxed)) {
      wake = Lead(lock, true, wake, &ready);
      continue;
    }
    if (wake != 0) {
      lock.unlock();
      Wake(wake);
      wake = 0;
      lock.lock();
      continue;
    }
    // Closing: the flusher drains what is left.
    if (closing_) return;
    committer_cv_.wait(lock);
  }
}

void MerkleLog::MaybeSnapshot(bool force) {
  MANDATE_DCHECK(!leading_ && written_ == durable_ && acc_.size() == durable_);
  if (pending_checkpoint_ || failed_ || durable_ <= checkpointed_) return;
  const int64_t now = SteadyMicros();
  const bool due = force || durable_ - checkpointed_ >= options_.checkpoint_records ||
                   now - checkpointed_at_micros_ >= options_.checkpoint_interval_micros;
  if (!due) return;
  pending_checkpoint_ = PendingCheckpoint{durable_, acc_.Root()};
  checkpointed_at_micros_ = now;
}

core::Status MerkleLog::WriteCheckpoint(const PendingCheckpoint& pending) {
  Checkpoint cp;
  cp.origin = signer_->name();
  cp.size = pending.size;
  cp.root = pending.root;
  MANDATE_ASSIGN_OR_RETURN(std::string note, signer_->Sign(CheckpointText(cp)));
  MANDATE_RETURN_IF_ERROR(WriteAll(checkpoints_fd_, note));
  return SyncFd(checkpoints_fd_, "checkpoints fdatasync");
}

void MerkleLog::FlusherLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (pending_checkpoint_ && !failed_) {
      // Sign and write off the appenders' path; the snapshot covers synced records only.
      PendingCheckpoint cp = *pending_checkpoint_;
      lock.unlock();
      core::Status st = WriteCheckpoint(cp);
      lock.lock();
      pending_checkpoint_.reset();
      if (st.ok()) {
        checkpointed_ = cp.size;
      } else if (!failed_) {
        // A log whose records can no longer be vouched for fails closed like a failed write.
        failure_ = st.error().message;
        failed_.store(true, std::memory_order_release);
        not_full_.notify_all();  // appenders waiting for room are refused, not left waiting
        Ready ready;
        TakeReadyLocked(&ready);
        lock.unlock();
        RunReady(&ready);
        Wake(kWakeAll);
        lock.lock();
      }
      continue;
    }
    const bool clean = queued_.empty() && written_ == durable_;
    if (closing_) {
      if (leading_) {
        flusher_cv_.wait(lock);
        continue;
      }
      if (failed_) return;
      if (!clean) {
        Ready ready;
        const WakeMask wake = Lead(lock, true, 0, &ready);
        lock.unlock();
        RunReady(&ready);
        Wake(wake);
        lock.lock();
        continue;
      }
      MaybeSnapshot(true);  // the shutdown checkpoint covers every record
      if (pending_checkpoint_) continue;
      return;
    }
    if (failed_) {
      flusher_armed_ = false;
      flusher_cv_.wait(lock);
      continue;
    }
    if (!clean) {
      // Something is queued or written but not synced: make it durable within one interval
      // unless an Append's group commit does first.
      const uint64_t target = next_seq_;
      flusher_cv_.wait_for(lock, std::chrono::milliseconds(core::kAuditFlushIntervalMillis),
                           [&] { return closing_ || pending_checkpoint_.has_value(); });
      if (!closing_ && !pending_checkpoint_ && !leading_ && !failed_ && durable_ < target) {
        Ready ready;
        const WakeMask wake = Lead(lock, true, 0, &ready);
        lock.unlock();
        RunReady(&ready);
        Wake(wake);
        lock.lock();
      }
      continue;
    }
    if (durable_ > checkpointed_) {
      // Every record is durable but not all are checkpointed: checkpoint once the interval
      // since the last one has passed.
      if (!leading_) MaybeSnapshot(false);
      if (pending_checkpoint_) continue;
      const int64_t wait_micros =
          std::max<int64_t>(1000, checkpointed_at_micros_ + options_.checkpoint_interval_micros -
                                      SteadyMicros());
      flusher_armed_ = false;  // so a Submit wakes us rather than waiting out the interval
      flusher_cv_.wait_for(lock, std::chrono::microseconds(wait_micros));
      continue;
    }
    flusher_armed_ = false;
    flusher_cv_.wait(lock);
  }
}

core::Status MerkleLog::WriteLines(const std::vector<Queued>& lines, bool sync,
                                      size_t* synced, uint64_t* sync_calls) {
  *synced = 0;
  std::string buffer;
  size_t buffered = 0;  // lines in `buffer`
  size_t written = 0;   // lines of `lines` written to a file so far
  auto fail = [&](core::Status st) {
    // Best effort: drop the bytes that were not made durable, so a later reopen does not
    // resurrect records whose Append reported failure. The log stays failed anyway.
    StopPreallocation();
    if (segment_fd_ >= 0 && ::ftruncate(segment_fd_, static_cast<off_t>(synced_bytes_)) == 0) {
      segment_bytes_ = synced_bytes_;
    }
    return st;
  };
  auto flush = [&]() -> core::Status {
    MANDATE_RETURN_IF_ERROR(WriteAtEnd(buffer));
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
  for (const Queued& q : lines) {
    const std::string& line = q.line;
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

core::Status MerkleLog::WriteAtEnd(std::string_view bytes) {
  const uint64_t end = segment_bytes_ + bytes.size();
  if (end > zeroed_to_.load(std::memory_order_acquire)) {
    // Past the preallocated space (the log just opened, or rolled without a spare ready):
    // wait for a fill of the current segment in progress, then write as a plain append.
    std::unique_lock<std::mutex> lock(zero_mu_);
    zero_cv_.wait(lock, [&] { return !zero_filling_; });
    if (end > zeroed_to_.load(std::memory_order_relaxed)) {
      zeroed_to_.store(end, std::memory_order_relaxed);
    }
  }
  MANDATE_RETURN_IF_ERROR(PwriteAll(segment_fd_, bytes, segment_bytes_));
  segment_bytes_ = end;
  written_end_.store(end, std::memory_order_relaxed);
  // Keep space ahead: ask for more once less than kAuditPreallocAheadBytes is left; and once
  // the segment is half full, for a spare to roll to.
  const uint64_t max = options_.segment_bytes_max;
  const uint64_t want = std::min<uint64_t>(max, end + core::kAuditPreallocAheadBytes);
  const bool more =
      zeroed_to_.load(std::memory_order_relaxed) + core::kAuditPreallocChunkBytes <= want;
  const bool spare = end >= max / 2 && !spare_asked_;
  if (more || spare) {
    {
      std::lock_guard<std::mutex> lock(zero_mu_);
      if (more) zero_target_ = std::max(zero_target_, want);
      if (spare) spare_asked_ = spare_wanted_ = true;
    }
    zero_cv_.notify_all();
  }
  return core::OkStatus();
}

core::Status MerkleLog::RollSegment() {
  std::string name = internal::SegmentName(segment_number_ + 1);
  const uint64_t max = options_.segment_bytes_max;
  {
    std::unique_lock<std::mutex> lock(zero_mu_);
    zero_cv_.wait(lock, [&] { return !zero_filling_; });
    // Seal the segment at its last record (its data is synced): only the newest segment
    // ends in preallocated space.
    if (zeroed_to_.load(std::memory_order_relaxed) > segment_bytes_) {
      if (::ftruncate(segment_fd_, static_cast<off_t>(segment_bytes_)) != 0) {
        return ErrnoError(ErrorCode::kInternal, "cannot cut audit segment " +
                                                    internal::SegmentName(segment_number_) +
                                                    " back to its records");
      }
      MANDATE_RETURN_IF_ERROR(SyncFd(segment_fd_, "audit fdatasync"));
      zeroed_to_.store(segment_bytes_, std::memory_order_relaxed);
    }
    // The new segment: the spare, filled and synced in the background, renamed (never over an
    // existing file); else an empty file, filled from now on.
    int fd = -1;
    uint64_t space = 0;
    if (spare_ready_ &&
        ::renameat2(dir_fd_, std::string(internal::kSpareFileName).c_str(), dir_fd_,
                    name.c_str(), RENAME_NOREPLACE) == 0) {
      fd = spare_fd_;
      space = max;
      spare_fd_ = -1;
    } else {
      fd = ::openat(dir_fd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) return ErrnoError(ErrorCode::kInternal, "cannot create audit segment " + name);
    }
    if (spare_ready_) {
      // Used or not, a new one is made for the next roll.
      if (spare_fd_ >= 0) {
        CloseFd(&spare_fd_);
        (void)::unlinkat(dir_fd_, std::string(internal::kSpareFileName).c_str(), 0);
      }
      spare_ready_ = false;
      spare_filled_ = 0;
    }
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
    written_end_.store(0, std::memory_order_relaxed);
    zeroed_to_.store(space, std::memory_order_relaxed);
    zero_target_ = std::min<uint64_t>(max, core::kAuditPreallocAheadBytes);
    spare_asked_ = spare_wanted_ = false;
  }
  zero_cv_.notify_all();
  return core::OkStatus();
}

void MerkleLog::PreallocLoop() {
  const uint64_t max = options_.segment_bytes_max;
  const uint64_t piece = core::kAuditPreallocChunkBytes;
  const std::string spare_name(internal::kSpareFileName);
  // The spare is filled at kAuditSparePace times the pace records fill the second half of
  // the current segment, a piece at a time: NUL bytes written as fast as the disk takes them
  // would queue every group commit's fdatasync behind them (measured: 2-4 ms per batch while
  // a 64 MiB spare was written at once).
  auto spare_target = [&]() -> uint64_t {
    const uint64_t end = written_end_.load(std::memory_order_relaxed);
    const uint64_t half = max / 2;
    return std::min<uint64_t>(
        max, core::kAuditSparePace * (end > half ? end - half : 0) + 2 * piece);
  };
  std::unique_lock<std::mutex> lock(zero_mu_);
  while (true) {
    const bool active = zeroed_to_.load(std::memory_order_relaxed) < zero_target_;
    const bool spare = !active && spare_wanted_ && !spare_ready_;
    if (zero_stop_) return;
    if (!active && !spare) {
      zero_cv_.wait(lock);
      continue;
    }
    if (spare && spare_fd_ < 0) {
      spare_fd_ = ::openat(dir_fd_, spare_name.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                           0600);
      spare_filled_ = 0;
      if (spare_fd_ < 0) {
        spare_wanted_ = false;  // rolls create empty segments, as without a spare
        continue;
      }
    }
    if (spare && spare_filled_ < max && spare_filled_ >= spare_target()) {
      // Ahead of the pace: look again shortly (or when woken).
      zero_cv_.wait_for(lock, std::chrono::milliseconds(core::kAuditSparePollMillis));
      continue;
    }
    const uint64_t from = active ? zeroed_to_.load(std::memory_order_relaxed) : spare_filled_;
    const uint64_t to = std::min<uint64_t>(max, from + piece);
    bool& filling = active ? zero_filling_ : spare_filling_;
    filling = true;
    // Neither file is closed nor replaced while its filling flag is set.
    const int fd = active ? segment_fd_ : spare_fd_;
    lock.unlock();
    core::Status st = to > from ? WriteZeros(fd, from, to - from) : core::OkStatus();
    if (st.ok()) {
      if (active || to == max) {
        st = SyncFd(fd, "audit preallocation fdatasync");
      } else {
        // Start the write-back now, without a cache flush: the next group commit's flush
        // carries these bytes along, a piece at a time; the final fdatasync finds little left.
        (void)::sync_file_range(fd, static_cast<off_t>(from), static_cast<off_t>(to - from),
                                SYNC_FILE_RANGE_WRITE);
      }
    }
    lock.lock();
    filling = false;
    if (!st.ok()) {
      // No more space ahead: records are appended past the end as without preallocation,
      // and a full disk fails them there, which fails the log.
      zero_stop_ = true;
    } else if (active) {
      zeroed_to_.store(to, std::memory_order_release);
    } else {
      spare_filled_ = to;
      if (to == max) spare_ready_ = true;
    }
    zero_cv_.notify_all();
  }
}

uint64_t MerkleLog::StopPreallocation() {
  {
    std::unique_lock<std::mutex> lock(zero_mu_);
    zero_stop_ = true;
    zero_cv_.notify_all();
    zero_cv_.wait(lock, [&] { return !zero_filling_ && !spare_filling_; });
  }
  return std::max(zeroed_to_.load(), segment_bytes_);
}

core::Result<std::unique_ptr<AuditLog>> OpenAuditLog(const std::string& dir,
                                                     const core::Clock& clock) {
  MANDATE_ASSIGN_OR_RETURN(std::unique_ptr<MerkleLog> log, MerkleLog::Open(dir, clock));
  return std::unique_ptr<AuditLog>(std::move(log));
}

}  // namespace mandate::audit
