// MerkleLog: the AuditLog implementation. Records are canonical JSON lines in segment files
// <dir>/audit-NNNNNN.jsonl; the records form an RFC 6962 Merkle tree (leaf = SHA-256(0x00 ||
// line)), each record also names the leaf hash of its predecessor ("prev") so a damaged
// record is located exactly, and signed checkpoints (C2SP tlog-checkpoint notes, signed with
// the log's own Ed25519 key in <dir>/log.key) are appended to <dir>/checkpoints every
// Options::checkpoint_records records or checkpoint_interval_micros, and at Close. Format:
// docs/formats/audit.md.
//
// Durability (group commit): a record is sequenced and chained when it is appended, under the
// log's mutex (the chain is serial: each line names its predecessor's leaf hash). An Append
// that finds no write in progress commits its own batch: it takes every record sequenced so
// far, writes them with one write() per segment touched and makes them durable with one
// fdatasync(), so a lone Append costs no thread hand-off. Appends arriving while a batch is
// being written queue up; a committer thread takes them all as the next batch the moment the
// current one is durable, and keeps doing so while Appends wait, so under load one fdatasync
// follows the other without waiting for any appender to be scheduled, and the records of the
// next batch are sequenced and hashed by their appenders while the current one syncs. A
// waiting Append sleeps on one of two wake words (batches alternate between them); a finished
// batch wakes all of its appenders with one futex call and they return without taking the
// mutex again. Records become durable in seq order, an Append returns only once its record
// is, and a failed write or sync fails every Append whose record it did not make durable (and
// the log, for good). Submit()ted records are queued: the next group commit writes and syncs
// them with its batch, or a background thread does within kAuditFlushIntervalMillis when no
// Append comes. AppendThen()ed records are awaited like a waiting Append's, but by a callback:
// the committer (never the caller) syncs them and runs their callbacks right after the
// fdatasync, before it takes the next batch. The same background thread as Submit's signs and
// writes checkpoints, off the appenders' path; a checkpoint only ever covers synced records.
//
// Preallocated space: the current segment is filled with NUL bytes (written and synced) ahead
// of the records by a preallocator thread, so a batch's fdatasync() overwrites blocks that
// are already allocated and of known size and flushes only their data (an append also has to
// commit the file's new size through the filesystem's journal: a 20 KB batch's write + sync
// took 203-284 us instead of 101-156 us here, docs/performance.md). Once the current segment
// is half full the preallocator fills a spare (audit.spare) to the segment size limit, which
// the next roll renames into place, so under load the current segment is never extended
// while it is being synced.
// Readers stop at the first NUL. A segment is cut back to its records when the log rolls to
// the next one and at Close, so only the newest segment of an open (or crashed) log ends in
// NUL bytes.
//
// Crash recovery: Open rehashes every record to rebuild the tree, checks the newest segment
// line by line and the newest checkpoint against the tree. A torn last line (bytes after the
// final newline, left by a crash mid-write) or a torn last checkpoint is truncated away and an
// "audit.truncated" record naming the dropped bytes is appended. Any other damage makes Open
// fail: the log is evidence and is never repaired silently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mandate/audit/audit_log.h"
#include "mandate/audit/checkpoint.h"
#include "mandate/audit/merkle.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::audit {

class MerkleLog final : public AuditLog {
 public:
  struct Options {
    // A segment rolls before a record would take it past this size. Tests make it small.
    size_t segment_bytes_max = core::kAuditSegmentBytesMax;
    // A checkpoint is written once this many records are durable past the last one, or once
    // checkpoint_interval_micros has passed with any record not yet covered, and at Close.
    uint64_t checkpoint_records = core::kAuditCheckpointRecordsDefault;
    int64_t checkpoint_interval_micros = core::kAuditCheckpointIntervalMicrosDefault;
    // The origin line of the checkpoints and the signing key's name, used only when the log
    // is created (it is then stored with the key); empty: "mandate.local/audit/<random id>".
    std::string origin;
    // Records sequenced but not yet taken by a batch; an append finding this many waits for
    // room (back-pressure). 1..kAuditQueueMax; tests make it small.
    size_t queue_records_max = core::kAuditQueueMax;
  };

