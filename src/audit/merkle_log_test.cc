#include "mandate/audit/merkle_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/audit_log.h"
#include "mandate/audit/checkpoint.h"
#include "mandate/audit/merkle.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"
#include "core/temp_dir_test_util.h"

namespace mandate::audit {
namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::Json;

constexpr char kZeros[] = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr char kSeg1[] = "audit-000001.jsonl";
// A checkpoint note with only the log's signature is 5 lines: origin, size, root, the blank
// line and the signature line. So note k (1-based) starts at line 5k - 4.
constexpr size_t NoteLine(size_t k) { return 5 * k - 4; }

using core::testing::TempDir;

Json Rec(const std::string& type, int64_t n) {
  Json j = Json::MakeObject();
  j.Set("type", type);
  j.Set("n", n);
  j.Set("note", "caf\xc3\xa9 \"quoted\" line\nbreak");
  return j;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The lines of a segment's bytes, up to the preallocated space (NUL bytes) of an open log.
std::vector<std::string> SplitLines(const std::string& all_bytes) {
  const std::string bytes = all_bytes.substr(0, all_bytes.find('\0'));
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t nl = bytes.find('\n', start);
    if (nl == std::string::npos) {
      lines.push_back(bytes.substr(start));
      break;
    }
    lines.push_back(bytes.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The RFC 6962 leaf hash of a line, in lowercase hex, computed independently of merkle.cc.
std::string HexLeaf(const std::string& line) {
  return core::Sha256Hex(std::string(1, '\0') + line);
}

// Sets "prev" of lines[from..] to the leaf hash of the line before, as a forger who rewrites
// the tail of a log would.
void Rechain(std::vector<std::string>& lines, size_t from) {
  for (size_t i = std::max<size_t>(from, 1); i < lines.size(); ++i) {
    auto j = Json::Parse(lines[i]);
    ASSERT_TRUE(j.ok());
    j->Set("prev", HexLeaf(lines[i - 1]));
    lines[i] = j->Canonical();
  }
}

// `line` with member `key` set to `value`, canonical again.
std::string WithMember(const std::string& line, const std::string& key, Json value) {
  auto j = Json::Parse(line);
  EXPECT_TRUE(j.ok());
  j->Set(key, std::move(value));
  return j->Canonical();
}

// Options that write a checkpoint every `every` records and at Close, never on a timer (the
// interval runs on the steady clock, which tests do not control).
MerkleLog::Options Every(uint64_t every, size_t segment_bytes_max = core::kAuditSegmentBytesMax) {
  MerkleLog::Options o;
  o.checkpoint_records = every;
  o.checkpoint_interval_micros = int64_t{3600} * 1000000;
  o.segment_bytes_max = segment_bytes_max;
  return o;
}
MerkleLog::Options Quiet() { return Every(1000000); }
// Quiet, with every record after the first of a segment rolling to the next: a failure to
// create a segment (its directory removed) then hits the very next write.
MerkleLog::Options EveryRecordRolls() {
  MerkleLog::Options o = Quiet();
  o.segment_bytes_max = 1;
  return o;
}

// Polls `done` every millisecond for at most 10 s (the background thread's work is a sign and
// an fdatasync, normally well under a millisecond).
bool WaitFor(const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Removes `dir` and everything in it, again while the log under test adds a segment meanwhile
// (ENOTEMPTY), until it is gone (at most WaitFor's 10 s).
bool RemoveUntilGone(const std::string& dir) {
  return WaitFor([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return !fs::exists(dir, ec);
  });
}

// Writes `count` records of type `type` into a fresh log in `dir` and closes it. After each
// multiple of options.checkpoint_records, waits for that checkpoint, so the checkpoints are
// exactly at those sizes and at `count`. Returns the verifier key.
std::string MakeLog(const std::string& dir, int count, MerkleLog::Options options = Quiet(),
                    const std::string& type = "test.record") {
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, options);
  EXPECT_TRUE(log.ok()) << log.error().message;
  if (!log.ok()) return "";
  for (int i = 0; i < count; ++i) {
    auto seq = (*log)->Append(Rec(type, i));
    EXPECT_TRUE(seq.ok()) << seq.error().message;
    EXPECT_EQ(seq.ok() ? *seq : 0, static_cast<uint64_t>(i));
    clock.AdvanceSeconds(1);
    const uint64_t n = static_cast<uint64_t>(i) + 1;
    if (n % options.checkpoint_records == 0) {
      EXPECT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == n; }))
          << "no checkpoint at " << n;
    }
  }
  (*log)->Close();
  EXPECT_EQ((*log)->CheckpointedSize(), static_cast<uint64_t>(count));
  return (*log)->VerifierKey();
}

VerifyReport MustVerify(const std::string& dir, const VerifyOptions& options = {}) {
  auto report = VerifyLog(dir, options);
  EXPECT_TRUE(report.ok()) << report.error().message;
  return report.ok() ? *report : VerifyReport{};
}

// The names of the segment files of `dir`, in order (consecutive from 1).
std::vector<std::string> SegmentNames(const std::string& dir) {
  std::vector<std::string> names;
  for (uint64_t s = 1; fs::exists(dir + "/" + internal::SegmentName(s)); ++s) {
    names.push_back(internal::SegmentName(s));
  }
  return names;
}

// Every record line of the log, across segments.
std::vector<std::string> AllLines(const std::string& dir) {
  std::vector<std::string> all;
  for (const std::string& name : SegmentNames(dir)) {
    auto lines = SplitLines(ReadFile(dir + "/" + name));
    all.insert(all.end(), lines.begin(), lines.end());
  }
  return all;
}

// The name of the newest segment file of `dir`.
std::string LastSegment(const std::string& dir) {
  std::vector<std::string> names = SegmentNames(dir);
  return names.empty() ? std::string() : names.back();
}

std::vector<Hash> LeafHashes(const std::vector<std::string>& lines, size_t n) {
  std::vector<Hash> out;
  for (size_t i = 0; i < n; ++i) out.push_back(LeafHash(lines[i]));
  return out;
}

std::vector<std::string> Notes(const std::string& dir) {
  std::string data = ReadFile(dir + "/checkpoints");
  auto spans = SplitNotes(data);
  EXPECT_TRUE(spans.ok()) << spans.error().message;
  std::vector<std::string> out;
  if (spans.ok()) {
    for (const NoteSpan& s : *spans) out.emplace_back(s.note);
  }
  return out;
}

std::string Concat(const std::vector<std::string>& notes) {
  std::string out;
  for (const auto& n : notes) out += n;
  return out;
}

Checkpoint MustOpenCheckpoint(const std::string& verifier_key, const std::string& note) {
  auto verifier = NoteVerifier::Parse(verifier_key);
  EXPECT_TRUE(verifier.ok());
  auto text = verifier->Open(note);
  EXPECT_TRUE(text.ok()) << text.error().message;
  auto cp = ParseCheckpointText(text.ok() ? *text : "");
  EXPECT_TRUE(cp.ok());
  return cp.ok() ? *cp : Checkpoint{};
}

NoteSigner LogSigner(const std::string& dir) {
  std::string text = ReadFile(dir + "/log.key");
  while (!text.empty() && text.back() == '\n') text.pop_back();
  auto signer = NoteSigner::Parse(text);
  EXPECT_TRUE(signer.ok()) << signer.error().message;
  return *std::move(signer);
}

std::string SignCheckpoint(const NoteSigner& signer, const std::string& origin, uint64_t size,
                           const Hash& root) {
  auto note = signer.Sign(CheckpointText({origin, size, root}));
  EXPECT_TRUE(note.ok());
  return note.ok() ? *note : "";
}

std::string OriginOf(const std::string& verifier_key) {
  return verifier_key.substr(0, verifier_key.find('+'));
}

// --- Writing ---------------------------------------------------------------------------

TEST(MerkleLog, AppendsDurableCanonicalChainedRecordsThatVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock(1767000000LL * 1000000 + 42);
  std::string verifier_key;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    verifier_key = (*log)->VerifierKey();
    for (int i = 0; i < 10; ++i) {
      auto seq = (*log)->Append(Rec("call.decided", i));
      ASSERT_TRUE(seq.ok()) << seq.error().message;
      EXPECT_EQ(*seq, static_cast<uint64_t>(i));
    }
  }  // the destructor closes, writing the final checkpoint
  std::string bytes = ReadFile(dir + "/" + kSeg1);
  std::vector<std::string> lines = SplitLines(bytes);
  ASSERT_EQ(lines.size(), 10u);
  ASSERT_EQ(bytes.back(), '\n');
  std::string prev = kZeros;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = Json::Parse(lines[i]);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(j->Canonical(), lines[i]);
    EXPECT_EQ(j->GetInt("seq", -1), static_cast<int64_t>(i));
    EXPECT_EQ(j->GetInt("ts", -1), 1767000000LL * 1000000 + 42);
    EXPECT_EQ(j->GetString("type"), "call.decided");
    EXPECT_EQ(j->GetString("prev"), prev);
    EXPECT_EQ(j->Find("hash"), nullptr) << "the hash-chain format's member is gone";
    prev = HexLeaf(lines[i]);
    EXPECT_EQ(prev, core::DigestHex(LeafHash(lines[i])));
  }
  EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);
  const auto rw = fs::perms::owner_read | fs::perms::owner_write;
  EXPECT_EQ(fs::status(dir + "/" + kSeg1).permissions() & fs::perms::all, rw);
  EXPECT_EQ(fs::status(dir + "/log.key").permissions() & fs::perms::all, rw);
  EXPECT_EQ(fs::status(dir + "/checkpoints").permissions() & fs::perms::all, rw);
  EXPECT_EQ(ReadFile(dir + "/log.pub"), verifier_key + "\n");
  EXPECT_EQ(ReadFile(dir + "/log.key").rfind("PRIVATE+KEY+" + OriginOf(verifier_key) + "+", 0), 0u);
  EXPECT_EQ(OriginOf(verifier_key).rfind("mandate.local/audit/", 0), 0u) << verifier_key;

  // The final checkpoint covers all ten records.
  std::vector<std::string> notes = Notes(dir);
  ASSERT_EQ(notes.size(), 1u);
  Checkpoint cp = MustOpenCheckpoint(verifier_key, notes[0]);
  EXPECT_EQ(cp.origin, OriginOf(verifier_key));
  EXPECT_EQ(cp.size, 10u);
  EXPECT_EQ(cp.root, RootOf(LeafHashes(lines, 10)));

  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 10u);
  EXPECT_FALSE(report.first_bad_seq.has_value());
  EXPECT_EQ(report.checkpoints, 1u);
  EXPECT_EQ(report.checkpointed_records, 10u);
  EXPECT_EQ(report.origin, OriginOf(verifier_key));

  auto tail = TailLog(dir, 3);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 3u);
  EXPECT_EQ((*tail)[0], lines[7]);
  EXPECT_EQ((*tail)[2], lines[9]);
  auto all = TailLog(dir, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, lines);
}

TEST(MerkleLog, SubmittedRecordsAreWrittenInOrderWithAppends) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 0)).ok());
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 1)).ok());
    // An Append returns after everything queued before it is durable, so it gets seq 2.
    auto seq = (*log)->Append(Rec("call.decided", 2));
    ASSERT_TRUE(seq.ok()) << seq.error().message;
    EXPECT_EQ(*seq, 2u);
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 3)).ok());
    EXPECT_EQ((*log)->Submit(Json(1)).error().code, core::ErrorCode::kBadRequest);
  }  // Close drains the submitted record and checkpoints it
  std::vector<std::string> lines = SplitLines(ReadFile(dir + "/" + kSeg1));
  ASSERT_EQ(lines.size(), 4u);
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.checkpointed_records, 4u);
}

TEST(MerkleLog, SubmitAfterCloseFails) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = MerkleLog::Open(tmp.Sub("audit"), clock);
  ASSERT_TRUE(log.ok());
  (*log)->Close();
  auto st = (*log)->Submit(Rec("call.completed", 0));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, core::ErrorCode::kInternal);
}

TEST(MerkleLog, ConcurrentAppendsFromSixteenThreadsGetConsecutiveSeqsAndVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  constexpr int kThreads = 16;
  constexpr int kPerThread = 100;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  uint64_t syncs = 0;
  {
    // Checkpoints every 97 records, racing with the appenders.
    auto log = MerkleLog::Open(dir, core::SystemClock::Instance(), Every(97));
    ASSERT_TRUE(log.ok()) << log.error().message;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          auto seq = (*log)->Append(Rec("thread." + std::to_string(t), i));
          if (seq.ok()) seqs[t].push_back(*seq);
        }
      });
    }
    for (auto& th : threads) th.join();
    syncs = (*log)->SyncCount();
  }
  std::vector<uint64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seqs[t].size(), static_cast<size_t>(kPerThread));
    // Each thread's own appends are ordered.
    EXPECT_TRUE(std::is_sorted(seqs[t].begin(), seqs[t].end()));
    all.insert(all.end(), seqs[t].begin(), seqs[t].end());
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  EXPECT_LE(syncs, all.size());
  std::printf("group commit: %zu appends in %llu syncs\n", all.size(),
              static_cast<unsigned long long>(syncs));
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, all.size());
  EXPECT_EQ(report.checkpointed_records, all.size());
  EXPECT_GE(report.checkpoints, 2u);
}

