#include "mandate/audit/reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/merkle_log.h"
#include "mandate/core/clock.h"
#include "mandate/core/limits.h"
#include "core/temp_dir_test_util.h"

namespace mandate::audit {
namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::Json;

using core::testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void AppendBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << bytes;
}

Json Rec(int64_t n) {
  Json j = Json::MakeObject();
  j.Set("type", "test.record");
  j.Set("n", n);
  j.Set("pad", std::string(40, 'x'));
  return j;
}

// Writes `n` records with segments of at most `segment_bytes` and closes the log.
void WriteLog(const std::string& dir, int n, size_t segment_bytes) {
  core::FakeClock clock;
  MerkleLog::Options o;
  o.segment_bytes_max = segment_bytes;
  auto log = MerkleLog::Open(dir, clock, o);
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < n; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  (*log)->Close();
}

struct Seen {
  uint64_t seq;
  std::string line;
  RecordPosition position;
};

core::Result<ScanCursor> Scan(const std::string& dir, const ScanCursor& from, size_t max,
                              std::vector<Seen>* seen) {
  return ScanLog(dir, from, max, [&](const ScannedRecord& r) {
    EXPECT_EQ(r.record->GetInt("seq", -1), static_cast<int64_t>(r.seq));
    seen->push_back({r.seq, std::string(r.line), r.position});
    return core::OkStatus();
  });
}

TEST(ScanLog, DeliversEveryRecordInOrderAcrossSegmentsWithItsPosition) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 40, 512);
  ASSERT_TRUE(fs::exists(dir + "/audit-000003.jsonl")) << "the test needs several segments";
  std::vector<Seen> seen;
  auto cur = Scan(dir, {}, 1000, &seen);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(seen.size(), 40u);
  RecordReader reader(dir);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].seq, i);
    auto line = reader.ReadAt(seen[i].position);
    ASSERT_TRUE(line.ok()) << line.error().message;
    EXPECT_EQ(*line, seen[i].line);
  }
  EXPECT_EQ(cur->next_seq, 40u);
  ASSERT_TRUE(cur->at.has_value());
  // The cursor points at the end of the newest segment, where seq 40 will start.
  const std::string last = ReadFile(dir + "/" + internal::SegmentName(cur->at->segment));
  EXPECT_EQ(cur->at->offset, last.size());
}

TEST(ScanLog, WithMembersBuildsOnlyThoseAndTheSeqFromTheSameLines) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 40, 512);
  std::vector<Seen> full;
  ASSERT_TRUE(Scan(dir, {}, 1000, &full).ok());
  const std::vector<std::string_view> members = {"/n", "/type", "/absent", "/pad/x"};
  std::vector<Seen> partial;
  auto cur = ScanLog(
      dir, {}, 1000,
      [&](const ScannedRecord& r) {
        auto whole = Json::Parse(r.line);
        EXPECT_TRUE(whole.ok());
        Json want = Json::MakeObject();
        want.Set("n", *whole->Find("n"));
        want.Set("type", *whole->Find("type"));
        want.Set("seq", *whole->Find("seq"));
        EXPECT_EQ(*r.record, want) << r.line;
        partial.push_back({r.seq, std::string(r.line), r.position});
        return core::OkStatus();
      },
      members);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(partial.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_EQ(partial[i].seq, full[i].seq);
    EXPECT_EQ(partial[i].line, full[i].line);
    EXPECT_EQ(partial[i].position, full[i].position);
  }
  EXPECT_EQ(cur->next_seq, 40u);
}

TEST(ScanLog, ResumesFromACursorAndInBatches) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 25, 700);
  std::vector<Seen> seen;
  ScanCursor cur;
  for (int round = 0; round < 20; ++round) {
    auto next = Scan(dir, cur, 3, &seen);
    ASSERT_TRUE(next.ok()) << next.error().message;
    cur = *next;
  }
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].seq, i);
}

TEST(ScanLog, LocatesASeqWithoutAPosition) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 30, 600);
  std::vector<Seen> seen;
  auto cur = Scan(dir, ScanCursor{17, std::nullopt}, 1000, &seen);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(seen.size(), 13u);
  EXPECT_EQ(seen.front().seq, 17u);
  EXPECT_EQ(seen.back().seq, 29u);
}