  // Opens the log in `dir`, creating the directory (mode 0700), the first segment (mode 0600)
  // and the log's signing key (log.key, mode 0600; log.pub, the verifier key) if needed, and
  // takes an exclusive lock on <dir>/audit.lock for the log's lifetime. `clock` must outlive
  // the log.
  // Errors: kInternal when the directory or a file cannot be created, opened, read, locked
  // or synced, when the key is missing from a log that has records, or when the existing log
  // is damaged anywhere but in its torn last line or torn last checkpoint (run VerifyLog to
  // locate it); kConflict when another MerkleLog (in any process) holds it; kBadRequest when
  // options are invalid (origin not a note name, zero checkpoint_records or interval).
  static core::Result<std::unique_ptr<MerkleLog>> Open(const std::string& dir,
                                                          const core::Clock& clock);
  static core::Result<std::unique_ptr<MerkleLog>> Open(const std::string& dir,
                                                          const core::Clock& clock,
                                                          Options options);

  ~MerkleLog() override;
  MerkleLog(const MerkleLog&) = delete;
  MerkleLog& operator=(const MerkleLog&) = delete;

  core::Result<uint64_t> Append(const core::Json& record) override;
  core::Status Submit(const core::Json& record) override;
  // Does not block for the sync: see AuditLog::AppendThen. The record goes to the committer
  // (woken if idle), never synced by the caller itself; `on_durable` runs on the thread that
  // syncs it (the committer, or an appender or the flusher leading a batch that takes it)
  // right after the fdatasync, before that thread wakes the batch's waiting appenders.
  core::Result<uint64_t> AppendThen(const core::Json& record, DurableCallback on_durable) override;
  void Close() override;

  // How many fdatasync() calls committed batches so far (observability and tests: fewer
  // syncs than appends means group commit is batching).
  uint64_t SyncCount() const;
  // The size of the tree covered by the last checkpoint written (0 before the first).
  uint64_t CheckpointedSize() const;
  // Whether a preallocated spare segment is filled and synced, ready for the next roll
  // (observability and tests).
  bool SpareReady() const;
  // The verifier key text of the log's signing key (what an auditor pins).
  const std::string& VerifierKey() const { return verifier_key_; }

 private:
  struct Prepared;
  struct Queued {
    std::string line;
    Hash leaf;
  };
  struct PendingCheckpoint {
    uint64_t size = 0;
    Hash root{};
  };
  // An AppendThen whose record was not durable when it returned.
  struct OnDurable {
    uint64_t seq;
    DurableCallback fn;
  };
  // Callbacks whose record's fate is known, with it, to run without mu_.
  using Ready = std::vector<std::pair<DurableCallback, core::Status>>;
  // Which wake slots a finished batch must bump: bit i for wake_slots_[i].
  using WakeMask = unsigned;
  static constexpr size_t kWakeSlots = 4;
  static constexpr WakeMask kWakeAll = (WakeMask{1} << kWakeSlots) - 1;
  // Where the appenders of batch b sleep: wake_slots_[b % kWakeSlots].
  struct WakeSlot {
    std::atomic<uint32_t> word{0};
    // Set by the waker, which wakes one sleeper only; the first sleeper to wake clears it and
    // wakes the rest, so the committer does not spend its time between two fdatasyncs waking
    // (and being preempted by) a whole batch.
    std::atomic<bool> relay{false};
  };