TEST(MerkleLog, MixedAppendsAndSubmitsAcrossSegmentsFromManyThreadsVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  constexpr int kThreads = 12;
  constexpr int kPerThread = 150;
  // Rolls every ~100 records, inside batches; checkpoints every 250 records.
  MerkleLog::Options small = Every(250, 16 * 1024);
  std::atomic<int> failures{0};
  {
    auto log = MerkleLog::Open(dir, core::SystemClock::Instance(), small);
    ASSERT_TRUE(log.ok()) << log.error().message;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          // Like a governed call: a durable decision, then a submitted completion.
          if (!(*log)->Append(Rec("call.decided", t * 1000 + i)).ok()) ++failures;
          if (!(*log)->Submit(Rec("call.completed", t * 1000 + i)).ok()) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, static_cast<uint64_t>(2 * kThreads * kPerThread));
  EXPECT_EQ(report.checkpointed_records, report.records);
  EXPECT_GT(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 3);
}

TEST(MerkleLog, ASubmittedRecordIsWrittenAndSyncedWithoutFurtherAppends) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_TRUE((*log)->Submit(Rec("call.completed", 0)).ok());
  // The background flusher writes and syncs it within kAuditFlushIntervalMillis.
  EXPECT_TRUE(WaitFor([&] { return (*log)->SyncCount() > 0; }));
  EXPECT_EQ((*log)->SyncCount(), 1u);
  EXPECT_EQ(SplitLines(ReadFile(dir + "/" + kSeg1)).size(), 1u);
  // And then it goes idle: no sync without new records.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * core::kAuditFlushIntervalMillis));
  EXPECT_EQ((*log)->SyncCount(), 1u);
}

// --- Checkpoints -------------------------------------------------------------------------

TEST(MerkleLog, CheckpointsAreWrittenEveryNRecordsAndAtClose) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Every(3));
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_EQ((*log)->CheckpointedSize(), 0u);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE((*log)->Append(Rec("x", i)).ok());
    const uint64_t n = static_cast<uint64_t>(i) + 1;
    if (n % 3 == 0) {
      ASSERT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == n; })) << n;
    } else {
      // Not yet due: the checkpoint still covers the last multiple of 3.
      EXPECT_EQ((*log)->CheckpointedSize(), n / 3 * 3);
    }
  }
  EXPECT_EQ(Notes(dir).size(), 2u);
  (*log)->Close();
  EXPECT_EQ((*log)->CheckpointedSize(), 7u);

  // Every checkpoint verifies and commits to the tree of the records at its size.
  std::vector<std::string> lines = AllLines(dir);
  std::vector<std::string> notes = Notes(dir);
  ASSERT_EQ(notes.size(), 3u);
  const uint64_t sizes[] = {3, 6, 7};
  for (size_t k = 0; k < notes.size(); ++k) {
    Checkpoint cp = MustOpenCheckpoint((*log)->VerifierKey(), notes[k]);
    EXPECT_EQ(cp.size, sizes[k]);
    EXPECT_EQ(cp.root, RootOf(LeafHashes(lines, sizes[k])));
  }
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.checkpoints, 3u);
  EXPECT_EQ(report.checkpointed_records, 7u);
}

TEST(MerkleLog, ACheckpointIsWrittenOnceTheIntervalPassesWithoutFurtherAppends) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  MerkleLog::Options o;
  o.checkpoint_records = 1000000;
  o.checkpoint_interval_micros = 200 * 1000;
  auto log = MerkleLog::Open(dir, clock, o);
  ASSERT_TRUE(log.ok()) << log.error().message;
  // Appends only (no Submit): nothing but the interval can trigger these checkpoints.
  ASSERT_TRUE((*log)->Append(Rec("x", 0)).ok());
  ASSERT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == 1; }))
      << "no checkpoint within 10 s of an append with a 200 ms interval";
  // Right after a checkpoint the interval starts again: the next record must still get one.
  ASSERT_TRUE((*log)->Append(Rec("x", 1)).ok());
  ASSERT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == 2; }))
      << "no checkpoint within 10 s of the second append";
  EXPECT_EQ(Notes(dir).size(), 2u);
  // Nothing new: no more checkpoints, even at Close.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*log)->Close();
  EXPECT_EQ(Notes(dir).size(), 2u);
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.checkpoints, 2u);
}

TEST(MerkleLog, ACheckpointIsWrittenOnceTheIntervalPassesForSubmittedRecords) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  MerkleLog::Options o;
  o.checkpoint_records = 1000000;
  o.checkpoint_interval_micros = 50 * 1000;
  auto log = MerkleLog::Open(dir, clock, o);
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_TRUE((*log)->Submit(Rec("x", 0)).ok());
  ASSERT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == 1; }));
  ASSERT_TRUE((*log)->Submit(Rec("x", 1)).ok());
  ASSERT_TRUE(WaitFor([&] { return (*log)->CheckpointedSize() == 2; }));
  (*log)->Close();
  EXPECT_TRUE(MustVerify(dir).ok);
}

TEST(MerkleLog, AnEmptyLogHasNoCheckpointAndReopeningWithoutRecordsAddsNone) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok());
  }
  EXPECT_TRUE(Notes(dir).empty());
  MakeLog(tmp.Sub("b"), 3);
  for (int i = 0; i < 2; ++i) {
    auto log = MerkleLog::Open(tmp.Sub("b"), clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    EXPECT_EQ((*log)->CheckpointedSize(), 3u);
  }
  EXPECT_EQ(Notes(tmp.Sub("b")).size(), 1u);
}

TEST(MerkleLog, OriginOptionNamesTheKeyAndTheCheckpoints) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MerkleLog::Options o = Quiet();
  o.origin = "example.com/audit/node-1";
  std::string key = MakeLog(dir, 2, o);
  EXPECT_EQ(OriginOf(key), "example.com/audit/node-1");
  Checkpoint cp = MustOpenCheckpoint(key, Notes(dir).at(0));
  EXPECT_EQ(cp.origin, "example.com/audit/node-1");
  // The origin is fixed when the log is created: reopening with another keeps the key.
  o.origin = "example.com/other";
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, o);
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_EQ((*log)->VerifierKey(), key);
}

TEST(MerkleLog, InvalidOptionsAreRefused) {
  TempDir tmp;
  core::FakeClock clock;
  MerkleLog::Options zero_records = Quiet();
  zero_records.checkpoint_records = 0;
  MerkleLog::Options zero_interval = Quiet();
  zero_interval.checkpoint_interval_micros = 0;
  MerkleLog::Options bad_origin = Quiet();
  bad_origin.origin = "has space";
  MerkleLog::Options zero_segment = Quiet();
  zero_segment.segment_bytes_max = 0;
  for (const auto& o : {zero_records, zero_interval, bad_origin, zero_segment}) {
    auto log = MerkleLog::Open(tmp.Sub("audit"), clock, o);
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code, ErrorCode::kBadRequest) << log.error().message;
  }
}

// --- Inclusion proofs --------------------------------------------------------------------

class Proofs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("audit");
    key_ = MakeLog(dir_, 13, Every(5));  // checkpoints at 5, 10 and 13
    lines_ = AllLines(dir_);
    ASSERT_EQ(lines_.size(), 13u);
    ASSERT_EQ(Notes(dir_).size(), 3u);
  }
  InclusionProofBundle MustProve(uint64_t seq) {
    auto bundle = ProveInclusion(dir_, seq);
    EXPECT_TRUE(bundle.ok()) << bundle.error().message;
    return bundle.ok() ? *bundle : InclusionProofBundle{};
  }
  void ExpectRefused(const InclusionProofBundle& bundle, const std::string& what,
                     ErrorCode code = ErrorCode::kUnauthenticated) {
    auto cp = VerifyInclusionBundle(bundle, key_);
    ASSERT_FALSE(cp.ok()) << what;
    EXPECT_EQ(cp.error().code, code) << what << ": " << cp.error().message;
  }

  TempDir tmp_;
  std::string dir_;
  std::string key_;
  std::vector<std::string> lines_;
};

TEST_F(Proofs, EveryRecordHasAProofAgainstTheNewestCheckpointThatVerifiesOffline) {
  const std::string newest = Notes(dir_).back();
  for (uint64_t seq = 0; seq < 13; ++seq) {
    InclusionProofBundle b = MustProve(seq);
    EXPECT_EQ(b.seq, seq);
    EXPECT_EQ(b.record, lines_[seq]);
    EXPECT_EQ(b.tree_size, 13u);
    EXPECT_EQ(b.checkpoint, newest);
    EXPECT_EQ(b.proof, InclusionProof(LeafHashes(lines_, 13), seq));
    auto cp = VerifyInclusionBundle(b, key_);
    ASSERT_TRUE(cp.ok()) << seq << ": " << cp.error().message;
    EXPECT_EQ(cp->size, 13u);
    EXPECT_EQ(cp->origin, OriginOf(key_));
    EXPECT_EQ(cp->root, RootOf(LeafHashes(lines_, 13)));
  }
}

TEST_F(Proofs, BundleSurvivesAJsonRoundTrip) {
  for (uint64_t seq : {0, 6, 12}) {
    InclusionProofBundle b = MustProve(seq);
    std::string text = b.ToJson().Canonical();
    auto parsed_json = Json::Parse(text);
    ASSERT_TRUE(parsed_json.ok());
    auto back = InclusionProofBundle::FromJson(*parsed_json);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->seq, b.seq);
    EXPECT_EQ(back->record, b.record);
    EXPECT_EQ(back->tree_size, b.tree_size);
    EXPECT_EQ(back->proof, b.proof);
    EXPECT_EQ(back->checkpoint, b.checkpoint);
    EXPECT_EQ(back->ToJson().Canonical(), text);
    EXPECT_TRUE(VerifyInclusionBundle(*back, key_).ok());
  }
}

TEST_F(Proofs, FromJsonRejectsMalformedBundles) {
  const Json good = MustProve(3).ToJson();
  auto with = [&](const std::string& key, Json value) {
    Json j = good;
    j.Set(key, std::move(value));
    return j;
  };
  auto without = [&](const std::string& key) {
    Json j = good;
    j.Erase(key);
    return j;
  };
  Json bad_hash = Json::MakeArray();
  bad_hash.Push("AAAA");
  Json not_string = Json::MakeArray();
  not_string.Push(1);
  Json too_long = Json::MakeArray();
  for (size_t i = 0; i <= kMerkleProofHashesMax; ++i)
    too_long.Push(good.Find("proof")->as_array()[0]);
  const std::vector<std::pair<std::string, Json>> cases = {
      {"not an object", Json::MakeArray()},
      {"no seq", without("seq")},
      {"negative seq", with("seq", -1)},
      {"string seq", with("seq", "3")},
      {"no tree_size", without("tree_size")},
      {"negative tree_size", with("tree_size", -5)},
      {"no record", without("record")},
      {"record not a string", with("record", Json::MakeObject())},
      {"no checkpoint", without("checkpoint")},
      {"no proof", without("proof")},
      {"proof not an array", with("proof", "x")},
      {"proof hash of 3 bytes", with("proof", bad_hash)},
      {"proof entry not a string", with("proof", not_string)},
      {"proof too long", with("proof", too_long)},
  };
  for (const auto& [what, j] : cases) {
    auto b = InclusionProofBundle::FromJson(j);
    ASSERT_FALSE(b.ok()) << what;
    EXPECT_EQ(b.error().code, ErrorCode::kBadRequest) << what;
  }
}

TEST_F(Proofs, VerifyRefusesAModifiedRecord) {
  InclusionProofBundle b = MustProve(4);
  b.record = WithMember(b.record, "type", "forged");
  ExpectRefused(b, "modified record");
  // A record that is not canonical, and one that is not JSON.
  InclusionProofBundle spaced = MustProve(4);
  spaced.record += " ";
  ExpectRefused(spaced, "non-canonical record");
  InclusionProofBundle garbage = MustProve(4);
  garbage.record = "not json";
  ExpectRefused(garbage, "garbage record");
}

TEST_F(Proofs, VerifyRefusesAWrongSeq) {
  InclusionProofBundle b = MustProve(4);
  b.seq = 5;
  ExpectRefused(b, "bundle seq differs from the record's");
  // The record of seq 5 with the path of seq 4.
  b.record = lines_[5];
  ExpectRefused(b, "path of another record");
  // The record renumbered to match a forged seq.
  InclusionProofBundle renumbered = MustProve(4);
  renumbered.seq = 5;
  renumbered.record = WithMember(renumbered.record, "seq", 5);
  ExpectRefused(renumbered, "renumbered record");
}

