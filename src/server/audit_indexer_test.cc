#include "server/audit_indexer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mandate/audit/merkle_log.h"
#include "mandate/audit/reader.h"
#include "mandate/core/limits.h"
#include "mandate/store/sqlite_store.h"
#include "core/temp_dir_test_util.h"
#include "server/audit_query.h"

namespace mandate::server {
namespace {

namespace fs = std::filesystem;
using core::Json;

using core::testing::TempDir;

Json Call(const std::string& type, const std::string& run, const std::string& sid,
          const std::string& agent, const std::string& action) {
  Json j = Json::MakeObject();
  j.Set("type", type);
  j.Set("run", run);
  j.Set("sid", sid);
  j.Set("agent", agent);
  j.Set("human", "alice");
  j.Set("action", action);
  if (type == "call.decided") {
    Json d = Json::MakeObject();
    d.Set("decision", "allow");
    j.Set("decision", std::move(d));
  }
  return j;
}

// A store whose IndexAuditRecords fails on chosen calls (1-based), forwarding everything else.
class FailingIndexStore : public store::Store {
 public:
  explicit FailingIndexStore(store::Store* real) : real_(real) {}
  std::set<int> fail_calls;
  int calls = 0;
  std::vector<size_t> sizes;  // rows per call, failed ones included

  std::vector<size_t> pace_every;  // per call
  int paced = 0;                   // calls of `pace`

  core::Status IndexAuditRecords(const std::vector<store::AuditIndexRow>& rows, size_t every,
                                 const std::function<void()>& pace) override {
    ++calls;
    sizes.push_back(rows.size());
    pace_every.push_back(every);
    if (fail_calls.count(calls) != 0) {
      return core::MakeError(core::ErrorCode::kInternal, "store: disk I/O error (injected)");
    }
    return real_->IndexAuditRecords(rows, every, [&] {
      ++paced;
      if (pace) pace();
    });
  }
  core::Status PutHuman(const store::Human& h) override { return real_->PutHuman(h); }
  core::Result<store::Human> GetHuman(const std::string& n) override { return real_->GetHuman(n); }
  core::Result<std::vector<store::Human>> ListHumans() override { return real_->ListHumans(); }
  core::Status PutAgent(const store::Agent& a) override { return real_->PutAgent(a); }
  core::Result<store::Agent> GetAgent(const std::string& n) override { return real_->GetAgent(n); }
  core::Result<std::vector<store::Agent>> ListAgents() override { return real_->ListAgents(); }
  core::Status CreateSession(const store::Session& s) override { return real_->CreateSession(s); }
  core::Result<store::Session> GetSession(const std::string& sid) override {
    return real_->GetSession(sid);
  }
  core::Result<std::vector<store::Session>> ListSessions(size_t limit, size_t offset) override {
    return real_->ListSessions(limit, offset);
  }
  core::Result<std::vector<store::Session>> ListChildren(const std::string& sid) override {
    return real_->ListChildren(sid);
  }
  core::Status AddRevocation(const store::Revocation& r) override { return real_->AddRevocation(r); }
  core::Result<std::vector<store::Revocation>> ListRevocations() override {
    return real_->ListRevocations();
  }
  core::Result<std::vector<std::string>> RevokeSessionTree(const std::string& sid, int64_t at,
                                                           const std::string& reason) override {
    return real_->RevokeSessionTree(sid, at, reason);
  }
  core::Result<uint64_t> AuditIndexedUpTo() override { return real_->AuditIndexedUpTo(); }
  core::Result<std::vector<store::AuditIndexRow>> QueryAuditIndex(
      const store::AuditIndexFilter& f) override {
    return real_->QueryAuditIndex(f);
  }
  core::Status DeleteAuditIndexFrom(uint64_t from_seq) override {
    return real_->DeleteAuditIndexFrom(from_seq);
  }