  MerkleLog(std::string dir, const core::Clock& clock, Options options);
  // Reads log.key (and checks log.pub against it), or creates both when the log is new.
  core::Status LoadOrCreateKey(bool log_has_records);
  // Validates `record` and renders its members canonically (the one serialization of a
  // record); the validation errors of Append.
  core::Result<Prepared> Prepare(const core::Json& record) const;
  // Assigns the next seq, timestamps and chains the prepared record and queues its line.
  // Returns its seq. Errors: log failed or closed. Needs mu_ held.
  core::Result<uint64_t> Sequence(const Prepared& prepared, std::unique_lock<std::mutex>& lock);
  // Called with mu_ held and no leader active: takes every queued line as the next batch,
  // writes it (and fdatasyncs when `sync`, or when anything written earlier is still unsynced
  // and `sync`), releasing mu_ during the I/O, and publishes what became durable. Once mu_ is
  // released it first wakes `wake_first` (the previous batch's appenders, so the committer
  // does not hold up this batch to wake them). Returns the wake words this batch's appenders
  // sleep on, for the caller to pass to Wake once it releases mu_ (or to the next Lead).
  // `ready` (empty on entry) receives the AppendThen callbacks of what the batch made durable
  // or failed, for the caller to run with RunReady once it releases mu_.
  WakeMask Lead(std::unique_lock<std::mutex>& lock, bool sync, WakeMask wake_first, Ready* ready);
  // Moves the callbacks whose records are durable (all of them once the log failed, or with
  // `all`) into `ready`, each with its record's fate. Needs mu_ held.
  void TakeReadyLocked(Ready* ready, bool all = false);
  // Runs and clears `ready`. Without mu_.
  static void RunReady(Ready* ready);
  // Bumps the wake words in `mask`. Without mu_.
  void Wake(WakeMask mask);
  // Writes `lines` (each without '\n'), rolling segments; syncs before each roll and at the
  // end when `sync`. Sets how many leading lines a sync covered and counts the syncs. Leader
  // only. On failure truncates the segment to its last synced size.
  core::Status WriteLines(const std::vector<Queued>& lines, bool sync, size_t* synced,
                          uint64_t* sync_calls);
  core::Status RollSegment();
  // Writes `bytes` at segment_bytes_ of the current segment and advances it. Waits for the
  // preallocator only when the bytes reach past its space. Leader only.
  core::Status WriteAtEnd(std::string_view bytes);
  // The preallocator thread: fills the current segment with NUL bytes up to zero_target_.
  void PreallocLoop();
  // Stops the preallocator and waits for a fill in progress (it never touches the file
  // afterwards). Returns how far the current segment was filled.
  uint64_t StopPreallocation();
  // The committer thread: leads batch after batch while any Append waits for its record.
  void CommitLoop();
  void FlusherLoop();
  // Sets pending_checkpoint_ to the tree's current head when a checkpoint is due (or `force`
  // and any record is not covered). Needs mu_ held, no leader active and every written record
  // durable (then acc_ covers exactly [0, durable_)).
  void MaybeSnapshot(bool force);
  // Signs and appends pending checkpoint `cp` to the checkpoints file and syncs it. Flusher
  // only (or Close once the flusher has exited), without mu_.
  core::Status WriteCheckpoint(const PendingCheckpoint& cp);

  const std::string dir_;
  const core::Clock& clock_;
  const Options options_;

  // Files. Touched only by the thread that holds the lead (leading_ == true), or by Open and
  // Close when no one can.
  int dir_fd_ = -1;
  int lock_fd_ = -1;
  int segment_fd_ = -1;
  uint64_t segment_number_ = 0;
  uint64_t segment_bytes_ = 0;
  uint64_t synced_bytes_ = 0;  // of the current segment
  // The tree of every written record; touched only by the leader (like the files). When no
  // leader is active and written_ == durable_, it covers exactly the durable records.
  MerkleAccumulator acc_;

  // Checkpoints: the key, and the file, written only by the flusher thread.
  std::unique_ptr<NoteSigner> signer_;
  std::string verifier_key_;
  int checkpoints_fd_ = -1;