TEST_F(Proofs, VerifyRefusesATamperedPath) {
  InclusionProofBundle base = MustProve(6);
  ASSERT_FALSE(base.proof.empty());
  for (size_t k = 0; k < base.proof.size(); ++k) {
    InclusionProofBundle b = base;
    b.proof[k][k] ^= 0x80;
    ExpectRefused(b, "hash " + std::to_string(k) + " tampered");
  }
  InclusionProofBundle shorter = base;
  shorter.proof.pop_back();
  ExpectRefused(shorter, "hash dropped");
  InclusionProofBundle size = base;
  size.tree_size = 10;
  ExpectRefused(size, "tree_size differs from the checkpoint's");
}

TEST_F(Proofs, VerifyRefusesACheckpointOfAnotherKeyOrAWrongVerifierKey) {
  InclusionProofBundle b = MustProve(2);
  Checkpoint cp = MustOpenCheckpoint(key_, b.checkpoint);
  // The same checkpoint re-signed by another key of the same name.
  auto other = NoteSigner::Generate(cp.origin);
  ASSERT_TRUE(other.ok());
  InclusionProofBundle resigned = b;
  resigned.checkpoint = SignCheckpoint(*other, cp.origin, cp.size, cp.root);
  ExpectRefused(resigned, "checkpoint signed by another key");
  // The genuine bundle against the other key.
  auto refused = VerifyInclusionBundle(b, other->VerifierKeyText());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);
  // A malformed verifier key or checkpoint note.
  refused = VerifyInclusionBundle(b, "not a key");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kBadRequest);
  InclusionProofBundle cut = b;
  cut.checkpoint.pop_back();
  ExpectRefused(cut, "checkpoint note cut short", ErrorCode::kBadRequest);
}

TEST_F(Proofs, AProofAgainstAnOlderCheckpointStillVerifies) {
  // A bundle built when the log had 10 records: the older signed checkpoint and its path.
  InclusionProofBundle b = MustProve(7);
  b.checkpoint = Notes(dir_)[1];
  b.tree_size = 10;
  b.proof = InclusionProof(LeafHashes(lines_, 10), 7);
  auto cp = VerifyInclusionBundle(b, key_);
  ASSERT_TRUE(cp.ok()) << cp.error().message;
  EXPECT_EQ(cp->size, 10u);
}

TEST(MerkleLogProofs, ASeqBeyondTheNewestCheckpointIsNotFoundUntilTheNextOne) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 3);
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_TRUE((*log)->Append(Rec("later", 3)).ok());
  EXPECT_TRUE(ProveInclusion(dir, 2).ok());
  auto missing = ProveInclusion(dir, 3);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("retry"), std::string::npos) << missing.error().message;
  EXPECT_EQ(ProveInclusion(dir, 1000).error().code, ErrorCode::kNotFound);
  (*log)->Close();
  auto now = ProveInclusion(dir, 3);
  ASSERT_TRUE(now.ok()) << now.error().message;
  EXPECT_TRUE(VerifyInclusionBundle(*now, (*log)->VerifierKey()).ok());
}

TEST(MerkleLogProofs, ProveReportsAMissingDirectoryALogWithoutCheckpointsAndDamage) {
  TempDir tmp;
  EXPECT_EQ(ProveInclusion(tmp.Sub("nope"), 0).error().code, ErrorCode::kNotFound);

  std::string empty = tmp.Sub("empty");
  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(empty, clock, Quiet());
    ASSERT_TRUE(log.ok());
  }
  EXPECT_EQ(ProveInclusion(empty, 0).error().code, ErrorCode::kNotFound);

  std::string damaged = tmp.Sub("damaged");
  MakeLog(damaged, 4);
  std::string seg = damaged + "/" + kSeg1;
  std::vector<std::string> lines = SplitLines(ReadFile(seg));
  lines[1] = WithMember(lines[1], "type", "forged");
  WriteFile(seg, JoinLines(lines));
  auto proof = ProveInclusion(damaged, 0);
  ASSERT_FALSE(proof.ok());
  EXPECT_EQ(proof.error().code, ErrorCode::kInternal);
}

// --- Tampering --------------------------------------------------------------------------

// Ten records with checkpoints at 4, 8 and 10 (checkpoints lines 1, 6 and 11).
class Tamper : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("audit");
    key_ = MakeLog(dir_, 10, Every(4));
    seg_ = dir_ + "/" + kSeg1;
    lines_ = SplitLines(ReadFile(seg_));
    ASSERT_EQ(lines_.size(), 10u);
    notes_ = Notes(dir_);
    ASSERT_EQ(notes_.size(), 3u);
    VerifyReport r = MustVerify(dir_);
    ASSERT_TRUE(r.ok) << r.problem;
    ASSERT_EQ(r.checkpoints, 3u);
  }
  VerifyReport VerifyWith(const std::string& bytes) {
    WriteFile(seg_, bytes);
    return MustVerify(dir_);
  }
  VerifyReport VerifyWithNotes(const std::vector<std::string>& notes) {
    WriteFile(dir_ + "/checkpoints", Concat(notes));
    return MustVerify(dir_);
  }
  Checkpoint NoteCheckpoint(size_t k) { return MustOpenCheckpoint(key_, notes_[k]); }

  TempDir tmp_;
  std::string dir_;
  std::string key_;
  std::string seg_;
  std::vector<std::string> lines_;
  std::vector<std::string> notes_;
};

TEST_F(Tamper, EveryOneByteEditIsDetectedAtThatRecord) {
  // An edit that breaks the record's syntax, canonical form, seq or prev is found at the
  // record itself; one that leaves it well-formed (its content or ts) through the next
  // record's prev, which the report attributes to the edited record.
  const size_t target = 4;
  size_t well_formed_edits = 0;
  for (size_t pos = 0; pos < lines_[target].size(); ++pos) {
    std::vector<std::string> edited = lines_;
    edited[target][pos] = static_cast<char>(edited[target][pos] ^ 0x01);
    auto j = Json::Parse(edited[target]);
    const bool well_formed = j.ok() && j->is_object() && j->Canonical() == edited[target] &&
                             j->GetInt("seq", -1) == static_cast<int64_t>(target) &&
                             j->Find("ts") != nullptr && j->Find("ts")->is_int() &&
                             j->GetString("prev") == HexLeaf(lines_[target - 1]);
    well_formed_edits += well_formed;
    VerifyReport r = VerifyWith(JoinLines(edited));
    ASSERT_FALSE(r.ok) << "edit at byte " << pos << " went unnoticed";
    ASSERT_EQ(r.first_bad_seq, target) << "byte " << pos << ": " << r.problem;
    EXPECT_EQ(r.file, kSeg1) << "byte " << pos;
    EXPECT_EQ(r.line, target + 1) << "byte " << pos << ": " << r.problem;
    EXPECT_EQ(r.records, target) << "byte " << pos;
    if (well_formed) {
      EXPECT_NE(r.problem.find("record 4 was edited"), std::string::npos) << r.problem;
    }
  }
  EXPECT_GT(well_formed_edits, 0u);
}

TEST_F(Tamper, AnEditedPrevRightAfterACheckpointIsLocatedAtItsOwnRecord) {
  // Record 4's prev changed to other hex digits. Record 3 is vouched for by the verified
  // checkpoint of size 4, so the mismatch cannot be record 3's fault.
  std::vector<std::string> edited = lines_;
  std::string prev = HexLeaf(lines_[3]);
  prev[0] = prev[0] == 'a' ? 'b' : 'a';
  edited[4] = WithMember(edited[4], "prev", prev);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, kSeg1);
  EXPECT_EQ(r.line, 5u);
  EXPECT_EQ(r.first_bad_seq, 4u);
  EXPECT_EQ(r.records, 4u);
  EXPECT_EQ(r.checkpoints, 1u);
  EXPECT_NE(r.problem.find("prev"), std::string::npos) << r.problem;
}

TEST_F(Tamper, EditOfTheLastRecordIsCaughtByTheFinalCheckpoint) {
  // No later prev covers the last record: the checkpoint of size 10 does.
  std::vector<std::string> edited = lines_;
  edited[9] = WithMember(edited[9], "type", "forged");
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(3));
  EXPECT_EQ(r.first_bad_seq, 8u);  // the range the size-10 checkpoint could not vouch for
  EXPECT_EQ(r.records, 8u);
  EXPECT_EQ(r.checkpoints, 2u);
  EXPECT_NE(r.problem.find("do not match"), std::string::npos) << r.problem;
}

TEST_F(Tamper, EditWithEveryLaterPrevRecomputedIsCaughtByTheCheckpointRoot) {
  // The forger fixes up every prev after the edit to the end: the chain checks, the tree
  // does not. The first checkpoint covering the edit (size 4) reports it.
  std::vector<std::string> edited = lines_;
  edited[3] = WithMember(edited[3], "type", "forged");
  Rechain(edited, 4);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(1));
  EXPECT_EQ(r.first_bad_seq, 0u);
  EXPECT_EQ(r.records, 0u);
  EXPECT_EQ(r.checkpoints, 0u);
}

TEST_F(Tamper, RewriteAfterRecordKIsCaughtByTheCheckpointCoveringK) {
  for (size_t k = 4; k < 10; ++k) {
    std::vector<std::string> edited = lines_;
    edited[k] = WithMember(edited[k], "n", 1000);
    Rechain(edited, k + 1);
    VerifyReport r = VerifyWith(JoinLines(edited));
    ASSERT_FALSE(r.ok) << k;
    EXPECT_EQ(r.file, "checkpoints") << k;
    // Records 4..7 are covered by the checkpoint of size 8 (note 2), 8..9 by size 10.
    EXPECT_EQ(r.line, k < 8 ? NoteLine(2) : NoteLine(3)) << k;
    EXPECT_EQ(r.first_bad_seq, k < 8 ? 4u : 8u) << k;
    EXPECT_EQ(r.checkpointed_records, k < 8 ? 4u : 8u) << k;
  }
}

TEST_F(Tamper, DeletedLineIsDetected) {
  std::vector<std::string> edited = lines_;
  edited.erase(edited.begin() + 6);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 6u);
  EXPECT_EQ(r.file, kSeg1);
  EXPECT_EQ(r.line, 7u);
  EXPECT_NE(r.problem.find("seq gap"), std::string::npos) << r.problem;
}

TEST_F(Tamper, DeletedFirstLineIsDetected) {
  std::vector<std::string> edited(lines_.begin() + 1, lines_.end());
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 0u);
  EXPECT_EQ(r.line, 1u);
}

TEST_F(Tamper, DeletedLineWithLaterRecordsRenumberedAndRechainedIsCaughtByACheckpoint) {
  std::vector<std::string> edited = lines_;
  edited.erase(edited.begin() + 6);
  for (size_t i = 6; i < edited.size(); ++i) {
    edited[i] = WithMember(edited[i], "seq", static_cast<int64_t>(i));
  }
  Rechain(edited, 6);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(2));
  EXPECT_EQ(r.first_bad_seq, 4u);
}

TEST_F(Tamper, SwappedLinesAreDetected) {
  std::vector<std::string> edited = lines_;
  std::swap(edited[2], edited[3]);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 2u);
  EXPECT_EQ(r.file, kSeg1);
  EXPECT_EQ(r.line, 3u);
}

TEST_F(Tamper, SwappedLinesWithSeqsAndPrevsFixedUpAreCaughtByACheckpoint) {
  std::vector<std::string> edited = lines_;
  std::swap(edited[5], edited[6]);
  edited[5] = WithMember(edited[5], "seq", 5);
  edited[6] = WithMember(edited[6], "seq", 6);
  Rechain(edited, 5);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(2));
  EXPECT_EQ(r.first_bad_seq, 4u);
}

TEST_F(Tamper, InsertedLinesAreDetected) {
  {  // a replayed copy of an earlier record
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, lines_[1]);
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 5u);
    EXPECT_EQ(r.line, 6u);
    EXPECT_NE(r.problem.find("out of order"), std::string::npos) << r.problem;
  }
  {  // a fabricated record with a wrong prev: indistinguishable, line by line, from an edit
     // of the record before it, which the report names (docs/formats/audit.md, rule 6),
     // pointing at the inserted line
    Json fake = Rec("call.decided", 99);
    fake.Set("seq", 5);
    fake.Set("ts", 1);
    fake.Set("prev", std::string(kZeros));
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, fake.Canonical());
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 4u);
    EXPECT_EQ(r.line, 5u);
    EXPECT_NE(r.problem.find("audit-000001.jsonl:6"), std::string::npos) << r.problem;
  }
  {  // a fabricated record chained to its predecessor: the genuine seq 5 after it is found
    Json fake = Rec("call.decided", 99);
    fake.Set("seq", 5);
    fake.Set("ts", 1);
    fake.Set("prev", HexLeaf(lines_[4]));
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, fake.Canonical());
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 6u);
    EXPECT_EQ(r.line, 7u);
    EXPECT_NE(r.problem.find("out of order"), std::string::npos) << r.problem;
  }
  {  // ... and with every later record renumbered and rechained: the checkpoint of size 8
    Json fake = Rec("call.decided", 99);
    fake.Set("seq", 5);
    fake.Set("ts", 1);
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, fake.Canonical());
    for (size_t i = 5; i < edited.size(); ++i) {
      edited[i] = WithMember(edited[i], "seq", static_cast<int64_t>(i));
    }
    Rechain(edited, 5);
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.line, NoteLine(2));
    EXPECT_EQ(r.first_bad_seq, 4u);
  }
  {  // garbage and a blank line
    for (std::string junk :
         {std::string("hello"), std::string(""), std::string("{}"), std::string("[1,2]")}) {
      std::vector<std::string> edited = lines_;
      edited.insert(edited.begin() + 8, junk);
      VerifyReport r = VerifyWith(JoinLines(edited));
      EXPECT_FALSE(r.ok) << junk;
      EXPECT_EQ(r.first_bad_seq, 8u) << junk;
      EXPECT_EQ(r.line, 9u) << junk;
    }
  }
}