 private:
  store::Store* real_;
};

class AuditIndexerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.Sub("audit");
    auto store = store::SqliteStore::Open(tmp_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
    OpenLog();
  }
  void OpenLog() {
    audit::MerkleLog::Options o;
    o.segment_bytes_max = 2048;  // several segments
    auto log = audit::MerkleLog::Open(dir_, clock_, o);
    ASSERT_TRUE(log.ok()) << log.error().message;
    log_ = std::move(log).value();
  }
  AuditIndexer MakeIndexer() {
    return AuditIndexer(dir_, store_.get(), &clock_,
                        [this](const std::string& l) { lines_.push_back(l); });
  }
  // Waits (at most 10 s) for the background thread to have indexed `n` records.
  static void WaitIndexed(const AuditIndexer& indexer, uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (indexer.indexed_up_to() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::vector<store::AuditIndexRow> All() {
    store::AuditIndexFilter f;
    f.limit = core::kAuditIndexQueryRowsMax;
    auto rows = store_->QueryAuditIndex(f);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? *rows : std::vector<store::AuditIndexRow>{};
  }

  TempDir tmp_;
  std::string dir_;
  core::FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<audit::MerkleLog> log_;
  std::vector<std::string> lines_;
};

TEST(AuditIndexRow, TakesTheQueryFieldsAndLeavesTheRestEmpty) {
  Json rec = Call("call.decided", "ses_r", "ses_c", "bot", "jira:get");
  rec.Set("seq", 7);
  rec.Set("ts", int64_t{1767000000000123});
  store::AuditIndexRow row = AuditIndexRowFor(rec, 7, audit::RecordPosition{3, 99});
  EXPECT_EQ(row.seq, 7u);
  EXPECT_EQ(row.ts, 1767000000000123);
  EXPECT_EQ(row.type, "call.decided");
  EXPECT_EQ(row.run, "ses_r");
  EXPECT_EQ(row.sid, "ses_c");
  EXPECT_EQ(row.agent, "bot");
  EXPECT_EQ(row.human, "alice");
  EXPECT_EQ(row.action, "jira:get");
  EXPECT_EQ(row.decision, "allow");
  EXPECT_EQ(row.segment, 3u);
  EXPECT_EQ(row.offset, 99u);

  Json policy = Json::MakeObject();
  policy.Set("type", "policy.loaded");
  policy.Set("agent", 12);  // not a string: not indexed
  row = AuditIndexRowFor(policy, 0, audit::RecordPosition{1, 0});
  EXPECT_EQ(row.type, "policy.loaded");
  EXPECT_TRUE(row.run.empty() && row.sid.empty() && row.agent.empty() && row.decision.empty());

  // Overlong values are cut at a character boundary (still valid UTF-8).
  Json big = Json::MakeObject();
  big.Set("agent", std::string(core::kAuditIndexFieldBytesMax - 1, 'a') + "\xc3\xa9xyz");
  row = AuditIndexRowFor(big, 1, audit::RecordPosition{1, 0});
  EXPECT_EQ(row.agent, std::string(core::kAuditIndexFieldBytesMax - 1, 'a'));
}

TEST_F(AuditIndexerTest, CatchUpIndexesEveryRecordWithItsPosition) {
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(log_->Append(Call(i % 2 ? "call.completed" : "call.decided", "ses_a", "ses_a",
                                  "bot", "jira:" + std::to_string(i % 3)))
                    .ok());
  }
  AuditIndexer indexer = MakeIndexer();
  auto done = indexer.CatchUp(10000);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_TRUE(*done);
  EXPECT_EQ(indexer.indexed_up_to(), 60u);
  auto rows = All();
  ASSERT_EQ(rows.size(), 60u);
  audit::RecordReader reader(dir_);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, i);
    auto line = reader.ReadAt(audit::RecordPosition{rows[i].segment, rows[i].offset});
    ASSERT_TRUE(line.ok()) << line.error().message;
    EXPECT_EQ(Json::Parse(*line)->GetInt("seq", -1), static_cast<int64_t>(i));
  }
  EXPECT_GT(rows.back().segment, 1u) << "the test should cross segments";

  // Later records are picked up from where it stopped.
  ASSERT_TRUE(log_->Append(Call("call.decided", "ses_b", "ses_b", "helper", "jira:9")).ok());
  ASSERT_TRUE(indexer.CatchUp(10000).ok());
  rows = All();
  ASSERT_EQ(rows.size(), 61u);
  EXPECT_EQ(rows.back().agent, "helper");
}

