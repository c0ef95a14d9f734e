#include "mandate/audit/hash_chain_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mandate/audit/audit_log.h"
#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"

namespace mandate::audit {
namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::Json;

constexpr char kZeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mandate-audit-XXXXXX").string();
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

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

std::vector<std::string> SplitLines(const std::string& bytes) {
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

// Writes `count` records into a fresh log in `dir` and closes it.
void MakeLog(const std::string& dir, int count, HashChainLog::Options options = {}) {
  core::FakeClock clock;
  auto log = HashChainLog::Open(dir, clock, options);
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < count; ++i) {
    auto seq = (*log)->Append(Rec("test.record", i));
    ASSERT_TRUE(seq.ok()) << seq.error().message;
    ASSERT_EQ(*seq, static_cast<uint64_t>(i));
    clock.AdvanceSeconds(1);
  }
  (*log)->Close();
}

VerifyReport MustVerify(const std::string& dir) {
  auto report = VerifyLog(dir);
  EXPECT_TRUE(report.ok()) << report.error().message;
  return report.ok() ? *report : VerifyReport{};
}

TEST(HashChainLog, AppendsDurableCanonicalChainedRecordsThatVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock(1767000000LL * 1000000 + 42);
  {
    auto log = HashChainLog::Open(dir, clock);
    ASSERT_TRUE(log.ok()) << log.error().message;
    for (int i = 0; i < 10; ++i) {
      auto seq = (*log)->Append(Rec("call.decided", i));
      ASSERT_TRUE(seq.ok()) << seq.error().message;
      EXPECT_EQ(*seq, static_cast<uint64_t>(i));
    }
  }  // the destructor closes
  std::string bytes = ReadFile(dir + "/audit-000001.jsonl");
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
    std::string hash = j->GetString("hash");
    j->Erase("hash");
    EXPECT_EQ(core::Sha256Hex(j->Canonical()), hash);
    prev = core::Sha256Hex(lines[i]);
  }
  EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(dir + "/audit-000001.jsonl").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  VerifyReport report = MustVerify(dir);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.records, 10u);
  EXPECT_FALSE(report.first_bad_seq.has_value());

  auto tail = TailLog(dir, 3);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 3u);
  EXPECT_EQ((*tail)[0], lines[7]);
  EXPECT_EQ((*tail)[2], lines[9]);
  auto all = TailLog(dir, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, lines);
}

TEST(HashChainLog, SubmittedRecordsAreWrittenInOrderWithAppends) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  {
    auto log = HashChainLog::Open(dir, clock);
    ASSERT_TRUE(log.ok()) << log.error().message;
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 0)).ok());
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 1)).ok());
    // An Append returns after everything queued before it is durable, so it gets seq 2.
    auto seq = (*log)->Append(Rec("call.decided", 2));
    ASSERT_TRUE(seq.ok()) << seq.error().message;
    EXPECT_EQ(*seq, 2u);
    ASSERT_TRUE((*log)->Submit(Rec("call.completed", 3)).ok());
    EXPECT_EQ((*log)->Submit(Json(1)).error().code, core::ErrorCode::kBadRequest);
  }  // Close drains the submitted record
  std::vector<std::string> lines = SplitLines(ReadFile(dir + "/audit-000001.jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  auto report = VerifyLog(dir);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
}

TEST(HashChainLog, SubmitAfterCloseFails) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = HashChainLog::Open(tmp.Sub("audit"), clock);
  ASSERT_TRUE(log.ok());
  (*log)->Close();
  auto st = (*log)->Submit(Rec("call.completed", 0));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, core::ErrorCode::kInternal);
}

TEST(HashChainLog, ConcurrentAppendsFromSixteenThreadsGetConsecutiveSeqsAndVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  constexpr int kThreads = 16;
  constexpr int kPerThread = 100;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  uint64_t syncs = 0;
  {
    auto log = HashChainLog::Open(dir, core::SystemClock::Instance());
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
}

TEST(HashChainLog, MixedAppendsAndSubmitsAcrossSegmentsFromManyThreadsVerify) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  constexpr int kThreads = 12;
  constexpr int kPerThread = 150;
  HashChainLog::Options small;
  small.segment_bytes_max = 16 * 1024;  // rolls every ~100 records, inside batches
  std::atomic<int> failures{0};
  {
    auto log = HashChainLog::Open(dir, core::SystemClock::Instance(), small);
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
  EXPECT_GT(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 3);
}

TEST(HashChainLog, ASubmittedRecordIsWrittenAndSyncedWithoutFurtherAppends) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = HashChainLog::Open(dir, clock);
  ASSERT_TRUE(log.ok()) << log.error().message;
  ASSERT_TRUE((*log)->Submit(Rec("call.completed", 0)).ok());
  // The background flusher writes and syncs it within kAuditFlushIntervalMillis (bounded
  // wait here).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((*log)->SyncCount() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ((*log)->SyncCount(), 1u);
  EXPECT_EQ(SplitLines(ReadFile(dir + "/audit-000001.jsonl")).size(), 1u);
  // And then it goes idle: no sync without new records.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * core::kAuditFlushIntervalMillis));
  EXPECT_EQ((*log)->SyncCount(), 1u);
}