TEST_F(Tamper, TruncationMidLineIsDetected) {
  std::string bytes = JoinLines(lines_);
  size_t cut = bytes.size() - lines_[9].size() / 2;  // half of the last line
  VerifyReport r = VerifyWith(bytes.substr(0, cut));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 9u);
  EXPECT_EQ(r.file, kSeg1);
  EXPECT_EQ(r.line, 10u);
  EXPECT_NE(r.problem.find("truncated"), std::string::npos) << r.problem;

  std::string mid = JoinLines(lines_).substr(
      0, JoinLines(std::vector<std::string>(lines_.begin(), lines_.begin() + 3)).size() + 10);
  r = VerifyWith(mid);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 3u);
  EXPECT_EQ(r.line, 4u);
}

TEST_F(Tamper, TruncationAtALineBoundaryIsCaughtByACheckpointCoveringMore) {
  // Records removed from the end leave a well-formed, shorter chain; the checkpoints that
  // cover the removed records say so.
  for (size_t keep : {9u, 8u, 7u, 3u, 0u}) {
    VerifyReport r =
        VerifyWith(JoinLines(std::vector<std::string>(lines_.begin(), lines_.begin() + keep)));
    ASSERT_FALSE(r.ok) << keep;
    EXPECT_EQ(r.file, "checkpoints") << keep;
    const size_t first_uncovered_note = keep >= 8 ? 3 : keep >= 4 ? 2 : 1;
    EXPECT_EQ(r.line, NoteLine(first_uncovered_note)) << keep;
    EXPECT_EQ(r.first_bad_seq, keep) << keep;
    EXPECT_EQ(r.records, keep) << keep;
    EXPECT_NE(r.problem.find("covers more records"), std::string::npos) << r.problem;
  }
  // The whole segment removed.
  fs::remove(seg_);
  VerifyReport r = MustVerify(dir_);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.first_bad_seq, 0u);
}

TEST_F(Tamper, NonCanonicalWhitespaceIsDetected) {
  std::vector<std::string> edited = lines_;
  edited[9] = edited[9] + " ";  // the last line: no later prev would catch it
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 9u);
  EXPECT_EQ(r.line, 10u);
}

TEST_F(Tamper, ACheckpointReplacedByOneSignedWithAnotherKeyIsDetectedAtItsLine) {
  const Checkpoint cp = NoteCheckpoint(1);
  // The same checkpoint, another key of the same name (a replaced log key).
  auto other = NoteSigner::Generate(cp.origin);
  ASSERT_TRUE(other.ok());
  std::vector<std::string> notes = notes_;
  notes[1] = SignCheckpoint(*other, cp.origin, cp.size, cp.root);
  VerifyReport r = VerifyWithNotes(notes);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(2));
  EXPECT_NE(r.problem.find("does not verify"), std::string::npos) << r.problem;
}

TEST_F(Tamper, AForgedRootResignedWithAnotherKeyIsDetectedAtItsLine) {
  const Checkpoint cp = NoteCheckpoint(1);
  std::vector<std::string> forged_lines = lines_;
  forged_lines[5] = WithMember(forged_lines[5], "type", "forged");
  Rechain(forged_lines, 6);
  const Hash forged_root = RootOf(LeafHashes(forged_lines, cp.size));
  for (std::string name : {cp.origin, std::string("attacker.example/log")}) {
    auto attacker = NoteSigner::Generate(name);
    ASSERT_TRUE(attacker.ok());
    std::vector<std::string> notes = notes_;
    notes[1] = SignCheckpoint(*attacker, name, cp.size, forged_root);
    WriteFile(seg_, JoinLines(forged_lines));
    VerifyReport r = VerifyWithNotes(notes);
    EXPECT_FALSE(r.ok) << name;
    EXPECT_EQ(r.file, "checkpoints") << name;
    EXPECT_EQ(r.line, NoteLine(2)) << name;
  }
}

TEST_F(Tamper, AForgedRootSignedWithTheLogsOwnKeyIsCaughtByTheRecords) {
  // Whoever holds log.key can sign anything; the records still contradict the root.
  std::vector<std::string> notes = notes_;
  notes[1] = SignCheckpoint(LogSigner(dir_), OriginOf(key_), 8, core::Sha256("forged"));
  VerifyReport r = VerifyWithNotes(notes);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(2));
  EXPECT_EQ(r.first_bad_seq, 4u);
  EXPECT_EQ(r.checkpoints, 1u);
}

TEST_F(Tamper, ReorderedCheckpointsAreDetected) {
  std::vector<std::string> notes = notes_;
  std::swap(notes[1], notes[2]);  // sizes 4, 10, 8
  VerifyReport r = VerifyWithNotes(notes);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(3));
  EXPECT_NE(r.problem.find("smaller"), std::string::npos) << r.problem;
}

TEST_F(Tamper, GarbageInTheCheckpointsFileIsDetectedAtItsLine) {
  {  // a line of garbage between two notes joins the next note's text: its signature fails
    VerifyReport r = VerifyWithNotes({notes_[0], "garbage\n" + notes_[1], notes_[2]});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.line, NoteLine(2));
  }
  {  // a blank line: a note without text
    VerifyReport r = VerifyWithNotes({notes_[0], "\n" + notes_[1], notes_[2]});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.line, NoteLine(2));
  }
  {  // a note cut short at the end (a torn write)
    VerifyReport r = VerifyWithNotes({notes_[0], notes_[1], notes_[2].substr(0, 30)});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.line, NoteLine(3));
    EXPECT_NE(r.problem.find("truncated"), std::string::npos) << r.problem;
  }
}

TEST_F(Tamper, DeletedLogPubVerifiesWithThePinnedKey) {
  fs::remove(dir_ + "/log.pub");
  auto no_key = VerifyLog(dir_);
  ASSERT_FALSE(no_key.ok());
  EXPECT_EQ(no_key.error().code, ErrorCode::kBadRequest);
  EXPECT_NE(no_key.error().message.find("log.pub"), std::string::npos) << no_key.error().message;
  VerifyReport r = MustVerify(dir_, {key_});
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 10u);
  EXPECT_EQ(r.checkpoints, 3u);
  EXPECT_EQ(r.checkpointed_records, 10u);
  EXPECT_EQ(r.origin, OriginOf(key_));
  // A malformed pinned key is an error, not a report.
  auto bad = VerifyLog(dir_, {"not+a+key"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kBadRequest);
}

TEST_F(Tamper, AWrongKeyFailsEveryCheckpoint) {
  for (std::string name : {OriginOf(key_), std::string("other.example/log")}) {
    auto other = NoteSigner::Generate(name);
    ASSERT_TRUE(other.ok());
    VerifyReport r = MustVerify(dir_, {other->VerifierKeyText()});
    EXPECT_FALSE(r.ok) << name;
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.line, NoteLine(1));
    EXPECT_EQ(r.checkpoints, 0u);
    auto verifier = NoteVerifier::Parse(other->VerifierKeyText());
    ASSERT_TRUE(verifier.ok());
    for (const std::string& note : notes_) {
      auto opened = verifier->Open(note);
      ASSERT_FALSE(opened.ok());
      EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
    }
  }
}

TEST_F(Tamper, ARewrittenLogWithItsKeyReplacedVerifiesOnlyAgainstItsOwnLogPub) {
  // The attacker rewrites record 2 onwards, re-signs every checkpoint with a new key of the
  // same name and replaces log.key and log.pub. Only a key pinned by the auditor catches it.
  std::vector<std::string> edited = lines_;
  edited[2] = WithMember(edited[2], "type", "forged");
  Rechain(edited, 3);
  WriteFile(seg_, JoinLines(edited));
  auto attacker = NoteSigner::Generate(OriginOf(key_));
  ASSERT_TRUE(attacker.ok());
  std::vector<std::string> notes;
  for (uint64_t size : {4, 8, 10}) {
    notes.push_back(
        SignCheckpoint(*attacker, OriginOf(key_), size, RootOf(LeafHashes(edited, size))));
  }
  WriteFile(dir_ + "/checkpoints", Concat(notes));
  WriteFile(dir_ + "/log.pub", attacker->VerifierKeyText() + "\n");
  WriteFile(dir_ + "/log.key", attacker->PrivateKeyText() + "\n");
  EXPECT_TRUE(MustVerify(dir_).ok);
  VerifyReport pinned = MustVerify(dir_, {key_});
  EXPECT_FALSE(pinned.ok);
  EXPECT_EQ(pinned.file, "checkpoints");
  EXPECT_EQ(pinned.line, NoteLine(1));
}

// --- Splicing two logs --------------------------------------------------------------------

class Splice : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = tmp_.Sub("a");
    b_ = tmp_.Sub("b");
    // Same record sizes, so both roll their segments at the same records.
    key_a_ = MakeLog(a_, 40, Every(16, 1024), "a.record");
    key_b_ = MakeLog(b_, 40, Every(16, 1024), "b.record");
    ASSERT_TRUE(fs::exists(a_ + "/audit-000003.jsonl"));
    ASSERT_EQ(ReadFile(a_ + "/audit-000001.jsonl").size(),
              ReadFile(b_ + "/audit-000001.jsonl").size());
    ASSERT_TRUE(MustVerify(a_).ok);
  }
  TempDir tmp_;
  std::string a_, b_, key_a_, key_b_;
};

TEST_F(Splice, ASegmentOfAnotherLogIsDetectedWhereItJoins) {
  const size_t seg1_records = SplitLines(ReadFile(a_ + "/audit-000001.jsonl")).size();
  fs::copy_file(b_ + "/audit-000002.jsonl", a_ + "/audit-000002.jsonl",
                fs::copy_options::overwrite_existing);
  VerifyReport r = MustVerify(a_);
  EXPECT_FALSE(r.ok);
  // Line by line, a foreign segment 2 looks like an edit of the last record before it: the
  // report names that record and the first line that does not chain to it.
  EXPECT_EQ(r.file, "audit-000001.jsonl");
  EXPECT_EQ(r.line, seg1_records);
  EXPECT_EQ(r.first_bad_seq, seg1_records - 1);
  EXPECT_NE(r.problem.find("audit-000002.jsonl:1"), std::string::npos) << r.problem;
}

TEST_F(Splice, AnotherLogsRecordsAppendedAreDetectedWhereTheyStart) {
  const std::string last = LastSegment(a_);
  std::vector<std::string> last_a = SplitLines(ReadFile(a_ + "/" + last));
  WriteFile(a_ + "/" + last, JoinLines(last_a) + JoinLines(AllLines(b_)));
  VerifyReport r = MustVerify(a_);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, last);
  EXPECT_EQ(r.line, last_a.size() + 1);
  EXPECT_EQ(r.first_bad_seq, 40u);
  EXPECT_NE(r.problem.find("out of order"), std::string::npos) << r.problem;
}

TEST_F(Splice, AnotherLogsCheckpointsAreDetectedAtTheFirst) {
  fs::copy_file(b_ + "/checkpoints", a_ + "/checkpoints", fs::copy_options::overwrite_existing);
  VerifyReport r = MustVerify(a_);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.file, "checkpoints");
  EXPECT_EQ(r.line, NoteLine(1));
}

TEST_F(Splice, RecordsRechainedOntoTheEndAreReportedAsNotVouchedFor) {
  // B's records renumbered and chained onto A's end form a valid chain the checkpoints do
  // not reach: the report says so (records > checkpointed_records) rather than failing.
  std::vector<std::string> all = AllLines(a_);
  std::vector<std::string> extra = AllLines(b_);
  for (size_t i = 0; i < extra.size(); ++i) {
    all.push_back(WithMember(extra[i], "seq", static_cast<int64_t>(40 + i)));
  }
  Rechain(all, 40);
  std::vector<std::string> tail(all.begin() + 40, all.end());
  const std::string last = a_ + "/" + LastSegment(a_);
  WriteFile(last, ReadFile(last) + JoinLines(tail));
  VerifyReport r = MustVerify(a_);
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 80u);
  EXPECT_EQ(r.checkpointed_records, 40u);
}