// The indexer's scans build only the members it indexes (kIndexedMembers): every row must be
// the one the whole record gives.
TEST_F(AuditIndexerTest, IndexedRowsAreThoseOfTheWholeRecords) {
  for (int i = 0; i < 30; ++i) {
    Json rec = Call(i % 3 ? "call.completed" : "call.decided", "ses_r" + std::to_string(i % 4),
                    "ses_s" + std::to_string(i % 5), "bot" + std::to_string(i % 2),
                    "jira:" + std::to_string(i));
    Json args = Json::MakeObject();
    args.Set("decision", "not this one");  // a "decision" below another member
    args.Set("nested", Json::StringArray({"a", "b"}));
    rec.Set("args", std::move(args));
    if (i % 7 == 0) rec.Set("agent", 12);             // not a string: not indexed
    if (i % 5 == 0) rec.Set("decision", "flat");      // not an object: no decision
    if (i % 6 == 0) rec.Erase("run");
    ASSERT_TRUE(log_->Append(rec).ok());
  }
  AuditIndexer indexer = MakeIndexer();
  ASSERT_TRUE(indexer.CatchUp(10000).ok());
  auto rows = All();
  ASSERT_EQ(rows.size(), 30u);
  audit::RecordReader reader(dir_);
  for (const store::AuditIndexRow& row : rows) {
    const audit::RecordPosition at{row.segment, row.offset};
    auto line = reader.ReadAt(at);
    ASSERT_TRUE(line.ok()) << line.error().message;
    auto whole = Json::Parse(*line);
    ASSERT_TRUE(whole.ok());
    EXPECT_EQ(row, AuditIndexRowFor(*whole, row.seq, at)) << *line;
  }
  EXPECT_EQ(rows[3].decision, "allow");
  EXPECT_TRUE(rows[15].decision.empty());  // a call.decided whose "decision" is no object
  EXPECT_TRUE(rows[7].agent.empty());
  EXPECT_TRUE(rows[6].run.empty());
}

TEST_F(AuditIndexerTest, TheBackgroundThreadFollowsTheLog) {
  AuditIndexer indexer = MakeIndexer();
  indexer.Start();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_a", "ses_a", "bot", "x:y")).ok());
  // Submit: written by the log's flusher, never waited for by the caller.
  ASSERT_TRUE(log_->Submit(Call("call.completed", "ses_a", "ses_a", "bot", "x:y")).ok());
  WaitIndexed(indexer, 6);
  EXPECT_EQ(indexer.indexed_up_to(), 6u);
  indexer.Stop();
  indexer.Stop();  // idempotent
  EXPECT_EQ(All().size(), 6u);
}

// The background pass lets other threads have the CPU every kAuditIndexYieldEvery records
// written (and read), inside one transaction per batch; a catch-up for a query does not.
TEST_F(AuditIndexerTest, TheBackgroundThreadYieldsWhileIndexingALongLog) {
  constexpr size_t kRecords = 3 * core::kAuditIndexYieldEvery + 5;
  for (size_t i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(
        log_->Append(Call("call.decided", "ses_" + std::to_string(i), "s", "bot", "x:y")).ok());
  }
  FailingIndexStore counting(store_.get());
  {
    AuditIndexer indexer(dir_, &counting, &clock_,
                         [this](const std::string& l) { lines_.push_back(l); });
    indexer.Start();
    WaitIndexed(indexer, kRecords);
    indexer.Stop();
    EXPECT_EQ(indexer.indexed_up_to(), kRecords);
  }
  EXPECT_EQ(counting.sizes, std::vector<size_t>{kRecords});  // one transaction
  EXPECT_EQ(counting.pace_every, std::vector<size_t>{core::kAuditIndexYieldEvery});
  EXPECT_EQ(counting.paced, 3);  // after rows 32, 64 and 96
  auto rows = All();
  ASSERT_EQ(rows.size(), kRecords);
  audit::RecordReader reader(dir_);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].seq, i);
    EXPECT_EQ(rows[i].run, "ses_" + std::to_string(i));
    auto line = reader.ReadAt(audit::RecordPosition{rows[i].segment, rows[i].offset});
    ASSERT_TRUE(line.ok()) << line.error().message;
    EXPECT_NE(line->find("\"seq\":" + std::to_string(i) + ","), std::string::npos) << *line;
  }
  EXPECT_TRUE(lines_.empty()) << lines_.front();

  for (size_t i = 0; i < kRecords; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_x", "s", "bot", "x:y")).ok());
  AuditIndexer query_side(dir_, &counting, &clock_, [](const std::string&) {});
  auto done = query_side.CatchUp(10000);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_TRUE(*done);
  EXPECT_EQ(counting.pace_every.back(), 0u);
  EXPECT_EQ(counting.paced, 3);
  EXPECT_EQ(All().size(), 2 * kRecords);
}