  mutable std::mutex mu_;
  // Invariant: next_seq_ is the seq of the next record and tip_ the hex leaf hash of the last
  // sequenced line (64 zeros before the first record). Guarded by mu_.
  uint64_t next_seq_ = 0;
  std::string tip_;
  std::vector<Queued> queued_;            // sequenced, not yet written; guarded by mu_
  std::vector<Queued> spare_;             // an empty vector keeping a batch's capacity; leader
  uint64_t written_ = 0;                  // records [0, written_) are written; guarded by mu_
  // Records [0, durable_) are synced. Written by the leader under mu_; read without mu_ by
  // waiting appenders (release/acquire). Invariant: durable_ <= written_, never decreases.
  std::atomic<uint64_t> durable_{0};
  bool leading_ = false;                  // a thread is writing; guarded by mu_
  uint64_t batches_ = 0;                  // batches taken by Lead so far; guarded by mu_
  // Records [0, awaited_) hold one whose Append waits for a batch it does not lead itself;
  // the committer leads while awaited_ > durable_. Guarded by mu_.
  uint64_t awaited_ = 0;
  // Batch b's waiting appenders sleep on wake_slots_[b % kWakeSlots], bumped once the batch
  // is durable. Invariant: a record sequenced while batches_ == b - 1 is taken by batch b
  // (Lead takes the whole queue); a sync that also covers records written by an earlier batch
  // without a sync bumps every slot, and so does a failure. The committer bumps batch b's
  // slot while batch b + 1 is being written, before batch b + 2 can exist, so with four slots
  // a bump never lands on the sleepers of a later batch.
  WakeSlot wake_slots_[kWakeSlots];
  // AppendThen callbacks of records not yet durable, in seq order (each is queued under mu_
  // right after its record is sequenced). Their records count in awaited_ like a waiting
  // Append's. Guarded by mu_.
  std::vector<OnDurable> on_durable_;
  std::condition_variable not_full_;      // appenders wait for queue room
  std::condition_variable committer_cv_;  // the committer waits for an awaited record
  std::condition_variable flusher_cv_;
  bool flusher_armed_ = false;            // guarded by mu_; the flusher is not idle-waiting
  bool closing_ = false;                  // guarded by mu_
  // Sticky after an I/O failure. Written under mu_ (with failure_); read without it by waiting
  // appenders.
  std::atomic<bool> failed_{false};
  std::string failure_;                   // guarded by mu_
  uint64_t syncs_ = 0;                    // guarded by mu_
  std::optional<PendingCheckpoint> pending_checkpoint_;  // guarded by mu_; for the flusher
  uint64_t checkpointed_ = 0;             // guarded by mu_; size of the last checkpoint
  int64_t checkpointed_at_micros_ = 0;    // guarded by mu_; steady time of the last snapshot
  std::thread committer_;
  std::thread flusher_;

  // Preallocation. Bytes [segment_bytes_, zeroed_to_) of the current segment are NUL and
  // synced (zeroed_to_ may equal segment_bytes_: no space ahead). Written under zero_mu_ by
  // the preallocator (raising it) and the leader (when it writes past it, or rolls); read
  // without the lock by the leader.
  std::atomic<uint64_t> zeroed_to_{0};
  mutable std::mutex zero_mu_;
  std::condition_variable zero_cv_;  // a fill finished, or there is one to do
  uint64_t zero_target_ = 0;         // fill up to here; guarded by zero_mu_
  // The preallocator is writing [zeroed_to_, ...) of segment_fd_, without zero_mu_: the
  // leader does not write there nor change segment_fd_ until it is done. Guarded by zero_mu_.
  bool zero_filling_ = false;
  bool zero_stop_ = false;  // guarded by zero_mu_
  // The spare: the next segment, made once the current one is half full (spare_wanted_) and
  // filled to segment_bytes_max in the background, so a roll renames it instead of starting
  // an empty segment. Guarded by zero_mu_.
  std::atomic<uint64_t> written_end_{0};  // segment_bytes_, published for the preallocator
  int spare_fd_ = -1;
  uint64_t spare_filled_ = 0;
  bool spare_ready_ = false;    // filled and synced
  bool spare_filling_ = false;  // the preallocator is writing it without zero_mu_
  bool spare_wanted_ = false;
  bool spare_asked_ = false;  // the leader asked for this segment's spare; leader only
  std::thread preallocator_;
  std::once_flag close_once_;
};

}  // namespace mandate::audit