TEST(MerkleLog, TamperingAcrossSegmentsIsDetected) {
  MerkleLog::Options small = Every(1000, 1024);
  {
    TempDir tmp;
    std::string dir = tmp.Sub("audit");
    MakeLog(dir, 40, small);
    ASSERT_TRUE(fs::exists(dir + "/audit-000003.jsonl"));
    VerifyReport ok = MustVerify(dir);
    EXPECT_TRUE(ok.ok) << ok.problem;
    EXPECT_EQ(ok.records, 40u);
    // Every segment stays within the limit.
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".jsonl") {
        EXPECT_LE(fs::file_size(e.path()), 1024u);
      }
    }
    // Drop the last line of segment 2 (a truncation at a line boundary).
    std::string seg2 = dir + "/audit-000002.jsonl";
    std::vector<std::string> lines = SplitLines(ReadFile(seg2));
    auto last = Json::Parse(lines.back());
    ASSERT_TRUE(last.ok());
    uint64_t dropped = static_cast<uint64_t>(last->GetInt("seq", -1));
    lines.pop_back();
    WriteFile(seg2, JoinLines(lines));
    VerifyReport r = MustVerify(dir);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, dropped);
    EXPECT_EQ(r.file, "audit-000003.jsonl");
    EXPECT_EQ(r.line, 1u);
  }
  {
    TempDir tmp;
    std::string dir = tmp.Sub("audit");
    MakeLog(dir, 40, small);
    fs::remove(dir + "/audit-000002.jsonl");
    VerifyReport r = MustVerify(dir);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "audit-000002.jsonl");
    EXPECT_NE(r.problem.find("missing segment"), std::string::npos) << r.problem;
    auto first2 = SplitLines(ReadFile(dir + "/audit-000001.jsonl"));
    EXPECT_EQ(r.first_bad_seq, first2.size());
  }
  {  // the newest segment removed whole: the checkpoint covers more than is left
    TempDir tmp;
    std::string dir = tmp.Sub("audit");
    MakeLog(dir, 40, small);
    const std::string last = dir + "/" + LastSegment(dir);
    const size_t before = AllLines(dir).size() - SplitLines(ReadFile(last)).size();
    fs::remove(last);
    VerifyReport r = MustVerify(dir);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "checkpoints");
    EXPECT_EQ(r.first_bad_seq, before);
  }
}

// --- The documented example ---------------------------------------------------------------

// The example of docs/formats/audit.md ("Records"): the first two lines of a log and the root
// of their tree. The lines are rebuilt here through MerkleLog with FakeClocks (the second
// record 1.5 ms after the first), so a change of the format fails this test; its message
// prints what the doc should then show.
constexpr char kExampleLine0[] =
    R"({"files":3,"prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"ts":1767000000000000,"type":"policy.loaded"})";
constexpr char kExampleLine1[] =
    R"({"agent":"triage-bot","human":"alice","prev":"e91b623d7cfa7371a49f5e10bad69e2844e0f06ac4f4afcb6a8296118fad15cd","seq":1,"sid":"ses_01jq","ts":1767000000001500,"type":"session.started"})";
// Recomputed independently with Python's hashlib:
//   leaf = lambda d: sha256(b"\x00" + d).digest()
//   b64encode(sha256(b"\x01" + leaf(line0) + leaf(line1)).digest())
constexpr char kExampleRootBase64[] = "Axw9qFmMIv7TvvmghgPoXpbsTr9soiQmHAaQeG1ttVw=";

// A fixed example key (seed = SHA-256("mandate audit example key"), name example.com/audit),
// so the checkpoint of the example is reproducible too (Ed25519 signatures are
// deterministic). Never use it for a real log. The verifier key and the signature below were
// reproduced independently with Python's `cryptography` Ed25519 and hashlib:
//   seed = sha256(b"mandate audit example key").digest(); pub = <its Ed25519 public key>
//   hash = sha256(b"example.com/audit\n\x01" + pub).digest()[:4]
//   b64encode(hash + Ed25519PrivateKey.from_private_bytes(seed).sign(text))
constexpr char kExampleOrigin[] = "example.com/audit";
constexpr char kExamplePub[] =
    "example.com/audit+40077a1e+AXELEDvQ7bVfYUteADLxrFi3VpfKrbQN3W5TW/XfeGLN";
constexpr char kExampleCheckpoint[] =
    "example.com/audit\n"
    "2\n"
    "Axw9qFmMIv7TvvmghgPoXpbsTr9soiQmHAaQeG1ttVw=\n"
    "\n"
    "\xE2\x80\x94 example.com/audit "
    "QAd6Hkm6WFuJOU4Tgc3ii9tIKa8Kk9iSMcH4UENxc0FWw5mRzDgsAu793Rk6Kt6x66VqhVE6L6dlzTrMoNSbvE+MVgw="
    "\n";

std::string ExamplePrivateKey() {
  core::Sha256Digest seed = core::Sha256("mandate audit example key");
  std::string seed_bytes(reinterpret_cast<const char*>(seed.data()), seed.size());
  auto pub = core::Ed25519PublicKey(seed_bytes);
  EXPECT_TRUE(pub.ok());
  // The key hash of golang.org/x/mod/sumdb/note: SHA-256(name || "\n" || 0x01 || key)[0:4].
  core::Sha256Digest h = core::Sha256(std::string(kExampleOrigin) + "\n\x01" + *pub);
  return "PRIVATE+KEY+" + std::string(kExampleOrigin) + "+" +
         core::HexEncode(std::string(reinterpret_cast<const char*>(h.data()), 4)) + "+" +
         core::Base64Encode("\x01" + seed_bytes);
}

TEST(MerkleLog, DocumentedExampleVerifies) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  fs::create_directory(dir);
  WriteFile(dir + "/log.key", ExamplePrivateKey() + "\n");
  {
    core::FakeClock clock(1767000000LL * 1000000);
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    Json loaded = Json::MakeObject();
    loaded.Set("type", "policy.loaded");
    loaded.Set("files", 3);
    ASSERT_TRUE((*log)->Append(loaded).ok());
  }
  {
    core::FakeClock clock(1767000000LL * 1000000 + 1500);
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    Json started = Json::MakeObject();
    started.Set("type", "session.started");
    started.Set("sid", "ses_01jq");
    started.Set("agent", "triage-bot");
    started.Set("human", "alice");
    ASSERT_TRUE((*log)->Append(started).ok());
  }
  const std::vector<std::string> lines = SplitLines(ReadFile(dir + "/" + kSeg1));
  ASSERT_EQ(lines.size(), 2u);
  const std::string pub = ReadFile(dir + "/log.pub");
  const std::vector<std::string> notes = Notes(dir);
  ASSERT_EQ(notes.size(), 2u);  // one per Close: sizes 1 and 2
  const Hash root = RootOf(LeafHashes(lines, 2));
  const std::string root_b64 =
      core::Base64Encode(std::string(reinterpret_cast<const char*>(root.data()), root.size()));
  const std::string generated = lines[0] + "\n" + lines[1] + "\nroot: " + root_b64 +
                                "\nlog.pub: " + pub + "newest checkpoint:\n" + notes[1];
  EXPECT_EQ(lines[0], kExampleLine0) << "docs/formats/audit.md should show:\n" << generated;
  EXPECT_EQ(lines[1], kExampleLine1) << "docs/formats/audit.md should show:\n" << generated;
  EXPECT_EQ(root_b64, kExampleRootBase64) << "docs/formats/audit.md should show:\n" << generated;
  EXPECT_EQ(pub, std::string(kExamplePub) + "\n") << generated;
  EXPECT_EQ(notes[1], kExampleCheckpoint) << generated;
  // The second record's prev, recomputed here: SHA-256(0x00 || first line), hex.
  EXPECT_EQ(Json::Parse(lines[1])->GetString("prev"), HexLeaf(lines[0]));

  // The documented bytes verify on their own, with the pinned key and with log.pub.
  const std::string doc = tmp.Sub("doc");
  fs::create_directory(doc);
  WriteFile(doc + "/" + kSeg1, std::string(kExampleLine0) + "\n" + kExampleLine1 + "\n");
  WriteFile(doc + "/checkpoints", kExampleCheckpoint);
  VerifyReport pinned = MustVerify(doc, {kExamplePub});
  EXPECT_TRUE(pinned.ok) << pinned.problem;
  EXPECT_EQ(pinned.records, 2u);
  EXPECT_EQ(pinned.checkpoints, 1u);
  EXPECT_EQ(pinned.checkpointed_records, 2u);
  EXPECT_EQ(pinned.origin, kExampleOrigin);
  EXPECT_EQ(MustOpenCheckpoint(kExamplePub, kExampleCheckpoint).root, root);
  WriteFile(doc + "/log.pub", std::string(kExamplePub) + "\n");
  VerifyReport with_pub = MustVerify(doc);
  EXPECT_TRUE(with_pub.ok) << with_pub.problem;
  // And the log continues it.
  WriteFile(doc + "/log.key", ExamplePrivateKey() + "\n");
  core::FakeClock clock;
  auto log = MerkleLog::Open(doc, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  auto seq = (*log)->Append(Rec("x", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 2u);
  (*log)->Close();
  EXPECT_TRUE(MustVerify(doc, {kExamplePub}).ok);
}

TEST(MerkleLog, DocumentedCheckpointExampleIsAWellFormedSignedNote) {
  // The checkpoint shown in docs/formats/audit.md ("Checkpoints"); its key is not published,
  // so only its form is checked here.
  const std::string note =
      "mandate.local/audit/fd6f55368b3105c8\n"
      "4\n"
      "hWPpPayngshwa5H4l5Ck67oUERrYWSF7aftPBW8t/U0=\n"
      "\n"
      "\xE2\x80\x94 mandate.local/audit/fd6f55368b3105c8 "
      "sZOaYIn5PbQHlumdlnny+JwUyMKdO9Otf96od65BiAvi3qwKT/"
      "cu13M84rbcEOcPYXOpcbhxclFk5k6yj+ez5amF3gM=\n";
  auto spans = SplitNotes(note);
  ASSERT_TRUE(spans.ok()) << spans.error().message;
  ASSERT_EQ(spans->size(), 1u);
  auto cp = ParseCheckpointText(note.substr(0, note.find("\n\n") + 1));
  ASSERT_TRUE(cp.ok()) << cp.error().message;
  EXPECT_EQ(cp->origin, "mandate.local/audit/fd6f55368b3105c8");
  EXPECT_EQ(cp->size, 4u);
  std::optional<std::string> sig = core::Base64Decode(
      "sZOaYIn5PbQHlumdlnny+JwUyMKdO9Otf96od65BiAvi3qwKT/"
      "cu13M84rbcEOcPYXOpcbhxclFk5k6yj+ez5amF3gM=");
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(sig->size(), 4u + 64u);  // key hash and Ed25519 signature
}

// --- Lifecycle --------------------------------------------------------------------------

TEST(MerkleLog, ReopenContinuesTheChainWithTheSameKey) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  std::string key = MakeLog(dir, 5);
  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    EXPECT_EQ((*log)->VerifierKey(), key);
    EXPECT_EQ((*log)->CheckpointedSize(), 5u);
    for (uint64_t i = 5; i < 8; ++i) {
      auto seq = (*log)->Append(Rec("again", 0));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, i);
    }
  }
  VerifyReport r = MustVerify(dir, {key});
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 8u);
  EXPECT_EQ(r.checkpoints, 2u);
  EXPECT_EQ(r.checkpointed_records, 8u);
}

TEST(MerkleLog, ReopenContinuesAcrossAnEmptyNewestSegment) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MerkleLog::Options small = Every(1000, 1024);
  MakeLog(dir, 20, small);
  // A crash right after rolling leaves an empty newest segment.
  const size_t segments = SegmentNames(dir).size();
  ASSERT_GE(segments, 2u);
  WriteFile(dir + "/" + internal::SegmentName(segments + 1), "");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, small);
  ASSERT_TRUE(log.ok()) << log.error().message;
  auto seq = (*log)->Append(Rec("after", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 20u);
  (*log)->Close();
  EXPECT_TRUE(MustVerify(dir).ok);
}

TEST(MerkleLog, ReopenAfterACrashBeforeTheFirstCheckpointCheckpointsTheRecords) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  WriteFile(dir + "/checkpoints", "");  // as if the process died before the first one
  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    EXPECT_EQ((*log)->CheckpointedSize(), 0u);
  }
  VerifyReport r = MustVerify(dir);
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.checkpointed_records, 5u);
}

TEST(MerkleLog, TornTailIsTruncatedAndTheTruncationIsRecorded) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  std::string seg = dir + "/" + kSeg1;
  std::string intact = ReadFile(seg);
  std::string torn = R"({"n":5,"note":"half a rec)";
  WriteFile(seg, intact + torn);
  VerifyReport before = MustVerify(dir);
  EXPECT_FALSE(before.ok);
  EXPECT_EQ(before.first_bad_seq, 5u);
  EXPECT_EQ(before.line, 6u);

  core::FakeClock clock;
  {
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_TRUE(log.ok()) << log.error().message;
    auto seq = (*log)->Append(Rec("after.recovery", 0));
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, 6u);  // seq 5 is the truncation record
  }
  std::vector<std::string> lines = SplitLines(ReadFile(seg));
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(ReadFile(seg).substr(0, intact.size()), intact);
  auto note = Json::Parse(lines[5]);
  ASSERT_TRUE(note.ok());
  EXPECT_EQ(note->GetString("type"), "audit.truncated");
  EXPECT_EQ(note->GetInt("seq", -1), 5);
  EXPECT_EQ(note->GetString("file"), kSeg1);
  EXPECT_EQ(note->GetInt("offset", -1), static_cast<int64_t>(intact.size()));
  EXPECT_EQ(note->GetInt("dropped_bytes", -1), static_cast<int64_t>(torn.size()));
  EXPECT_EQ(note->GetString("dropped_sha256"), core::Sha256Hex(torn));
  VerifyReport after = MustVerify(dir);
  EXPECT_TRUE(after.ok) << after.problem;
  EXPECT_EQ(after.records, 7u);
  EXPECT_EQ(after.checkpointed_records, 7u);
}