// A store failure in a background pass writes nothing of the batch, is logged once, and the
// next pass indexes the same records again: no gap, no duplicate.
TEST_F(AuditIndexerTest, AStoreFailureInABackgroundPassIsRetriedWithoutAGap) {
  constexpr size_t kRecords = 2 * core::kAuditIndexYieldEvery;
  for (size_t i = 0; i < kRecords; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_a", "ses_a", "bot", "x:y")).ok());
  FailingIndexStore failing(store_.get());
  failing.fail_calls = {1};
  AuditIndexer indexer(dir_, &failing, &clock_, [this](const std::string& l) { lines_.push_back(l); });
  indexer.Start();
  WaitIndexed(indexer, kRecords);
  indexer.Stop();
  EXPECT_EQ(indexer.indexed_up_to(), kRecords);
  auto rows = All();
  ASSERT_EQ(rows.size(), kRecords);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].seq, i);
  EXPECT_EQ(failing.sizes, (std::vector<size_t>{kRecords, kRecords}));
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_NE(lines_[0].find("disk I/O error (injected)"), std::string::npos) << lines_[0];
  EXPECT_NE(lines_[1].find("indexing again"), std::string::npos) << lines_[1];
}

TEST_F(AuditIndexerTest, ResumesAfterARestartWithoutDuplicates) {
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_a", "ses_a", "bot", "x:y")).ok());
  {
    AuditIndexer first = MakeIndexer();
    ASSERT_TRUE(first.CatchUp(10000).ok());
  }
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_b", "ses_b", "bot", "x:y")).ok());
  AuditIndexer second = MakeIndexer();
  auto done = second.CatchUp(10000);
  ASSERT_TRUE(done.ok()) << done.error().message;
  auto rows = All();
  ASSERT_EQ(rows.size(), 20u);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].seq, i);
  EXPECT_TRUE(lines_.empty()) << lines_.front();
}

TEST_F(AuditIndexerTest, RebuildsWhenTheLogNoLongerHoldsTheIndexedRecords) {
  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_old", "ses_old", "bot", "x:y")).ok());
  {
    AuditIndexer first = MakeIndexer();
    ASSERT_TRUE(first.CatchUp(10000).ok());
  }
  // The log is replaced by another one (restored from elsewhere) with fewer records.
  log_->Close();
  log_.reset();
  fs::remove_all(dir_);
  OpenLog();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(log_->Append(Call("call.decided", "ses_new", "ses_new", "bot", "x:y")).ok());
  AuditIndexer second = MakeIndexer();
  auto done = second.CatchUp(10000);
  ASSERT_TRUE(done.ok()) << done.error().message;
  auto rows = All();
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& r : rows) EXPECT_EQ(r.run, "ses_new");
  ASSERT_FALSE(lines_.empty());
  EXPECT_NE(lines_.front().find("rebuilding"), std::string::npos) << lines_.front();
}

TEST_F(AuditIndexerTest, AnIndexedPageReadsTheRecordsBack) {
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(log_->Append(Call("call.decided", i % 2 ? "ses_a" : "ses_b", "s",
                                  i % 3 ? "bot" : "helper", "x:y"))
                    .ok());
  }
  AuditIndexer indexer = MakeIndexer();
  ASSERT_TRUE(indexer.CatchUp(10000).ok());
  audit::RecordReader reader(dir_);
  store::AuditIndexFilter f;
  f.agent = "helper";
  std::vector<int64_t> seen;
  for (int page = 0; page < 10; ++page) {
    auto p = ReadAuditPage(*store_, reader, f, 3, core::kAdminAuditPageBytesMax);
    ASSERT_TRUE(p.ok()) << p.error().message;
    ASSERT_EQ(p->records.size(), p->lines.size());
    for (size_t i = 0; i < p->records.size(); ++i) {
      EXPECT_EQ(p->records[i].GetString("agent"), "helper");
      EXPECT_EQ(p->records[i].Canonical(), p->lines[i]);  // as stored
      seen.push_back(p->records[i].GetInt("seq", -1));
    }
    if (!p->next_after_seq) break;
    f.after_seq = p->next_after_seq;
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 3, 6, 9, 12, 15, 18, 21, 24, 27}));

  // The byte budget cuts a page early but never returns nothing.
  store::AuditIndexFilter g;
  g.agent = "bot";
  auto small = ReadAuditPage(*store_, reader, g, 100, 10);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->records.size(), 1u);
  ASSERT_TRUE(small->next_after_seq.has_value());
  EXPECT_EQ(*small->next_after_seq, 1u);
}

}  // namespace
}  // namespace mandate::server