TEST(ScanLog, AWrongPositionFallsBackToLocatingTheSeq) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 10, core::kAuditSegmentBytesMax);
  std::vector<Seen> all;
  ASSERT_TRUE(Scan(dir, {}, 100, &all).ok());
  std::vector<Seen> seen;
  // The position of seq 2 given for seq 6: the line there does not carry 6.
  auto cur = Scan(dir, ScanCursor{6, all[2].position}, 100, &seen);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen.front().seq, 6u);
  // A position past the end of the file, too.
  seen.clear();
  cur = Scan(dir, ScanCursor{8, RecordPosition{1, 1u << 30}}, 100, &seen);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen.front().seq, 8u);
  // A position inside a line (a stale cursor over a replaced log): at every byte of seq 4's
  // line but its first, the scan finds seq 5 by its seq, never a fragment or an error.
  const uint64_t start = all[4].position.offset;
  for (uint64_t off = start + 1; off <= start + all[4].line.size(); ++off) {
    seen.clear();
    cur = Scan(dir, ScanCursor{5, RecordPosition{1, off}}, 100, &seen);
    ASSERT_TRUE(cur.ok()) << "offset " << off << ": " << cur.error().message;
    ASSERT_EQ(seen.size(), 5u) << "offset " << off;
    EXPECT_EQ(seen.front().seq, 5u);
    EXPECT_EQ(seen.front().position, all[5].position);
  }
}

TEST(ScanLog, APositionAtALineThatIsNotARecordFallsBackToLocatingTheSeq) {
  // A stale cursor over a replaced log may point at the start of a line that is garbage or
  // longer than any record, in a segment the scan never needs to read: located by its seq
  // (in the last segment), not reported as damage.
  for (const std::string& bad :
       {std::string("not json"), std::string(core::kAuditRecordBytesMax + 1, 'x')}) {
    TempDir tmp;
    const std::string dir = tmp.Sub("audit");
    WriteLog(dir, 12, 512);
    std::vector<Seen> all;
    ASSERT_TRUE(Scan(dir, {}, 100, &all).ok());
    ASSERT_EQ(all.size(), 12u);
    ASSERT_EQ(all.front().position.segment, 1u);
    ASSERT_GT(all.back().position.segment, 2u) << "the test needs three segments";
    const std::string first = dir + "/" + internal::SegmentName(1);
    AppendBytes(first, bad + "\n");  // segment 1 now ends in a line that is not a record
    const RecordPosition at{1, ReadFile(first).size() - bad.size() - 1};
    std::vector<Seen> seen;
    auto cur = Scan(dir, ScanCursor{11, at}, 100, &seen);
    ASSERT_TRUE(cur.ok()) << bad.size() << " bytes: " << cur.error().message;
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].seq, 11u);
    EXPECT_EQ(seen[0].position, all.back().position);
  }
}

TEST(ScanLog, StopsBeforeATornTailAndReadsItOnceComplete) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 3, core::kAuditSegmentBytesMax);
  std::vector<Seen> seen;
  auto cur = Scan(dir, {}, 100, &seen);
  ASSERT_TRUE(cur.ok());
  ASSERT_EQ(seen.size(), 3u);
  // A line being written: its first bytes only.
  const std::string full = R"({"n":3,"prev":"x","seq":3,"ts":1,"type":"late"})";
  AppendBytes(dir + "/audit-000001.jsonl", full.substr(0, 10));
  seen.clear();
  auto again = Scan(dir, *cur, 100, &seen);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(again->next_seq, 3u);
  EXPECT_EQ(again->at, cur->at);
  AppendBytes(dir + "/audit-000001.jsonl", full.substr(10) + "\n");
  auto done = Scan(dir, *again, 100, &seen);
  ASSERT_TRUE(done.ok()) << done.error().message;
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].line, full);
  EXPECT_EQ(done->next_seq, 4u);
}

TEST(ScanLog, ReadsAnOpenLogUpToItsPreallocatedSpaceAndOnAsRecordsArrive) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock);
  ASSERT_TRUE(log.ok()) << log.error().message;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Append(Rec(i)).ok());
  const std::string seg = dir + "/audit-000001.jsonl";
  for (int i = 0; i < 200 && fs::file_size(seg) < core::kAuditPreallocChunkBytes; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(fs::file_size(seg), core::kAuditPreallocChunkBytes) << "no preallocated space";
  std::vector<Seen> seen;
  auto cur = Scan(dir, {}, 100, &seen);
  ASSERT_TRUE(cur.ok()) << cur.error().message;
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(cur->next_seq, 3u);
  // A position in the preallocated space holds no record.
  auto past = ReadRecordAt(dir, *cur->at);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE((*log)->Append(Rec(3)).ok());
  seen.clear();
  auto more = Scan(dir, *cur, 100, &seen);
  ASSERT_TRUE(more.ok()) << more.error().message;
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].seq, 3u);
  auto at = ReadRecordAt(dir, seen[0].position);
  ASSERT_TRUE(at.ok()) << at.error().message;
  EXPECT_EQ(*at, seen[0].line);
}