TEST(MerkleLog, TornLastCheckpointIsTruncatedOnReopenAndTheTruncationIsRecorded) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  std::string key = MakeLog(dir, 5);
  const std::string intact = ReadFile(dir + "/checkpoints");
  ASSERT_EQ(Notes(dir).size(), 1u);
  // Half of the next checkpoint's note, as a crash in the middle of its write leaves it.
  const std::string next = SignCheckpoint(LogSigner(dir), OriginOf(key), 6, core::Sha256("x"));
  for (size_t cut : {size_t{10}, next.find("\n\n") + 2, next.size() - 5}) {
    const std::string torn = next.substr(0, cut);
    TempDir copy;
    std::string d = copy.Sub("audit");
    fs::copy(dir, d);
    WriteFile(d + "/checkpoints", intact + torn);
    VerifyReport before = MustVerify(d);
    EXPECT_FALSE(before.ok) << cut;
    EXPECT_EQ(before.file, "checkpoints") << cut;
    EXPECT_EQ(before.line, NoteLine(2)) << cut;

    core::FakeClock clock;
    {
      auto log = MerkleLog::Open(d, clock, Quiet());
      ASSERT_TRUE(log.ok()) << cut << ": " << log.error().message;
      EXPECT_EQ((*log)->CheckpointedSize(), 5u);
      EXPECT_EQ(ReadFile(d + "/checkpoints"), intact) << cut;
    }
    std::vector<std::string> lines = SplitLines(ReadFile(d + "/" + kSeg1));
    ASSERT_EQ(lines.size(), 6u);
    auto note = Json::Parse(lines[5]);
    ASSERT_TRUE(note.ok());
    EXPECT_EQ(note->GetString("type"), "audit.truncated");
    EXPECT_EQ(note->GetString("file"), "checkpoints");
    EXPECT_EQ(note->GetInt("offset", -1), static_cast<int64_t>(intact.size()));
    EXPECT_EQ(note->GetInt("dropped_bytes", -1), static_cast<int64_t>(torn.size()));
    EXPECT_EQ(note->GetString("dropped_sha256"), core::Sha256Hex(torn));
    // Close checkpointed the truncation record.
    VerifyReport after = MustVerify(d);
    EXPECT_TRUE(after.ok) << cut << ": " << after.problem;
    EXPECT_EQ(after.checkpoints, 2u);
    EXPECT_EQ(after.checkpointed_records, 6u);
  }
}

TEST(MerkleLog, GarbageInTheMiddleOfTheCheckpointsFileFailsOpen) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 12, Every(4));  // checkpoints at 4, 8, 12
  const std::vector<std::string> notes = Notes(dir);
  ASSERT_EQ(notes.size(), 3u);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a garbage line before the newest note", notes[0] + notes[1] + "garbage\n" + notes[2]},
      {"a blank line between older notes", notes[0] + "\n" + notes[1] + notes[2]},
      {"a note without signature between older notes",
       notes[0] + "garbage\n\n" + notes[1] + notes[2]},
      {"binary garbage between older notes",
       notes[0] + std::string("\x00\xff\x01", 3) + "\n\n" + notes[1] + notes[2]},
  };
  for (const auto& [what, data] : cases) {
    TempDir copy;
    std::string d = copy.Sub("audit");
    fs::copy(dir, d);
    WriteFile(d + "/checkpoints", data);
    core::FakeClock clock;
    auto log = MerkleLog::Open(d, clock, Quiet());
    ASSERT_FALSE(log.ok()) << what;
    EXPECT_EQ(log.error().code, ErrorCode::kInternal) << what;
    // Nothing was repaired.
    EXPECT_EQ(ReadFile(d + "/checkpoints"), data) << what;
    EXPECT_FALSE(MustVerify(d).ok) << what;
  }
}

TEST(MerkleLog, GarbageLineMergedIntoAnOlderCheckpointFailsOpen) {
  // A line of garbage right before an older note becomes part of that note's text. Open
  // fails only if it looks at more than the newest note.
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 12, Every(4));
  const std::vector<std::string> notes = Notes(dir);
  ASSERT_EQ(notes.size(), 3u);
  const std::string data = notes[0] + "garbage\n" + notes[1] + notes[2];
  WriteFile(dir + "/checkpoints", data);
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  EXPECT_FALSE(log.ok()) << "Open accepted a checkpoints file with garbage at line 6";
  if (!log.ok()) {
    EXPECT_EQ(log.error().code, ErrorCode::kInternal);
  }
}

TEST(MerkleLog, RefusesToOpenALogDamagedBeforeItsTail) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  std::string seg = dir + "/" + kSeg1;
  std::vector<std::string> lines = SplitLines(ReadFile(seg));
  {  // an edit that breaks line 3 itself
    std::vector<std::string> edited = lines;
    edited[2] = "{" + edited[2];
    WriteFile(seg, JoinLines(edited));
    core::FakeClock clock;
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code, ErrorCode::kInternal);
    EXPECT_NE(log.error().message.find("line 3"), std::string::npos) << log.error().message;
    // Nothing was repaired: the evidence is intact.
    EXPECT_EQ(SplitLines(ReadFile(seg)), edited);
  }
  {  // a well-formed edit of line 3: line 4's prev no longer matches
    std::vector<std::string> edited = lines;
    edited[2] = WithMember(edited[2], "type", "forged");
    WriteFile(seg, JoinLines(edited));
    core::FakeClock clock;
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code, ErrorCode::kInternal);
    EXPECT_NE(log.error().message.find("line 4"), std::string::npos) << log.error().message;
    EXPECT_EQ(SplitLines(ReadFile(seg)), edited);
  }
}

TEST(MerkleLog, RefusesToOpenWhenTheNewestCheckpointContradictsTheRecords) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  std::string key = MakeLog(dir, 6, Every(3));  // checkpoints at 3 and 6
  const std::string checkpoints = ReadFile(dir + "/checkpoints");
  const std::vector<std::string> lines = SplitLines(ReadFile(dir + "/" + kSeg1));
  auto expect_refused = [&](const std::string& what, const std::string& needle) {
    core::FakeClock clock;
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_FALSE(log.ok()) << what;
    EXPECT_EQ(log.error().code, ErrorCode::kInternal) << what;
    EXPECT_NE(log.error().message.find(needle), std::string::npos)
        << what << ": " << log.error().message;
    WriteFile(dir + "/checkpoints", checkpoints);
    WriteFile(dir + "/" + kSeg1, JoinLines(lines));
  };
  const NoteSigner own = LogSigner(dir);
  // A newest checkpoint with another root, signed with the log's own key.
  WriteFile(dir + "/checkpoints",
            checkpoints + SignCheckpoint(own, OriginOf(key), 6, core::Sha256("forged")));
  expect_refused("forged root", "do not match");
  // The last record rewritten (its own checkpoint catches it, no later prev can).
  std::vector<std::string> edited = lines;
  edited[5] = WithMember(edited[5], "type", "forged");
  WriteFile(dir + "/" + kSeg1, JoinLines(edited));
  expect_refused("last record edited", "do not match");
  // Records removed from the end.
  WriteFile(dir + "/" + kSeg1,
            JoinLines(std::vector<std::string>(lines.begin(), lines.begin() + 5)));
  expect_refused("last record removed", "covers 6 records but the log holds 5");
  // A newest checkpoint signed with another key of the same name.
  auto other = NoteSigner::Generate(OriginOf(key));
  ASSERT_TRUE(other.ok());
  WriteFile(dir + "/checkpoints",
            checkpoints + SignCheckpoint(*other, OriginOf(key), 6, RootOf(LeafHashes(lines, 6))));
  expect_refused("checkpoint of another key", "does not verify");
  // After all that, the untouched log still opens.
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  EXPECT_TRUE(log.ok()) << log.error().message;
}

TEST(MerkleLog, RefusesToOpenALogWithRecordsWhoseKeyIsMissingOrMalformed) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 3);
  const std::string key_text = ReadFile(dir + "/log.key");
  fs::remove(dir + "/log.key");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);
  EXPECT_NE(log.error().message.find("log.key"), std::string::npos) << log.error().message;
  EXPECT_FALSE(fs::exists(dir + "/log.key")) << "a new key must not be made for old records";

  WriteFile(dir + "/log.key", "PRIVATE+KEY+garbage\n");
  log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);

  WriteFile(dir + "/log.key", key_text);
  log = MerkleLog::Open(dir, clock, Quiet());
  EXPECT_TRUE(log.ok()) << log.error().message;
}

TEST(MerkleLog, RefusesToOpenWhenLogPubDoesNotMatchLogKey) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  std::string key = MakeLog(dir, 3);
  auto other = NoteSigner::Generate(OriginOf(key));
  ASSERT_TRUE(other.ok());
  WriteFile(dir + "/log.pub", other->VerifierKeyText() + "\n");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);
  EXPECT_NE(log.error().message.find("log.pub"), std::string::npos) << log.error().message;
}

TEST(MerkleLog, AMissingLogPubIsRecreatedFromTheKey) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  std::string key = MakeLog(dir, 3);
  fs::remove(dir + "/log.pub");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_EQ((*log)->VerifierKey(), key);
  EXPECT_EQ(ReadFile(dir + "/log.pub"), key + "\n");
}

TEST(MerkleLog, SecondWriterIsRefused) {
  TempDir tmp;
  core::FakeClock clock;
  auto first = MerkleLog::Open(tmp.path(), clock);
  ASSERT_TRUE(first.ok());
  auto second = MerkleLog::Open(tmp.path(), clock);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kConflict);
  (*first)->Close();
  auto third = MerkleLog::Open(tmp.path(), clock);
  EXPECT_TRUE(third.ok());
}

TEST(MerkleLog, UnwritableDirectoryFailsClosed) {
  TempDir tmp;
  core::FakeClock clock;
  WriteFile(tmp.Sub("file"), "x");
  auto log = MerkleLog::Open(tmp.Sub("file") + "/audit", clock);  // parent is a file
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);

  if (::geteuid() != 0) {  // root ignores permission bits
    std::string ro = tmp.Sub("readonly");
    fs::create_directory(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
    auto log2 = MerkleLog::Open(ro, clock);
    ASSERT_FALSE(log2.ok());
    EXPECT_EQ(log2.error().code, ErrorCode::kInternal);
  }
}

TEST(MerkleLog, WriteFailureFailsThisAndEveryLaterAppend) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, EveryRecordRolls());
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_TRUE((*log)->Append(Rec("first", 0)).ok());
  // The directory disappears under the log: the next segment cannot be created.
  fs::remove_all(dir);
  auto second = (*log)->Append(Rec("second", 1));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kInternal);
  // The log stays failed even once the directory is back: no gap may ever appear.
  fs::create_directory(dir);
  auto third = (*log)->Append(Rec("third", 2));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::kInternal);
  EXPECT_NE(third.error().message.find("failed earlier"), std::string::npos);
  EXPECT_FALSE((*log)->Submit(Rec("fourth", 3)).ok());
  (*log)->Close();  // a failed log writes no checkpoint
  EXPECT_EQ((*log)->CheckpointedSize(), 0u);
}

TEST(MerkleLog, AFailureUnderConcurrentAppendsFailsEveryUnsyncedAppendAndNoneHangs) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  auto log = MerkleLog::Open(dir, core::SystemClock::Instance(), EveryRecordRolls());
  ASSERT_TRUE(log.ok()) << log.error().message;
  constexpr int kThreads = 16;
  std::atomic<int> acknowledged{0};
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  std::vector<std::vector<std::string>> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Appends until the log fails: whichever batches are in flight or queued then, their
      // Appends must all return.
      for (int i = 0; i < 100000; ++i) {
        auto seq = (*log)->Append(Rec("thread." + std::to_string(t), i));
        if (!seq.ok()) {
          EXPECT_EQ(seq.error().code, ErrorCode::kInternal);
          errors[t].push_back(seq.error().message);
          return;
        }
        seqs[t].push_back(*seq);
        ++acknowledged;
      }
    });
  }
  EXPECT_TRUE(WaitFor([&] { return acknowledged.load() >= 200; })) << acknowledged.load();
  // The next roll cannot create its segment.
  EXPECT_TRUE(RemoveUntilGone(dir));
  // A hung Append hangs this join (and the test times out).
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(errors[t].size(), 1u) << "thread " << t << " did not see the failure";
    EXPECT_TRUE(std::is_sorted(seqs[t].begin(), seqs[t].end()));
    all.insert(all.end(), seqs[t].begin(), seqs[t].end());
  }
  // Durability is a prefix: every acknowledged seq is below every failed one, so the
  // acknowledged seqs are exactly 0..n-1 (no record after a failed one was acknowledged).
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  auto later = (*log)->Append(Rec("later", 0));
  ASSERT_FALSE(later.ok());
  EXPECT_NE(later.error().message.find("failed earlier"), std::string::npos);
  (*log)->Close();
}