// --- Tampering --------------------------------------------------------------------------

class Tamper : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("audit");
    MakeLog(dir_, 10);
    seg_ = dir_ + "/audit-000001.jsonl";
    lines_ = SplitLines(ReadFile(seg_));
    ASSERT_EQ(lines_.size(), 10u);
    ASSERT_TRUE(MustVerify(dir_).ok);
  }
  VerifyReport VerifyWith(const std::string& bytes) {
    WriteFile(seg_, bytes);
    return MustVerify(dir_);
  }

  TempDir tmp_;
  std::string dir_;
  std::string seg_;
  std::vector<std::string> lines_;
};

TEST_F(Tamper, EveryOneByteEditIsDetectedAtThatRecord) {
  const size_t target = 4;
  for (size_t pos = 0; pos < lines_[target].size(); ++pos) {
    std::vector<std::string> edited = lines_;
    edited[target][pos] = static_cast<char>(edited[target][pos] ^ 0x01);
    VerifyReport r = VerifyWith(JoinLines(edited));
    ASSERT_FALSE(r.ok) << "edit at byte " << pos << " went unnoticed";
    ASSERT_EQ(r.first_bad_seq, target) << "byte " << pos << ": " << r.problem;
    EXPECT_EQ(r.file, "audit-000001.jsonl");
    EXPECT_EQ(r.line, target + 1);
    EXPECT_EQ(r.records, target);
  }
}

TEST_F(Tamper, EditWithRecomputedOwnHashIsCaughtByTheNextRecord) {
  // An editor who fixes up the edited record's hash still breaks the next record's prev.
  auto j = Json::Parse(lines_[3]);
  ASSERT_TRUE(j.ok());
  j->Set("type", "forged");
  j->Erase("hash");
  j->Set("hash", core::Sha256Hex(j->Canonical()));
  std::vector<std::string> edited = lines_;
  edited[3] = j->Canonical();
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 4u);
  EXPECT_NE(r.problem.find("prev"), std::string::npos) << r.problem;
}

TEST_F(Tamper, DeletedLineIsDetected) {
  std::vector<std::string> edited = lines_;
  edited.erase(edited.begin() + 6);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 6u);
  EXPECT_EQ(r.line, 7u);
  EXPECT_NE(r.problem.find("seq gap"), std::string::npos) << r.problem;
}

TEST_F(Tamper, DeletedFirstLineIsDetected) {
  std::vector<std::string> edited(lines_.begin() + 1, lines_.end());
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 0u);
}

TEST_F(Tamper, SwappedLinesAreDetected) {
  std::vector<std::string> edited = lines_;
  std::swap(edited[2], edited[3]);
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 2u);
  EXPECT_EQ(r.line, 3u);
}

TEST_F(Tamper, InsertedLinesAreDetected) {
  {  // a replayed copy of an earlier record
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, lines_[1]);
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 5u);
    EXPECT_NE(r.problem.find("out of order"), std::string::npos) << r.problem;
  }
  {  // a fabricated record claiming the next seq, with a correct own hash
    Json fake = Rec("call.decided", 99);
    fake.Set("seq", 5);
    fake.Set("ts", 1);
    fake.Set("prev", std::string(kZeros));
    fake.Set("hash", core::Sha256Hex(fake.Canonical()));
    std::vector<std::string> edited = lines_;
    edited.insert(edited.begin() + 5, fake.Canonical());
    VerifyReport r = VerifyWith(JoinLines(edited));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_seq, 5u);
  }
  {  // garbage and a blank line
    for (std::string junk :
         {std::string("hello"), std::string(""), std::string("{}"), std::string("[1,2]")}) {
      std::vector<std::string> edited = lines_;
      edited.insert(edited.begin() + 8, junk);
      VerifyReport r = VerifyWith(JoinLines(edited));
      EXPECT_FALSE(r.ok) << junk;
      EXPECT_EQ(r.first_bad_seq, 8u) << junk;
    }
  }
}

TEST_F(Tamper, TruncationMidLineIsDetected) {
  std::string bytes = JoinLines(lines_);
  size_t cut = bytes.size() - lines_[9].size() / 2;  // half of the last line
  VerifyReport r = VerifyWith(bytes.substr(0, cut));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 9u);
  EXPECT_EQ(r.line, 10u);
  EXPECT_NE(r.problem.find("truncated"), std::string::npos) << r.problem;

  std::string mid = JoinLines(lines_).substr(
      0, JoinLines(std::vector<std::string>(lines_.begin(), lines_.begin() + 3)).size() + 10);
  r = VerifyWith(mid);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 3u);
}