TEST(ScanLog, ReportsGarbageAndGapsAsInternal) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 2, core::kAuditSegmentBytesMax);
  std::vector<Seen> seen;
  auto cur = Scan(dir, {}, 100, &seen);
  ASSERT_TRUE(cur.ok());
  AppendBytes(dir + "/audit-000001.jsonl", R"({"seq":5,"type":"gap"})"
                                           "\n");
  auto gap = Scan(dir, *cur, 100, &seen);
  ASSERT_FALSE(gap.ok());
  EXPECT_EQ(gap.error().code, ErrorCode::kInternal);
  EXPECT_NE(gap.error().message.find("expected seq 2"), std::string::npos) << gap.error().message;

  TempDir tmp2;
  const std::string dir2 = tmp2.Sub("audit");
  WriteLog(dir2, 1, core::kAuditSegmentBytesMax);
  AppendBytes(dir2 + "/audit-000001.jsonl", "not json\n");
  seen.clear();
  auto garbage = Scan(dir2, {}, 100, &seen);
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, ErrorCode::kInternal);

  // NUL bytes end a segment's data, but only the newest segment may have them.
  TempDir tmp3;
  const std::string dir3 = tmp3.Sub("audit");
  WriteLog(dir3, 6, 300);
  ASSERT_TRUE(fs::exists(dir3 + "/audit-000002.jsonl"));
  AppendBytes(dir3 + "/audit-000001.jsonl", std::string(64, '\0'));
  seen.clear();
  auto nul = Scan(dir3, {}, 100, &seen);
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.error().code, ErrorCode::kInternal);
  EXPECT_NE(nul.error().message.find("NUL bytes"), std::string::npos) << nul.error().message;
}

TEST(ScanLog, AMissingDirectoryIsNotFoundAndAnEmptyLogHasNothing) {
  TempDir tmp;
  std::vector<Seen> seen;
  auto missing = Scan(tmp.Sub("nope"), {}, 10, &seen);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  fs::create_directories(tmp.Sub("empty"));
  auto empty = Scan(tmp.Sub("empty"), {}, 10, &seen);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->next_seq, 0u);
  EXPECT_TRUE(seen.empty());
}

TEST(ScanLog, ACallbackErrorStopsTheScan) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 5, core::kAuditSegmentBytesMax);
  int calls = 0;
  auto r = ScanLog(dir, {}, 100, [&](const ScannedRecord&) -> core::Status {
    if (++calls == 2) return core::MakeError(ErrorCode::kConflict, "stop");
    return core::OkStatus();
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_EQ(calls, 2);
}

TEST(RecordReader, RefusesPositionsThatAreNotRecords) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  WriteLog(dir, 2, core::kAuditSegmentBytesMax);
  const std::string seg = ReadFile(dir + "/audit-000001.jsonl");
  auto past = ReadRecordAt(dir, RecordPosition{1, seg.size()});
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, ErrorCode::kNotFound);
  auto no_segment = ReadRecordAt(dir, RecordPosition{9, 0});
  ASSERT_FALSE(no_segment.ok());
  EXPECT_EQ(no_segment.error().code, ErrorCode::kNotFound);
  AppendBytes(dir + "/audit-000001.jsonl", "{\"torn\":");
  auto torn = ReadRecordAt(dir, RecordPosition{1, seg.size()});
  ASSERT_FALSE(torn.ok());
  EXPECT_EQ(torn.error().code, ErrorCode::kInternal);
  auto first = ReadRecordAt(dir, RecordPosition{1, 0});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, seg.substr(0, seg.find('\n')));
}

TEST(RecordReader, ReadsARecordLargerThanItsFirstRead) {
  TempDir tmp;
  const std::string dir = tmp.Sub("audit");
  core::FakeClock clock;
  auto log = MerkleLog::Open(dir, clock);
  ASSERT_TRUE(log.ok());
  Json big = Json::MakeObject();
  big.Set("type", "big");
  big.Set("blob", std::string(300000, 'b'));
  ASSERT_TRUE((*log)->Append(big).ok());
  (*log)->Close();
  auto line = ReadRecordAt(dir, RecordPosition{1, 0});
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_GT(line->size(), 300000u);
  EXPECT_EQ(line->back(), '}');
}

}  // namespace
}  // namespace mandate::audit