TEST(MerkleLog, RefusesOversizeAndMalformedRecords) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = MerkleLog::Open(tmp.path(), clock);
  ASSERT_TRUE(log.ok());
  MerkleLog& l = **log;

  Json big = Json::MakeObject();
  big.Set("blob", std::string(core::kAuditRecordBytesMax, 'a'));
  auto r = l.Append(big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPayloadTooLarge);

  // The largest record allowed fits, framing included, and verifies.
  Json max = Json::MakeObject();
  const size_t overhead = std::string(R"({"blob":""})").size();
  max.Set("blob",
          std::string(core::kAuditRecordBytesMax - core::kAuditFramingBytesMax - overhead, 'b'));
  ASSERT_EQ(max.Canonical().size() + core::kAuditFramingBytesMax, core::kAuditRecordBytesMax);
  auto ok = l.Append(max);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(*ok, 0u);

  EXPECT_EQ(l.Append(Json("string")).error().code, ErrorCode::kBadRequest);
  for (const char* reserved : {"seq", "ts", "prev"}) {
    Json rec = Rec("x", 1);
    rec.Set(reserved, 7);
    EXPECT_EQ(l.Append(rec).error().code, ErrorCode::kBadRequest) << reserved;
  }
  Json bad_utf8 = Json::MakeObject();
  bad_utf8.Set("s", std::string("\xff\xfe"));
  EXPECT_EQ(l.Append(bad_utf8).error().code, ErrorCode::kBadRequest);

  // Refusals consume no seq.
  auto next = l.Append(Rec("x", 2));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next, 1u);
  l.Close();
  auto closed = l.Append(Rec("x", 3));
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.error().code, ErrorCode::kInternal);
  VerifyReport report = MustVerify(tmp.path());
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 2u);
  EXPECT_EQ(report.checkpointed_records, 2u);
}

TEST(MerkleLog, RefusesRecordsTheVerifierCouldNotReadBack) {
  // What Prepare checks on the record's own members as it serializes them (a duplicate or a
  // non-UTF-8 key), and what the checked walk finds below them (a duplicate key, nesting too
  // deep for the verifier's parser): each refused before the record gets a seq.
  TempDir tmp;
  core::FakeClock clock;
  auto log = MerkleLog::Open(tmp.path(), clock);
  ASSERT_TRUE(log.ok());
  MerkleLog& l = **log;
  Json deep = Json::MakeArray();  // a member's value at depth 2: kJsonDepthMax levels in all
  for (size_t i = 2; i < core::kJsonDepthMax; ++i) deep = Json(Json::Array{deep});
  const Json unverifiable[] = {
      Json(Json::Object{{"a", Json(1)}, {"b", Json(2)}, {"a", Json(3)}}),
      Json(Json::Object{{std::string("k\xc3"), Json(1)}}),
      Json(Json::Object{{"d", Json(Json::Array{deep})}}),
      Json(Json::Object{{"n", Json(Json::Object{{"x", Json(1)}, {"x", Json(1)}})}}),
  };
  for (const Json& rec : unverifiable) {
    auto refused = l.Append(rec);
    ASSERT_FALSE(refused.ok()) << rec.Dump();
    EXPECT_EQ(refused.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(refused.error().message.find("cannot be stored verifiably"), std::string::npos)
        << refused.error().message;
  }
  auto at_limit = l.Append(Json(Json::Object{{"d", deep}}));
  ASSERT_TRUE(at_limit.ok()) << at_limit.error().message;
  EXPECT_EQ(*at_limit, 0u);  // the refusals took no seq
  l.Close();
  VerifyReport report = MustVerify(tmp.path());
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 1u);
}

TEST(AuditLog, OpenAuditLogReturnsTheInterface) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = OpenAuditLog(tmp.path(), clock);
  ASSERT_TRUE(log.ok());
  auto seq = (*log)->Append(Rec("x", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 0u);
  (*log)->Close();
  EXPECT_TRUE(MustVerify(tmp.path()).ok);
}

TEST(AuditLog, VerifyAndTailReportMissingDirectoryKeyAndLimits) {
  TempDir tmp;
  auto v = VerifyLog(tmp.Sub("nope"));
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, ErrorCode::kNotFound);
  auto t = TailLog(tmp.Sub("nope"), 1);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kNotFound);
  auto big = TailLog(tmp.path(), core::kAuditTailLinesMax + 1);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::kBadRequest);
  // A directory without log.pub cannot be verified without a pinned key.
  auto no_key = VerifyLog(tmp.path());
  ASSERT_FALSE(no_key.ok());
  EXPECT_EQ(no_key.error().code, ErrorCode::kBadRequest);
  auto signer = NoteSigner::Generate("example.com/audit");
  ASSERT_TRUE(signer.ok());
  auto empty = VerifyLog(tmp.path(), {signer->VerifierKeyText()});
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(empty->ok);
  EXPECT_EQ(empty->records, 0u);
  EXPECT_EQ(empty->checkpoints, 0u);
}

// --- Preallocated space ------------------------------------------------------------------

// The records' bytes of a segment file and what follows them (up to the first NUL).
struct SegmentBytes {
  std::string records;
  std::string rest;
};
SegmentBytes SplitAtNul(const std::string& bytes) {
  const size_t nul = std::min(bytes.find('\0'), bytes.size());
  return SegmentBytes{bytes.substr(0, nul), bytes.substr(nul)};
}

// Copies an open log's files as a crash would leave them (the copy holds no lock).
std::string CopyAsCrashed(const std::string& dir, TempDir& into) {
  std::string copy = into.Sub("crashed");
  fs::copy(dir, copy);
  return copy;
}

TEST(MerkleLog, AnOpenLogsNewestSegmentEndsInNulBytesThatReadersSkipAndCloseCutsOff) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Append(Rec("live", i)).ok());
  const std::string seg = dir + "/" + kSeg1;
  // The preallocator fills ahead in the background, at most kAuditPreallocAheadBytes plus a
  // chunk past the records.
  ASSERT_TRUE(WaitFor([&] { return fs::file_size(seg) >= core::kAuditPreallocAheadBytes; }));
  SegmentBytes live = SplitAtNul(ReadFile(seg));
  EXPECT_EQ(SplitLines(live.records).size(), 3u);
  EXPECT_EQ(live.records.back(), '\n');
  EXPECT_EQ(live.rest.find_first_not_of('\0'), std::string::npos) << "only NUL after records";
  EXPECT_LE(live.records.size() + live.rest.size(),
            live.records.size() + core::kAuditPreallocAheadBytes + core::kAuditPreallocChunkBytes);
  // Readers see the three records and nothing else.
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 3u);
  auto tail = TailLog(dir, 10);
  ASSERT_TRUE(tail.ok()) << tail.error().message;
  EXPECT_EQ(*tail, SplitLines(live.records));
  (*log)->Close();
  // A closed log's segment is its records, exactly.
  const std::string closed = ReadFile(seg);
  EXPECT_EQ(closed.find('\0'), std::string::npos);
  EXPECT_EQ(closed.substr(0, live.records.size()), live.records);
  EXPECT_EQ(SplitLines(closed).size(), 3u);
  EXPECT_TRUE(MustVerify(dir).ok);
}

TEST(MerkleLog, RolledSegmentsAreCutBackToTheirRecordsAndSpaceStaysWithinTheSegmentLimit) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  constexpr size_t kSegmentMax = 2000;
  auto log = MerkleLog::Open(dir, clock, Every(1000000, kSegmentMax));
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < 40; ++i) ASSERT_TRUE((*log)->Append(Rec("roll", i)).ok());
  const std::string newest = LastSegment(dir);
  ASSERT_NE(newest, kSeg1);
  for (const std::string& name : SegmentNames(dir)) {
    const std::string bytes = ReadFile(dir + "/" + name);
    EXPECT_LE(bytes.size(), kSegmentMax) << name;
    if (name == newest) continue;
    EXPECT_EQ(bytes.find('\0'), std::string::npos) << name << " is sealed but holds NUL bytes";
    EXPECT_EQ(bytes.back(), '\n') << name;
  }
  EXPECT_EQ(AllLines(dir).size(), 40u);
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 40u);
}

TEST(MerkleLog, ASpareSegmentIsFilledOnceHalfFullAndRenamedIntoPlaceOnRoll) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  // A spare left by a crash is not trusted: Open removes it.
  fs::create_directories(dir);
  WriteFile(dir + "/audit.spare", "left over");
  core::FakeClock clock;
  constexpr size_t kSegmentMax = 64 * 1024;
  auto log = MerkleLog::Open(dir, clock, Every(1000000, kSegmentMax));
  ASSERT_TRUE(log.ok()) << log.error().message;
  EXPECT_FALSE(fs::exists(dir + "/audit.spare"));
  int n = 0;
  while (fs::file_size(dir + "/" + kSeg1) == 0 ||
         SplitAtNul(ReadFile(dir + "/" + kSeg1)).records.size() < kSegmentMax / 2 + 1) {
    ASSERT_TRUE((*log)->Append(Rec("fill", n++)).ok());
  }
  // Half full: the spare is made, to the segment size limit, all NUL.
  ASSERT_TRUE(WaitFor([&] { return (*log)->SpareReady(); }));
  EXPECT_EQ(fs::file_size(dir + "/audit.spare"), kSegmentMax);
  EXPECT_EQ(ReadFile(dir + "/audit.spare").find_first_not_of('\0'), std::string::npos);
  while (LastSegment(dir) == kSeg1) ASSERT_TRUE((*log)->Append(Rec("fill", n++)).ok());
  // The roll renamed it: segment 2 has its full size already, records then NUL bytes.
  const std::string seg2 = dir + "/" + LastSegment(dir);
  EXPECT_EQ(fs::file_size(seg2), kSegmentMax);
  EXPECT_EQ(SplitLines(ReadFile(seg2)).size(), 1u);
  EXPECT_FALSE((*log)->SpareReady()) << "used";
  EXPECT_EQ(ReadFile(dir + "/" + kSeg1).find('\0'), std::string::npos) << "sealed segment";
  (*log)->Close();
  EXPECT_FALSE(fs::exists(dir + "/audit.spare")) << "Close removes the spare";
  EXPECT_EQ(ReadFile(seg2).find('\0'), std::string::npos);
  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, static_cast<uint64_t>(n));
}

TEST(MerkleLog, ACrashedLogsPreallocatedSpaceIsNotATornTail) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*log)->Append(Rec("before.crash", i)).ok());
  ASSERT_TRUE(WaitFor([&] { return fs::file_size(dir + "/" + kSeg1) > 1024 * 1024; }));
  TempDir crash_tmp;
  const std::string crashed = CopyAsCrashed(dir, crash_tmp);
  const SegmentBytes before = SplitAtNul(ReadFile(crashed + "/" + kSeg1));
  ASSERT_FALSE(before.rest.empty());
  EXPECT_TRUE(MustVerify(crashed).ok) << "NUL bytes after the records are not damage";
  {
    auto reopened = MerkleLog::Open(crashed, clock, Quiet());
    ASSERT_TRUE(reopened.ok()) << reopened.error().message;
    auto seq = (*reopened)->Append(Rec("after.restart", 0));
    ASSERT_TRUE(seq.ok());
    EXPECT_EQ(*seq, 5u) << "no audit.truncated record: nothing was torn";
  }
  const std::string after = ReadFile(crashed + "/" + kSeg1);
  EXPECT_EQ(after.substr(0, before.records.size()), before.records);
  EXPECT_EQ(SplitLines(after).size(), 6u);
  EXPECT_EQ(after.find('\0'), std::string::npos);
  EXPECT_TRUE(MustVerify(crashed).ok);
}