TEST_F(Tamper, NonCanonicalWhitespaceIsDetected) {
  std::vector<std::string> edited = lines_;
  edited[9] = edited[9] + " ";  // the last line: no later prev would catch it
  VerifyReport r = VerifyWith(JoinLines(edited));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 9u);
}

TEST(HashChainLog, TamperingAcrossSegmentsIsDetected) {
  HashChainLog::Options small;
  small.segment_bytes_max = 1024;
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
    auto first3 = Json::Parse(SplitLines(ReadFile(dir + "/audit-000003.jsonl"))[0]);
    ASSERT_TRUE(first3.ok());
    fs::remove(dir + "/audit-000002.jsonl");
    VerifyReport r = MustVerify(dir);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.file, "audit-000002.jsonl");
    EXPECT_NE(r.problem.find("missing segment"), std::string::npos) << r.problem;
    auto first2 = SplitLines(ReadFile(dir + "/audit-000001.jsonl"));
    EXPECT_EQ(r.first_bad_seq, first2.size());
  }
}

TEST(HashChainLog, DocumentedExampleVerifies) {
  // The example of docs/formats/audit.md, byte for byte.
  TempDir tmp;
  fs::create_directory(tmp.Sub("audit"));
  WriteFile(
      tmp.Sub("audit/audit-000001.jsonl"),
      R"({"files":3,"hash":"3445f46ee9e3793cedf881e763da7f9ad3900051f228d3b5266256f8ff6f03e8","prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":0,"ts":1767000000000000,"type":"policy.loaded"})"
      "\n"
      R"({"agent":"triage-bot","hash":"3b2bb7c1aa994cfc3492dfca38d8c142557a8060120e53d05c39281337aa6c5e","human":"alice","prev":"6f4096179fe6609b1b9015d12b2cf85a0f6d9a690ded638daa34993fd899226c","seq":1,"sid":"ses_01jq","ts":1767000000001500,"type":"session.started"})"
      "\n");
  VerifyReport r = MustVerify(tmp.Sub("audit"));
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 2u);
  // And the log continues it.
  core::FakeClock clock;
  auto log = HashChainLog::Open(tmp.Sub("audit"), clock);
  ASSERT_TRUE(log.ok()) << log.error().message;
  auto seq = (*log)->Append(Rec("x", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 2u);
}

// --- Lifecycle --------------------------------------------------------------------------

TEST(HashChainLog, ReopenContinuesTheChain) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  core::FakeClock clock;
  {
    auto log = HashChainLog::Open(dir, clock);
    ASSERT_TRUE(log.ok()) << log.error().message;
    for (uint64_t i = 5; i < 8; ++i) {
      auto seq = (*log)->Append(Rec("again", 0));
      ASSERT_TRUE(seq.ok());
      EXPECT_EQ(*seq, i);
    }
  }
  VerifyReport r = MustVerify(dir);
  EXPECT_TRUE(r.ok) << r.problem;
  EXPECT_EQ(r.records, 8u);
}

TEST(HashChainLog, ReopenContinuesAcrossAnEmptyNewestSegment) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  HashChainLog::Options small;
  small.segment_bytes_max = 1024;
  MakeLog(dir, 20, small);
  auto segs = SplitLines(ReadFile(dir + "/audit-000002.jsonl"));
  // A crash right after rolling leaves an empty newest segment.
  std::string next = dir + "/audit-000003.jsonl";
  if (!fs::exists(next)) WriteFile(next, "");
  core::FakeClock clock;
  auto log = HashChainLog::Open(dir, clock, small);
  ASSERT_TRUE(log.ok()) << log.error().message;
  auto seq = (*log)->Append(Rec("after", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 20u);
  (*log)->Close();
  EXPECT_TRUE(MustVerify(dir).ok);
}

TEST(HashChainLog, TornTailIsTruncatedAndTheTruncationIsRecorded) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  std::string seg = dir + "/audit-000001.jsonl";
  std::string intact = ReadFile(seg);
  std::string torn = R"({"n":5,"note":"half a rec)";
  WriteFile(seg, intact + torn);
  VerifyReport before = MustVerify(dir);
  EXPECT_FALSE(before.ok);
  EXPECT_EQ(before.first_bad_seq, 5u);

  core::FakeClock clock;
  {
    auto log = HashChainLog::Open(dir, clock);
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
  EXPECT_EQ(note->GetString("file"), "audit-000001.jsonl");
  EXPECT_EQ(note->GetInt("offset", -1), static_cast<int64_t>(intact.size()));
  EXPECT_EQ(note->GetInt("dropped_bytes", -1), static_cast<int64_t>(torn.size()));
  EXPECT_EQ(note->GetString("dropped_sha256"), core::Sha256Hex(torn));
  VerifyReport after = MustVerify(dir);
  EXPECT_TRUE(after.ok) << after.problem;
  EXPECT_EQ(after.records, 7u);
}