TEST(MerkleLog, BytesLeftInThePreallocatedSpaceByACrashAreCutAndRecorded) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*log)->Append(Rec("before.crash", i)).ok());
  ASSERT_TRUE(WaitFor([&] { return fs::file_size(dir + "/" + kSeg1) > 1024 * 1024; }));
  struct Case {
    std::string what;
    std::string torn;  // written just after the records, in the NUL space
    size_t gap;        // NUL bytes between the records and `torn`
    std::string verify_says;
  };
  const std::vector<Case> cases = {
      // kill -9 in the middle of a batch's write.
      {"a torn line", R"({"n":4,"note":"half a rec)", 0, "truncated"},
      // Power loss: a later page of an unsynced write reached the disk, an earlier one not.
      {"unsynced bytes after NUL bytes", "{\"later\":\"page\"}\n{\"n\":9", 3000,
       "after the preallocated space"},
  };
  for (const Case& c : cases) {
    TempDir crash_tmp;
    const std::string crashed = CopyAsCrashed(dir, crash_tmp);
    const std::string seg = crashed + "/" + kSeg1;
    std::string bytes = ReadFile(seg);
    const SegmentBytes parts = SplitAtNul(bytes);
    const size_t at = parts.records.size();
    ASSERT_LT(at + c.gap + c.torn.size(), bytes.size());
    bytes.replace(at + c.gap, c.torn.size(), c.torn);
    WriteFile(seg, bytes);
    VerifyReport damaged = MustVerify(crashed);
    EXPECT_FALSE(damaged.ok) << c.what;
    EXPECT_EQ(damaged.first_bad_seq, 4u) << c.what;
    EXPECT_NE(damaged.problem.find(c.verify_says), std::string::npos) << c.what << ": "
                                                                       << damaged.problem;
    {
      auto reopened = MerkleLog::Open(crashed, clock, Quiet());
      ASSERT_TRUE(reopened.ok()) << c.what << ": " << reopened.error().message;
    }
    std::vector<std::string> lines = SplitLines(ReadFile(seg));
    ASSERT_EQ(lines.size(), 5u) << c.what;
    EXPECT_EQ(ReadFile(seg).substr(0, at), parts.records) << c.what;
    auto note = Json::Parse(lines[4]);
    ASSERT_TRUE(note.ok()) << c.what;
    EXPECT_EQ(note->GetString("type"), "audit.truncated") << c.what;
    EXPECT_EQ(note->GetString("file"), kSeg1) << c.what;
    EXPECT_EQ(note->GetInt("offset", -1), static_cast<int64_t>(at)) << c.what;
    const std::string dropped = std::string(c.gap, '\0') + c.torn;
    EXPECT_EQ(note->GetInt("dropped_bytes", -1), static_cast<int64_t>(dropped.size())) << c.what;
    EXPECT_EQ(note->GetString("dropped_sha256"), core::Sha256Hex(dropped)) << c.what;
    VerifyReport repaired = MustVerify(crashed);
    EXPECT_TRUE(repaired.ok) << c.what << ": " << repaired.problem;
    EXPECT_EQ(repaired.records, 5u) << c.what;
  }
}

TEST(MerkleLog, MoreThanASegmentOfBytesAfterTheLastRecordFailsOpen) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 3);
  const std::string seg = dir + "/" + kSeg1;
  const std::string intact = ReadFile(seg);
  // A byte past kAuditSegmentBytesMax of NUL (a sparse file: no 64 MiB written). No crash
  // of the writer leaves this much: it is not cut off as a torn tail.
  {
    std::ofstream out(seg, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(intact.size() + core::kAuditSegmentBytesMax));
    out.put('x');
  }
  const auto size = fs::file_size(seg);
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock, Quiet());
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);
  EXPECT_NE(log.error().message.find("more than a segment"), std::string::npos)
      << log.error().message;
  EXPECT_EQ(fs::file_size(seg), size) << "nothing was repaired";
}

TEST(MerkleLog, NulBytesInASealedSegmentAreDamage) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 12, Every(1000, 600));
  ASSERT_NE(LastSegment(dir), kSeg1);
  const std::string seg1 = dir + "/" + kSeg1;
  const std::string intact = ReadFile(seg1);
  for (const std::string& tail : {std::string(100, '\0'), intact.substr(0, 20) + '\0'}) {
    WriteFile(seg1, intact + tail);
    VerifyReport report = MustVerify(dir);
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.file, kSeg1);
    core::FakeClock clock;
    auto log = MerkleLog::Open(dir, clock, Quiet());
    ASSERT_FALSE(log.ok());
    EXPECT_EQ(log.error().code, ErrorCode::kInternal);
    EXPECT_EQ(ReadFile(seg1), intact + tail) << "nothing was repaired";
  }
}

TEST(AuditLog, TailSpansSegmentsAndSkipsATornLine) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 12, Every(1000, 600));
  std::vector<std::string> all = AllLines(dir);
  ASSERT_EQ(all.size(), 12u);
  auto tail = TailLog(dir, 7);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, std::vector<std::string>(all.begin() + 5, all.end()));
  // A torn line at the end is not shown.
  std::string last_seg = dir + "/" + LastSegment(dir);
  WriteFile(last_seg, ReadFile(last_seg) + "{\"partial");
  auto tail2 = TailLog(dir, 2);
  ASSERT_TRUE(tail2.ok());
  EXPECT_EQ(*tail2, std::vector<std::string>(all.begin() + 10, all.end()));
}

// --- AppendThen: the record's durability reported to a callback instead of awaited ---------

TEST(MerkleLog, AppendThenReportsALoneRecordDurableFromTheCommitterWithItsLineWritten) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = MerkleLog::Open(tmp.path(), clock, Quiet());
  ASSERT_TRUE(log.ok()) << log.error().message;
  std::mutex mu;
  int calls = 0;                        // guarded by mu
  bool durable = false;                 // guarded by mu
  std::thread::id ran_on;               // guarded by mu
  std::vector<std::string> lines_then;  // guarded by mu
  auto seq = (*log)->AppendThen(Rec("alone", 7), [&](const core::Status& status) {
    std::vector<std::string> lines = SplitLines(ReadFile(tmp.Sub("audit-000001.jsonl")));
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    durable = status.ok();
    ran_on = std::this_thread::get_id();
    lines_then = std::move(lines);
  });
  ASSERT_TRUE(seq.ok()) << seq.error().message;
  EXPECT_EQ(*seq, 0u);
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return calls > 0;
  }));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(durable);
    // The caller never syncs for an AppendThen: the committer did, and reported.
    EXPECT_NE(ran_on, std::this_thread::get_id());
    ASSERT_EQ(lines_then.size(), 1u);
    EXPECT_NE(lines_then[0].find("\"type\":\"alone\""), std::string::npos);
  }
  EXPECT_EQ((*log)->SyncCount(), 1u);
  // A record the log refuses is an error and never a callback.
  Json bad = Json::MakeObject();
  bad.Set("seq", 1);
  auto refused = (*log)->AppendThen(bad, [&](const core::Status&) {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kBadRequest);
  (*log)->Close();
  EXPECT_FALSE((*log)->AppendThen(Rec("closed", 8), [&](const core::Status&) {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
  }).ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(calls, 1);
}

TEST(MerkleLog, AppendThenFromManyThreadsReportsEveryRecordOnceAmongAppendsAndSubmits) {
  TempDir tmp;
  auto log = MerkleLog::Open(tmp.path(), core::SystemClock::Instance(), Every(1000, 64 * 1024));
  ASSERT_TRUE(log.ok()) << log.error().message;
  constexpr int kThreads = 16;
  constexpr int kPerThread = 300;
  constexpr size_t kRecords = kThreads * kPerThread;
  std::vector<std::atomic<int>> reported(kRecords * 2);
  // Callbacks run inside an AppendThen call (the caller syncing for itself): there must be none.
  std::atomic<int> inside{0};
  static thread_local bool in_append_then = false;
  std::atomic<int> not_ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 3 == 1) {
          ASSERT_TRUE((*log)->Append(Rec("append", i)).ok());
          continue;
        }
        if (i % 3 == 2) {
          ASSERT_TRUE((*log)->Submit(Rec("submit", i)).ok());
          continue;
        }
        in_append_then = true;
        auto seq = (*log)->AppendThen(Rec("then", i), [&](const core::Status& durable) {
          if (!durable.ok()) not_ok.fetch_add(1);
          if (in_append_then) inside.fetch_add(1);
        });
        in_append_then = false;
        ASSERT_TRUE(seq.ok()) << seq.error().message;
        ASSERT_LT(*seq, reported.size());
        reported[*seq].fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  (*log)->Close();
  EXPECT_EQ(not_ok.load(), 0);
  size_t then = 0;
  for (auto& r : reported) {
    EXPECT_LE(r.load(), 1);
    then += static_cast<size_t>(r.load());
  }
  EXPECT_EQ(then, static_cast<size_t>(kThreads) * 100);
  // The caller never syncs for an AppendThen (the committer does, or another appender).
  EXPECT_EQ(inside.load(), 0);
  VerifyReport report = MustVerify(tmp.path());
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.records, kRecords);
}

TEST(MerkleLog, AppendThenUnderAFailureReportsEveryRecordOnceAndOnlyAPrefixDurable) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  auto log = MerkleLog::Open(dir, core::SystemClock::Instance(), EveryRecordRolls());
  ASSERT_TRUE(log.ok()) << log.error().message;
  constexpr int kThreads = 16;
  // One per sequenced record: its seq (set once AppendThen returned) and what its callback was
  // told (the callback may run before the return, on the appender's own thread).
  struct Slot {
    uint64_t seq = 0;
    std::atomic<int> reports{0};
    std::atomic<bool> durable{false};
    std::atomic<int> code{-1};
  };
  std::vector<std::vector<std::shared_ptr<Slot>>> slots(kThreads);
  std::atomic<int> returned{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        auto slot = std::make_shared<Slot>();
        auto seq = (*log)->AppendThen(Rec("thread." + std::to_string(t), i), [slot](const core::Status& durable) {
          slot->durable = durable.ok();
          if (!durable.ok()) slot->code = static_cast<int>(durable.error().code);
          slot->reports.fetch_add(1);
        });
        if (!seq.ok()) {
          EXPECT_EQ(seq.error().code, ErrorCode::kInternal);
          EXPECT_EQ(slot->reports.load(), 0);  // refused: never reported
          refused.fetch_add(1);
          return;
        }
        slot->seq = *seq;
        slots[t].push_back(std::move(slot));
        returned.fetch_add(1);
      }
    });
  }
  EXPECT_TRUE(WaitFor([&] { return returned.load() >= 200; })) << returned.load();
  // The next roll cannot create its segment.
  EXPECT_TRUE(RemoveUntilGone(dir));
  for (auto& th : threads) th.join();
  (*log)->Close();
  EXPECT_EQ(refused.load(), kThreads);  // every thread saw the failed log refuse at last
  std::vector<uint64_t> durable_seqs, failed_seqs;
  for (const auto& per_thread : slots) {
    for (const auto& slot : per_thread) {
      // Every sequenced record was reported exactly once, whichever thread reported it.
      ASSERT_EQ(slot->reports.load(), 1) << "seq " << slot->seq;
      if (slot->durable) {
        durable_seqs.push_back(slot->seq);
      } else {
        EXPECT_EQ(slot->code.load(), static_cast<int>(ErrorCode::kInternal));
        failed_seqs.push_back(slot->seq);
      }
    }
  }
  EXPECT_FALSE(failed_seqs.empty());
  // Durability is a prefix: the durable seqs are exactly 0..n-1, every failed one above them.
  std::sort(durable_seqs.begin(), durable_seqs.end());
  for (size_t i = 0; i < durable_seqs.size(); ++i) ASSERT_EQ(durable_seqs[i], i);
  for (uint64_t f : failed_seqs) EXPECT_GE(f, durable_seqs.size());
}

// Appenders waiting for room in a full queue while the batch in flight fails must learn of the
// failure: nothing else leads after a failure, so a waiter nobody wakes waits forever (a call
// that hangs instead of failing closed). A queue of 2 records makes waiting for room the
// common case.
TEST(MerkleLog, AppendersWaitingForRoomWhenABatchFailsAreRefusedNotLeftWaiting) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MerkleLog::Options options = EveryRecordRolls();
  options.queue_records_max = 2;
  auto log = MerkleLog::Open(dir, core::SystemClock::Instance(), options);
  ASSERT_TRUE(log.ok()) << log.error().message;
  constexpr int kThreads = 16;
  std::atomic<int> returned{0}, refused{0}, reported{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        auto seq = (*log)->AppendThen(Rec("thread." + std::to_string(t), i),
                                      [&](const core::Status&) { reported.fetch_add(1); });
        if (!seq.ok()) {
          EXPECT_EQ(seq.error().code, ErrorCode::kInternal);
          refused.fetch_add(1);
          return;
        }
        returned.fetch_add(1);
      }
    });
  }
  EXPECT_TRUE(WaitFor([&] { return returned.load() >= 200; })) << returned.load();
  EXPECT_TRUE(RemoveUntilGone(dir));
  // A waiter left waiting hangs this join (and the test times out).
  for (auto& th : threads) th.join();
  (*log)->Close();
  EXPECT_EQ(refused.load(), kThreads);
  EXPECT_EQ(reported.load(), returned.load());  // every sequenced record learnt its fate
}

TEST(MerkleLog, RefusesAQueueLimitOutsideItsRange) {
  TempDir tmp;
  for (size_t bad : {size_t{0}, core::kAuditQueueMax + 1}) {
    MerkleLog::Options options = Quiet();
    options.queue_records_max = bad;
    auto log = MerkleLog::Open(tmp.Sub("audit"), core::SystemClock::Instance(), options);
    ASSERT_FALSE(log.ok()) << bad;
    EXPECT_EQ(log.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(log.error().message.find("queue_records_max"), std::string::npos);
  }
}

}  // namespace
}  // namespace mandate::audit