TEST(HashChainLog, RefusesToOpenALogDamagedBeforeItsTail) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  MakeLog(dir, 5);
  std::string seg = dir + "/audit-000001.jsonl";
  std::vector<std::string> lines = SplitLines(ReadFile(seg));
  lines[2][10] = static_cast<char>(lines[2][10] ^ 0x01);
  WriteFile(seg, JoinLines(lines));
  core::FakeClock clock;
  auto log = HashChainLog::Open(dir, clock);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);
  EXPECT_NE(log.error().message.find("line 3"), std::string::npos) << log.error().message;
  // Nothing was repaired: the evidence is intact.
  EXPECT_EQ(SplitLines(ReadFile(seg)), lines);
}

TEST(HashChainLog, SecondWriterIsRefused) {
  TempDir tmp;
  core::FakeClock clock;
  auto first = HashChainLog::Open(tmp.path(), clock);
  ASSERT_TRUE(first.ok());
  auto second = HashChainLog::Open(tmp.path(), clock);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::kConflict);
  (*first)->Close();
  auto third = HashChainLog::Open(tmp.path(), clock);
  EXPECT_TRUE(third.ok());
}

TEST(HashChainLog, UnwritableDirectoryFailsClosed) {
  TempDir tmp;
  core::FakeClock clock;
  WriteFile(tmp.Sub("file"), "x");
  auto log = HashChainLog::Open(tmp.Sub("file") + "/audit", clock);  // parent is a file
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.error().code, ErrorCode::kInternal);

  if (::geteuid() != 0) {  // root ignores permission bits
    std::string ro = tmp.Sub("readonly");
    fs::create_directory(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
    auto log2 = HashChainLog::Open(ro, clock);
    ASSERT_FALSE(log2.ok());
    EXPECT_EQ(log2.error().code, ErrorCode::kInternal);
  }
}

TEST(HashChainLog, WriteFailureFailsThisAndEveryLaterAppend) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  HashChainLog::Options tiny;
  tiny.segment_bytes_max = 1;  // every record after the first in a segment rolls
  auto log = HashChainLog::Open(dir, clock, tiny);
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
}

TEST(HashChainLog, RefusesOversizeAndMalformedRecords) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = HashChainLog::Open(tmp.path(), clock);
  ASSERT_TRUE(log.ok());
  HashChainLog& l = **log;

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
  Json reserved = Rec("x", 1);
  reserved.Set("seq", 7);
  EXPECT_EQ(l.Append(reserved).error().code, ErrorCode::kBadRequest);
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
}

TEST(AuditLog, OpenAuditLogReturnsTheInterface) {
  TempDir tmp;
  core::FakeClock clock;
  auto log = OpenAuditLog(tmp.path(), clock);
  ASSERT_TRUE(log.ok());
  auto seq = (*log)->Append(Rec("x", 0));
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(*seq, 0u);
}

TEST(AuditLog, VerifyAndTailReportMissingDirectoryAndLimits) {
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
  auto empty = VerifyLog(tmp.path());
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->ok);
  EXPECT_EQ(empty->records, 0u);
}

TEST(AuditLog, TailSpansSegmentsAndSkipsATornLine) {
  TempDir tmp;
  std::string dir = tmp.Sub("audit");
  HashChainLog::Options small;
  small.segment_bytes_max = 600;
  MakeLog(dir, 12, small);
  std::vector<std::string> all;
  for (int s = 1; fs::exists(dir + "/audit-00000" + std::to_string(s) + ".jsonl"); ++s) {
    auto lines = SplitLines(ReadFile(dir + "/audit-00000" + std::to_string(s) + ".jsonl"));
    all.insert(all.end(), lines.begin(), lines.end());
  }
  ASSERT_EQ(all.size(), 12u);
  auto tail = TailLog(dir, 7);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, std::vector<std::string>(all.begin() + 5, all.end()));
  // A torn line at the end is not shown.
  std::string last_seg;
  for (int s = 1; fs::exists(dir + "/audit-00000" + std::to_string(s) + ".jsonl"); ++s) {
    last_seg = dir + "/audit-00000" + std::to_string(s) + ".jsonl";
  }
  WriteFile(last_seg, ReadFile(last_seg) + "{\"partial");
  auto tail2 = TailLog(dir, 2);
  ASSERT_TRUE(tail2.ok());
  EXPECT_EQ(*tail2, std::vector<std::string>(all.begin() + 10, all.end()));
}

}  // namespace
}  // namespace mandate::audit
