#include "mandate/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mandate/core/limits.h"
#include "core/temp_dir_test_util.h"
#include "store/old_schema_test_util.h"

namespace mandate::store {

struct SqliteStoreTestPeer {
  // The value of the connection's PRAGMA `name` (-1 when it cannot be read).
  static int64_t Pragma(SqliteStore& s, const std::string& name) {
    std::lock_guard<std::mutex> lock(s.mu_);
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(s.db_, ("PRAGMA " + name).c_str(), -1, &q, nullptr) != SQLITE_OK) return -1;
    const int64_t v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : -1;
    sqlite3_finalize(q);
    return v;
  }
  // The connection's PRAGMA synchronous: 1 NORMAL, 2 FULL.
  static int64_t Synchronous(SqliteStore& s) { return Pragma(s, "synchronous"); }
};

namespace {

namespace fs = std::filesystem;
using core::ErrorCode;
using core::Json;

using core::testing::TempDir;

std::unique_ptr<SqliteStore> MustOpen(const std::string& path) {
  auto s = SqliteStore::Open(path);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? std::move(s).value() : nullptr;
}

Session Root(const std::string& sid, const std::string& agent = "triage-bot",
             const std::string& human = "alice") {
  Session s;
  s.sid = sid;
  s.root_sid = sid;
  s.agent = agent;
  s.human = human;
  s.task = "SUP-123";
  s.scope = {"jira:get_issue", "jira:transition_issue"};
  s.model = Json::MakeObject();
  s.model.Set("provider", "anthropic");
  s.model.Set("name", "claude-opus-4-5");
  s.model.Set("tier", "frontier");
  s.depth = 0;
  s.created_at = 1767000000;
  s.expires_at = 1767000900;
  s.dpop_jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
  return s;
}

Session Child(const Session& parent, const std::string& sid) {
  Session c = parent;
  c.sid = sid;
  c.parent_sid = parent.sid;
  c.root_sid = parent.root_sid;
  c.depth = parent.depth + 1;
  c.created_at = parent.created_at + 1;
  c.scope = {"jira:get_issue"};
  c.model = Json();
  c.dpop_jkt.clear();
  return c;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tmp_.Sub("mandate.db");
    store_ = MustOpen(path_);
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(store_->PutHuman({"alice", {"finance", "eng"}, 100}).ok());
    ASSERT_TRUE(store_->PutAgent({"triage-bot", "alice", {"support-agents"}, 101}).ok());
  }

  TempDir tmp_;
  std::string path_;
  std::unique_ptr<SqliteStore> store_;
};

// First in the file: SQLite takes the setting only before it initializes, and later tests
// open databases directly.
TEST(SqliteStoreConfig, SqliteKeepsNoAllocationStatistics) {
  TempDir tmp;
  auto store = MustOpen(tmp.Sub("mandate.db"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PutHuman({"alice", {}, 100}).ok());
  // With SQLITE_CONFIG_MEMSTATUS off, SQLite counts nothing (the count takes a global mutex
  // on every allocation).
  EXPECT_EQ(sqlite3_memory_used(), 0);
}

TEST_F(SqliteStoreTest, PutHumanIsIdempotentForTheSameGroupSet) {
  // Same groups in another order, with a duplicate and a later timestamp: no change.
  EXPECT_TRUE(store_->PutHuman({"alice", {"eng", "finance", "eng"}, 999}).ok());
  auto h = store_->GetHuman("alice");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->groups, (std::vector<std::string>{"eng", "finance"}));
  EXPECT_EQ(h->created_at, 100);

  auto conflict = store_->PutHuman({"alice", {"eng"}, 100});
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  EXPECT_NE(conflict.error().message.find("groups [\"eng\",\"finance\"], not [\"eng\"]"),
            std::string::npos)
      << conflict.error().message;

  auto missing = store_->GetHuman("bob");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);

  ASSERT_TRUE(store_->PutHuman({"bob", {}, 5}).ok());
  auto all = store_->ListHumans();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "alice");
  EXPECT_EQ((*all)[1].name, "bob");
  EXPECT_TRUE((*all)[1].groups.empty());
}

TEST_F(SqliteStoreTest, PutAgentIsIdempotentAndNamesWhatConflicts) {
  EXPECT_TRUE(
      store_->PutAgent({"triage-bot", "alice", {"support-agents", "support-agents"}, 7}).ok());
  ASSERT_TRUE(store_->PutHuman({"bob", {}, 5}).ok());
  auto owner = store_->PutAgent({"triage-bot", "bob", {"support-agents"}, 7});
  ASSERT_FALSE(owner.ok());
  EXPECT_EQ(owner.error().code, ErrorCode::kConflict);
  EXPECT_NE(owner.error().message.find("owner \"alice\", not \"bob\""), std::string::npos)
      << owner.error().message;
  auto groups = store_->PutAgent({"triage-bot", "alice", {}, 7});
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(groups.error().code, ErrorCode::kConflict);
  EXPECT_NE(groups.error().message.find("groups"), std::string::npos);

  auto a = store_->GetAgent("triage-bot");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->owner, "alice");
  EXPECT_EQ(a->groups, std::vector<std::string>{"support-agents"});
  EXPECT_EQ(a->created_at, 101);
  EXPECT_EQ(store_->GetAgent("nobody").error().code, ErrorCode::kNotFound);
}

TEST_F(SqliteStoreTest, AgentWithUnknownOwnerIsRefused) {
  auto st = store_->PutAgent({"rogue", "mallory", {}, 1});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->GetAgent("rogue").error().code, ErrorCode::kNotFound);
  auto agents = store_->ListAgents();
  ASSERT_TRUE(agents.ok());
  EXPECT_EQ(agents->size(), 1u);
}

TEST_F(SqliteStoreTest, BadNamesAreRejected) {
  const std::vector<std::string> bad = {
      "",
      std::string(core::kNameBytesMax + 1, 'a'),
      "tab\there",
      "new\nline",
      std::string("nul\0byte", 8),
      "del\x7f",
      "c1\xc2\x85",  // U+0085 NEXT LINE
      "bad\xff utf8",
      "\xc0\xaf",  // overlong '/'
      " leading",
      "trailing ",
  };
  for (const std::string& name : bad) {
    auto h = store_->PutHuman({name, {}, 1});
    ASSERT_FALSE(h.ok()) << name;
    EXPECT_EQ(h.error().code, ErrorCode::kBadRequest) << name;
    EXPECT_EQ(store_->PutHuman({"ok", {name}, 1}).error().code, ErrorCode::kBadRequest) << name;
    EXPECT_EQ(store_->PutAgent({name, "alice", {}, 1}).error().code, ErrorCode::kBadRequest);
    EXPECT_EQ(store_->GetHuman(name).error().code, ErrorCode::kBadRequest);
    Session s = Root("ses_1");
    s.agent = name;
    EXPECT_EQ(store_->CreateSession(s).error().code, ErrorCode::kBadRequest);
    EXPECT_EQ(store_->AddRevocation({"agent", name, 1, ""}).error().code, ErrorCode::kBadRequest);
  }
  // What is allowed: the longest name, non-ASCII letters, inner spaces and punctuation.
  EXPECT_TRUE(store_->PutHuman({std::string(core::kNameBytesMax, 'a'), {}, 1}).ok());
  EXPECT_TRUE(store_->PutHuman({"J\xc3\xbcrgen M\xc3\xbcller", {"r&d"}, 1}).ok());
  std::vector<std::string> too_many;
  for (size_t i = 0; i <= core::kGroupsPerPrincipalMax; ++i)
    too_many.push_back("g" + std::to_string(i));
  EXPECT_EQ(store_->PutHuman({"carol", too_many, 1}).error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(store_->AddRevocation({"everything", "alice", 1, ""}).error().code,
            ErrorCode::kBadRequest);
  // Nothing of the refused writes is stored.
  auto humans = store_->ListHumans();
  ASSERT_TRUE(humans.ok());
  EXPECT_EQ(humans->size(), 3u);
  auto revs = store_->ListRevocations();
  ASSERT_TRUE(revs.ok());
  EXPECT_TRUE(revs->empty());
}

TEST_F(SqliteStoreTest, SessionsRoundTripAndDuplicatesConflict) {
  Session s = Root("ses_root");
  ASSERT_TRUE(store_->CreateSession(s).ok());
  auto got = store_->GetSession("ses_root");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, s);
  EXPECT_EQ(got->model.GetString("tier"), "frontier");

  auto dup = store_->CreateSession(s);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
  EXPECT_EQ(store_->GetSession("ses_none").error().code, ErrorCode::kNotFound);

  Session unknown_agent = Root("ses_2", "ghost-bot");
  EXPECT_EQ(store_->CreateSession(unknown_agent).error().code, ErrorCode::kNotFound);
  Session unknown_human = Root("ses_3", "triage-bot", "nobody");
  EXPECT_EQ(store_->CreateSession(unknown_human).error().code, ErrorCode::kNotFound);
  Session orphan = Child(s, "ses_orphan");
  orphan.parent_sid = "ses_missing";
  EXPECT_EQ(store_->CreateSession(orphan).error().code, ErrorCode::kNotFound);

  Session bad_model = Root("ses_4");
  bad_model.model = Json("claude");
  EXPECT_EQ(store_->CreateSession(bad_model).error().code, ErrorCode::kBadRequest);
  Session bad_root = Root("ses_5");
  bad_root.root_sid = "ses_root";
  EXPECT_EQ(store_->CreateSession(bad_root).error().code, ErrorCode::kBadRequest);
  Session bad_depth = Child(s, "ses_6");
  bad_depth.depth = 2;
  EXPECT_EQ(store_->CreateSession(bad_depth).error().code, ErrorCode::kBadRequest);
  Session outlives = Child(s, "ses_7");
  outlives.expires_at = s.expires_at + 1;
  EXPECT_EQ(store_->CreateSession(outlives).error().code, ErrorCode::kBadRequest);
  Session backwards = Root("ses_8");
  backwards.expires_at = backwards.created_at - 1;
  EXPECT_EQ(store_->CreateSession(backwards).error().code, ErrorCode::kBadRequest);
  Session wide = Root("ses_9");
  wide.scope.assign(core::kScopeEntriesMax + 1, "x:y");
  EXPECT_EQ(store_->CreateSession(wide).error().code, ErrorCode::kBadRequest);

  auto page = store_->ListSessions(10, 0);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
}

TEST_F(SqliteStoreTest, ListSessionsPagesInCreationOrder) {
  for (int i = 0; i < 5; ++i) {
    Session s = Root("ses_" + std::to_string(4 - i));
    s.created_at = 1767000000 + i;
    ASSERT_TRUE(store_->CreateSession(s).ok());
  }
  auto first = store_->ListSessions(2, 0);
  auto second = store_->ListSessions(2, 2);
  auto rest = store_->ListSessions(100, 4);
  ASSERT_TRUE(first.ok() && second.ok() && rest.ok());
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].sid, "ses_4");
  EXPECT_EQ((*first)[1].sid, "ses_3");
  EXPECT_EQ((*second)[0].sid, "ses_2");
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].sid, "ses_0");
  auto none = store_->ListSessions(10, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(SqliteStoreTest, RevokingASessionRevokesItsWholeSubtreeOnly) {
  //   r ── a ── a1 ── a1x
  //   │    └── a2
  //   └── b
  //   other (another tree)
  Session r = Root("r");
  Session a = Child(r, "a");
  Session b = Child(r, "b");
  Session a1 = Child(a, "a1");
  Session a2 = Child(a, "a2");
  Session a1x = Child(a1, "a1x");
  Session other = Root("other");
  for (const Session* s : {&r, &a, &b, &a1, &a2, &a1x, &other}) {
    ASSERT_TRUE(store_->CreateSession(*s).ok()) << s->sid;
  }
  auto kids = store_->ListChildren("a");
  ASSERT_TRUE(kids.ok());
  ASSERT_EQ(kids->size(), 2u);
  EXPECT_EQ((*kids)[0].sid, "a1");
  EXPECT_EQ((*kids)[1].sid, "a2");
  auto leaf = store_->ListChildren("a1x");
  ASSERT_TRUE(leaf.ok());
  EXPECT_TRUE(leaf->empty());
  EXPECT_EQ(store_->ListChildren("zz").error().code, ErrorCode::kNotFound);

  // Revoke a1 first, earlier: its time is kept when the bigger tree is revoked later.
  auto first = store_->RevokeSessionTree("a1", 500, "suspicious");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, (std::vector<std::string>{"a1", "a1x"}));

  auto sids = store_->RevokeSessionTree("a", 600, "operator request");
  ASSERT_TRUE(sids.ok()) << sids.error().message;
  EXPECT_EQ(*sids, (std::vector<std::string>{"a", "a1", "a2", "a1x"}));
  EXPECT_EQ(store_->GetSession("a")->revoked_at, 600);
  EXPECT_EQ(store_->GetSession("a2")->revoked_at, 600);
  EXPECT_EQ(store_->GetSession("a1")->revoked_at, 500);
  EXPECT_EQ(store_->GetSession("a1x")->revoked_at, 500);
  EXPECT_FALSE(store_->GetSession("r")->revoked_at.has_value());
  EXPECT_FALSE(store_->GetSession("b")->revoked_at.has_value());
  EXPECT_FALSE(store_->GetSession("other")->revoked_at.has_value());

  // No child can be delegated from a revoked session.
  auto late = store_->CreateSession(Child(a, "a3"));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);

  // AddRevocation with kind "session" marks the tree too.
  ASSERT_TRUE(store_->AddRevocation({"session", "r", 700, ""}).ok());
  EXPECT_EQ(store_->GetSession("b")->revoked_at, 700);
  EXPECT_EQ(store_->GetSession("a")->revoked_at, 600);
  ASSERT_TRUE(store_->AddRevocation({"human", "alice", 800, "left the company"}).ok());
  ASSERT_TRUE(store_->AddRevocation({"task", "SUP-9", 801, ""}).ok());
  ASSERT_TRUE(store_->AddRevocation({"agent", "not-yet-registered", 802, ""}).ok());

  EXPECT_EQ(store_->RevokeSessionTree("nope", 1, "").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->AddRevocation({"session", "nope", 1, ""}).error().code, ErrorCode::kNotFound);

  auto revs = store_->ListRevocations();
  ASSERT_TRUE(revs.ok());
  std::vector<Revocation> want = {{"session", "a1", 500, "suspicious"},
                                  {"session", "a", 600, "operator request"},
                                  {"session", "r", 700, ""},
                                  {"human", "alice", 800, "left the company"},
                                  {"task", "SUP-9", 801, ""},
                                  {"agent", "not-yet-registered", 802, ""}};
  EXPECT_EQ(*revs, want);
}

TEST_F(SqliteStoreTest, DelegationDepthIsBounded) {
  Session parent = Root("d0");
  ASSERT_TRUE(store_->CreateSession(parent).ok());
  for (size_t d = 1; d <= core::kDelegationDepthMax; ++d) {
    Session c = Child(parent, "d" + std::to_string(d));
    ASSERT_TRUE(store_->CreateSession(c).ok()) << d;
    parent = c;
  }
  EXPECT_EQ(store_->CreateSession(Child(parent, "too-deep")).error().code, ErrorCode::kBadRequest);
  auto sids = store_->RevokeSessionTree("d0", 1, "");
  ASSERT_TRUE(sids.ok());
  EXPECT_EQ(sids->size(), core::kDelegationDepthMax + 1);
}

TEST_F(SqliteStoreTest, EverythingPersistsAcrossReopen) {
  Session r = Root("r");
  ASSERT_TRUE(store_->CreateSession(r).ok());
  ASSERT_TRUE(store_->CreateSession(Child(r, "c")).ok());
  ASSERT_TRUE(store_->RevokeSessionTree("c", 42, "why").ok());
  store_.reset();

  auto again = MustOpen(path_);
  ASSERT_NE(again, nullptr);
  auto h = again->GetHuman("alice");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->groups, (std::vector<std::string>{"eng", "finance"}));
  EXPECT_TRUE(again->GetAgent("triage-bot").ok());
  auto got = again->GetSession("r");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, r);
  EXPECT_EQ(again->GetSession("c")->revoked_at, 42);
  auto revs = again->ListRevocations();
  ASSERT_TRUE(revs.ok());
  ASSERT_EQ(revs->size(), 1u);
  EXPECT_EQ((*revs)[0].reason, "why");
  // Idempotency holds against what was stored before the restart.
  EXPECT_TRUE(again->PutHuman({"alice", {"finance", "eng"}, 1}).ok());
}

TEST_F(SqliteStoreTest, SchemaVersionWalAndFileModeAreAsDocumented) {
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  if (::stat((path_ + "-wal").c_str(), &st) == 0) {
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), SqliteStore::kSchemaVersion);
  EXPECT_EQ(sqlite3_step(q), SQLITE_DONE);  // exactly one row
  sqlite3_finalize(q);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), "wal");
  sqlite3_finalize(q);
  sqlite3_close_v2(db);
}

TEST(SqliteStore, ExistingLooseFileIsTightenedTo0600) {
  TempDir tmp;
  std::string path = tmp.Sub("loose.db");
  {
    auto s = MustOpen(path);
    ASSERT_NE(s, nullptr);
  }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto s = MustOpen(path);
  ASSERT_NE(s, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(SqliteStore, RefusesNewerSchemaAndNonDatabases) {
  TempDir tmp;
  std::string path = tmp.Sub("future.db");
  { ASSERT_NE(MustOpen(path), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto future = SqliteStore::Open(path);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code, ErrorCode::kInternal);
  EXPECT_NE(future.error().message.find("newer"), std::string::npos);

  std::string junk = tmp.Sub("junk.db");
  {
    FILE* f = std::fopen(junk.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("this is not a database, just a long enough line of text to look like one....", f);
    std::fclose(f);
  }
  auto bad = SqliteStore::Open(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInternal);

  auto nodir = SqliteStore::Open(tmp.Sub("missing/dir/x.db"));
  ASSERT_FALSE(nodir.ok());
  EXPECT_EQ(nodir.error().code, ErrorCode::kInternal);
}

TEST_F(SqliteStoreTest, InputsAreBoundNotInterpolated) {
  const std::string evil = "x'); DROP TABLE humans; --";
  ASSERT_TRUE(store_->PutHuman({evil, {"a'b", "\"q\""}, 1}).ok());
  auto h = store_->GetHuman(evil);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->groups, (std::vector<std::string>{"\"q\"", "a'b"}));
  EXPECT_TRUE(store_->GetHuman("alice").ok());
}

TEST_F(SqliteStoreTest, ConcurrentWritersAreSerialized) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        std::string name = "h" + std::to_string(t) + "-" + std::to_string(i);
        EXPECT_TRUE(store_->PutHuman({name, {"g"}, i}).ok());
        EXPECT_TRUE(store_->PutHuman({name, {"g"}, i}).ok());
        Session s = Root("s" + std::to_string(t) + "-" + std::to_string(i));
        EXPECT_TRUE(store_->CreateSession(s).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto humans = store_->ListHumans();
  ASSERT_TRUE(humans.ok());
  EXPECT_EQ(humans->size(), 1u + 8 * 20);
  auto sessions = store_->ListSessions(core::kStoreListLimitMax, 0);
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(sessions->size(), 8u * 20);
}

// --- Audit index ---------------------------------------------------------------------------

AuditIndexRow Row(uint64_t seq, const std::string& type, const std::string& run,
                  const std::string& agent, const std::string& action = "") {
  AuditIndexRow r;
  r.seq = seq;
  r.ts = 1767000000000000 + static_cast<int64_t>(seq) * 1000;
  r.type = type;
  r.run = run;
  r.sid = run.empty() ? "" : run + "-s";
  r.agent = agent;
  r.human = agent.empty() ? "" : "alice";
  r.action = action;
  r.decision = type == "call.decided" ? "allow" : "";
  r.segment = 1 + seq / 100;
  r.offset = seq * 200;
  return r;
}

std::vector<uint64_t> Seqs(const std::vector<AuditIndexRow>& rows) {
  std::vector<uint64_t> out;
  for (const auto& r : rows) out.push_back(r.seq);
  return out;
}

TEST_F(SqliteStoreTest, AuditIndexRoundTripsRowsAndKnowsWhereItIsUpTo) {
  auto empty = store_->AuditIndexedUpTo();
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, 0u);
  std::vector<AuditIndexRow> rows = {Row(0, "policy.loaded", "", ""),
                                     Row(1, "session.started", "ses_a", "bot"),
                                     Row(2, "call.decided", "ses_a", "bot", "jira:get")};
  ASSERT_TRUE(store_->IndexAuditRecords(rows).ok());
  auto upto = store_->AuditIndexedUpTo();
  ASSERT_TRUE(upto.ok());
  EXPECT_EQ(*upto, 3u);
  AuditIndexFilter all;
  auto got = store_->QueryAuditIndex(all);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, rows);  // empty fields come back empty (stored as NULL)

  // Stored as NULL: an empty filter value means "any", never "equals NULL".
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM audit_index WHERE run IS NULL", -1, &q,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), 1);
  sqlite3_finalize(q);
  sqlite3_close_v2(db);
}

TEST_F(SqliteStoreTest, AuditIndexFiltersByEveryFieldAndTime) {
  std::vector<AuditIndexRow> rows;
  for (uint64_t i = 0; i < 30; ++i) {
    const std::string run = i % 3 == 0 ? "ses_a" : (i % 3 == 1 ? "ses_b" : "");
    const std::string agent = i % 2 == 0 ? "bot" : "helper";
    rows.push_back(Row(i, i % 5 == 0 ? "call.decided" : "call.completed", run, agent,
                       i % 4 == 0 ? "jira:get" : "jira:put"));
  }
  rows[7].human = "bob";
  ASSERT_TRUE(store_->IndexAuditRecords(rows).ok());
  auto expect = [&](AuditIndexFilter f, auto pred) {
    std::vector<uint64_t> want;
    for (const auto& r : rows) {
      if (pred(r)) want.push_back(r.seq);
    }
    f.limit = 1000;
    auto got = store_->QueryAuditIndex(f);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(Seqs(*got), want);
  };
  AuditIndexFilter f;
  f.run = "ses_a";
  expect(f, [](const AuditIndexRow& r) { return r.run == "ses_a"; });
  f = {};
  f.sid = "ses_b-s";
  expect(f, [](const AuditIndexRow& r) { return r.sid == "ses_b-s"; });
  f = {};
  f.agent = "helper";
  f.action = "jira:put";
  expect(f, [](const AuditIndexRow& r) { return r.agent == "helper" && r.action == "jira:put"; });
  f = {};
  f.human = "bob";
  expect(f, [](const AuditIndexRow& r) { return r.human == "bob"; });
  f = {};
  f.type = "call.decided";
  f.run = "ses_a";
  expect(f, [](const AuditIndexRow& r) { return r.type == "call.decided" && r.run == "ses_a"; });
  f = {};
  f.since_us = rows[10].ts;
  f.until_us = rows[20].ts;
  expect(f, [](const AuditIndexRow& r) { return r.seq >= 10 && r.seq < 20; });
  f = {};
  f.after_seq = 25;
  expect(f, [](const AuditIndexRow& r) { return r.seq > 25; });
  f = {};
  f.before_seq = 3;
  expect(f, [](const AuditIndexRow& r) { return r.seq < 3; });
  f = {};
  f.run = "nobody";
  expect(f, [](const AuditIndexRow&) { return false; });

  AuditIndexFilter newest;
  newest.descending = true;
  newest.limit = 3;
  auto got = store_->QueryAuditIndex(newest);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Seqs(*got), (std::vector<uint64_t>{29, 28, 27}));
}

TEST_F(SqliteStoreTest, AuditIndexPagesCoverEveryRowExactlyOnce) {
  std::vector<AuditIndexRow> rows;
  for (uint64_t i = 0; i < 57; ++i) rows.push_back(Row(i, "call.completed", "ses_a", "bot"));
  // Two batches, as the indexer writes them.
  ASSERT_TRUE(store_->IndexAuditRecords({rows.begin(), rows.begin() + 20}).ok());
  ASSERT_TRUE(store_->IndexAuditRecords({rows.begin() + 20, rows.end()}).ok());
  std::vector<uint64_t> seen;
  AuditIndexFilter f;
  f.agent = "bot";
  f.limit = 10;
  for (int page = 0; page < 10; ++page) {
    auto got = store_->QueryAuditIndex(f);
    ASSERT_TRUE(got.ok());
    if (got->empty()) break;
    for (const auto& r : *got) seen.push_back(r.seq);
    f.after_seq = got->back().seq;
  }
  EXPECT_EQ(seen, Seqs(rows));
}

TEST_F(SqliteStoreTest, AuditIndexRefusesBadBatchesWhole) {
  ASSERT_TRUE(store_->IndexAuditRecords({Row(0, "a", "", ""), Row(1, "b", "", "")}).ok());
  // A seq already indexed: nothing of the batch is written.
  auto dup = store_->IndexAuditRecords({Row(2, "c", "", ""), Row(1, "b", "", "")});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::kBadRequest);  // out of order, caught before writing
  auto again = store_->IndexAuditRecords({Row(1, "b", "", ""), Row(2, "c", "", "")});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_NE(again.error().message.find("seq 1 is already indexed"), std::string::npos);
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 2u);
  AuditIndexRow bad = Row(5, "x", "", "");
  bad.segment = 0;
  EXPECT_EQ(store_->IndexAuditRecords({bad}).error().code, ErrorCode::kBadRequest);
  bad = Row(5, "x", "", "");
  bad.agent = std::string(core::kAuditIndexFieldBytesMax + 1, 'a');
  EXPECT_EQ(store_->IndexAuditRecords({bad}).error().code, ErrorCode::kBadRequest);
  bad = Row(5, "x", "", "");
  bad.run = "\xff\xfe";
  EXPECT_EQ(store_->IndexAuditRecords({bad}).error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 2u);
  // An indexed seq inside a batch's range, not at its ends: found, named, nothing written.
  ASSERT_TRUE(store_->IndexAuditRecords({Row(10, "k", "", "")}).ok());
  auto inside = store_->IndexAuditRecords({Row(8, "i", "", ""), Row(10, "k", "", ""),
                                           Row(12, "m", "", "")});
  ASSERT_FALSE(inside.ok());
  EXPECT_EQ(inside.error().code, ErrorCode::kConflict);
  EXPECT_NE(inside.error().message.find("seq 10 is already indexed"), std::string::npos);
  auto gap = store_->IndexAuditRecords({Row(8, "i", "", ""), Row(12, "m", "", "")});
  ASSERT_TRUE(gap.ok()) << gap.error().message;  // around it: none of the range is indexed
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 13u);
  AuditIndexFilter zero;
  zero.limit = 0;
  EXPECT_EQ(store_->QueryAuditIndex(zero).error().code, ErrorCode::kBadRequest);
  // Values are bound, never interpolated.
  AuditIndexFilter evil;
  evil.agent = "x' OR '1'='1";
  auto none = store_->QueryAuditIndex(evil);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Index batches commit without their own sync (derived data); everything else the store
// writes still commits with synchronous = FULL, after a batch that succeeded or was refused.
TEST_F(SqliteStoreTest, AuditIndexBatchesLeaveTheStoreSyncingItsOwnWrites) {
  EXPECT_EQ(SqliteStoreTestPeer::Synchronous(*store_), 2);
  ASSERT_TRUE(store_->IndexAuditRecords({Row(0, "a", "", ""), Row(1, "b", "", "")}).ok());
  EXPECT_EQ(SqliteStoreTestPeer::Synchronous(*store_), 2);
  auto conflict = store_->IndexAuditRecords({Row(1, "b", "", ""), Row(2, "c", "", "")});
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, ErrorCode::kConflict);
  EXPECT_EQ(SqliteStoreTestPeer::Synchronous(*store_), 2);
  // A refused batch wrote nothing, a later one goes on after the first.
  ASSERT_TRUE(store_->IndexAuditRecords({Row(2, "c", "", "")}).ok());
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 3u);
  // And the rows survive a reopen (committed, not just cached in the connection).
  store_.reset();
  store_ = MustOpen(path_);
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 3u);
  EXPECT_EQ(SqliteStoreTestPeer::Synchronous(*store_), 2);
}

TEST_F(SqliteStoreTest, TheConnectionCachesAndCheckpointsAsLimitsSay) {
  // SQLite's defaults (2,000 KiB, 1,000 pages) made the audit index rewrite its pages after
  // almost every batch (docs/performance.md); every opening sets both.
  for (int open = 0; open < 2; ++open) {
    EXPECT_EQ(SqliteStoreTestPeer::Pragma(*store_, "cache_size"), -int64_t{core::kStoreCacheKib});
    EXPECT_EQ(SqliteStoreTestPeer::Pragma(*store_, "wal_autocheckpoint"),
              int64_t{core::kStoreWalCheckpointPages});
    store_.reset();
    store_ = MustOpen(path_);
  }
}

TEST(SqliteStore, OpensWithOtherTuningAndRefusesOptionsBelowOne) {
  TempDir tmp;
  auto s = SqliteStore::Open(tmp.Sub("tuned.db"), SqliteStore::Options{2000, 1000});
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(SqliteStoreTestPeer::Pragma(**s, "cache_size"), -2000);
  EXPECT_EQ(SqliteStoreTestPeer::Pragma(**s, "wal_autocheckpoint"), 1000);
  for (SqliteStore::Options bad : {SqliteStore::Options{0, 1000}, SqliteStore::Options{2000, 0},
                                   SqliteStore::Options{-1, -1}}) {
    const std::string path = tmp.Sub("refused.db");
    auto r = SqliteStore::Open(path, bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kBadRequest);
    EXPECT_FALSE(fs::exists(path)) << "refused before creating anything";
  }
}

TEST_F(SqliteStoreTest, AuditIndexCanBeCutBackForARebuild) {
  std::vector<AuditIndexRow> rows;
  for (uint64_t i = 0; i < 10; ++i) rows.push_back(Row(i, "t", "", ""));
  ASSERT_TRUE(store_->IndexAuditRecords(rows).ok());
  ASSERT_TRUE(store_->DeleteAuditIndexFrom(4).ok());
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 4u);
  ASSERT_TRUE(store_->IndexAuditRecords({Row(4, "t2", "", "")}).ok());
  ASSERT_TRUE(store_->DeleteAuditIndexFrom(0).ok());
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 0u);
}

// The number `sql` (a query of one integer) gives on a read-only connection to `path`; -1 on
// any error.
int64_t QueryInt(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return -1;
  }
  sqlite3_stmt* q = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
    v = sqlite3_column_int64(q, 0);
  }
  sqlite3_finalize(q);
  sqlite3_close_v2(db);
  return v;
}

TEST(SqliteStore, AVersionOneDatabaseUpgradesAndKeepsItsData) {
  TempDir tmp;
  const std::string path = tmp.Sub("old.db");
  {
    auto s = MustOpen(path);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->PutHuman({"alice", {"eng"}, 1}).ok());
  }
  ASSERT_TRUE(testing::ExecOnDatabase(path, testing::kBackToSchemaVersionOneSql));

  auto s = MustOpen(path);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->GetHuman("alice").ok());
  ASSERT_TRUE(s->IndexAuditRecords({Row(0, "policy.loaded", "", "")}).ok());
  EXPECT_EQ(*s->AuditIndexedUpTo(), 1u);
  EXPECT_EQ(QueryInt(path, "SELECT version FROM schema_version"), SqliteStore::kSchemaVersion);
}

TEST(SqliteStore, AVersionTwoAuditIndexIsDroppedForTheIndexerToRebuild) {
  TempDir tmp;
  const std::string path = tmp.Sub("v2.db");
  {
    auto s = MustOpen(path);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->PutHuman({"alice", {"eng"}, 1}).ok());
  }
  // What version 2 left, with a row indexed.
  ASSERT_TRUE(testing::ExecOnDatabase(path, testing::kBackToSchemaVersionTwoSql));
  ASSERT_TRUE(testing::ExecOnDatabase(path,
                                      "INSERT INTO audit_index VALUES (0, 1, 'session.started', "
                                      "'ses_a', 'ses_a', 'bot', 'alice', NULL, NULL, 1, 0)"));

  auto s = MustOpen(path);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->GetHuman("alice").ok());
  // Empty: the server's indexer rebuilds it from the log (AuditIndexer::ResumeLocked).
  EXPECT_EQ(*s->AuditIndexedUpTo(), 0u);
  std::vector<AuditIndexRow> rows = {Row(0, "session.started", "ses_a", "bot"),
                                     Row(1, "call.decided", "ses_a", "bot", "jira:get")};
  ASSERT_TRUE(s->IndexAuditRecords(rows).ok());
  AuditIndexFilter by_run;
  by_run.run = "ses_a";
  auto got = s->QueryAuditIndex(by_run);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, rows);
  EXPECT_EQ(QueryInt(path, "SELECT version FROM schema_version"), SqliteStore::kSchemaVersion);
}

TEST_F(SqliteStoreTest, AuditIndexKeepsEachTextValueOnceAndStoresIds) {
  std::vector<AuditIndexRow> rows;
  for (uint64_t i = 0; i < 40; ++i) {
    AuditIndexRow r = Row(i, i % 2 == 0 ? "call.decided" : "call.completed",
                          i % 4 < 2 ? "ses_a" : "ses_b", "bot", "jira:get");
    r.sid = r.run;  // a root session: its run is its own sid, one term for both columns
    rows.push_back(r);
  }
  ASSERT_TRUE(store_->IndexAuditRecords(rows).ok());
  // call.decided, call.completed, ses_a, ses_b, bot, alice, jira:get.
  EXPECT_EQ(QueryInt(path_, "SELECT count(*) FROM audit_terms"), 7);
  EXPECT_EQ(QueryInt(path_,
                     "SELECT count(*) FROM audit_index WHERE typeof(type) = 'integer' AND "
                     "typeof(run) = 'integer' AND typeof(sid) = 'integer' AND typeof(agent) = "
                     "'integer' AND typeof(human) = 'integer' AND typeof(action) = 'integer'"),
            40);
  AuditIndexFilter all;
  all.limit = 1000;
  auto got = store_->QueryAuditIndex(all);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, rows);

  // Terms outlive the cache: a new connection finds the existing ids instead of adding terms.
  store_.reset();
  store_ = MustOpen(path_);
  ASSERT_TRUE(
      store_->IndexAuditRecords({Row(40, "call.decided", "ses_a", "bot", "jira:get")}).ok());
  EXPECT_EQ(QueryInt(path_, "SELECT count(*) FROM audit_terms"), 8);  // + "ses_a-s" (its sid)
  AuditIndexFilter by_run;
  by_run.run = "ses_a";
  by_run.limit = 1000;
  auto a = store_->QueryAuditIndex(by_run);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->size(), 21u);
}

TEST_F(SqliteStoreTest, AuditIndexFilterOnAValueNeverIndexedMatchesNothingAndWritesNothing) {
  ASSERT_TRUE(store_->IndexAuditRecords({Row(0, "call.decided", "ses_a", "bot", "jira:get")}).ok());
  const int64_t terms = QueryInt(path_, "SELECT count(*) FROM audit_terms");
  AuditIndexFilter f;
  f.agent = "nobody";
  auto got = store_->QueryAuditIndex(f);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_TRUE(got->empty());
  f = AuditIndexFilter{};
  f.run = "ses_a";
  f.human = "mallory";  // one known value and one unknown: still nothing
  got = store_->QueryAuditIndex(f);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_TRUE(got->empty());
  EXPECT_EQ(QueryInt(path_, "SELECT count(*) FROM audit_terms"), terms);
}

TEST_F(SqliteStoreTest, ATermIdThatIsNotPositiveIsRefusedAsCorrupt) {
  // A terms table edited by hand: 0 stands for NULL in the index's columns, so an id of 0 or
  // below would index the record as having no such member.
  ASSERT_TRUE(testing::ExecOnDatabase(
      path_, "INSERT INTO audit_terms (id, term) VALUES (0, 'ses_zero'), (-5, 'bot_negative')"));
  for (const AuditIndexRow& row : {Row(0, "call.decided", "ses_zero", "bot"),
                                   Row(0, "call.decided", "ses_a", "bot_negative")}) {
    auto st = store_->IndexAuditRecords({row});
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kInternal);
    EXPECT_NE(st.error().message.find("corrupt id"), std::string::npos) << st.error().message;
  }
  // Nothing of the refused batches was written.
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 0u);
}

TEST_F(SqliteStoreTest, AFailedAuditIndexBatchLeavesNoStaleTermIds) {
  ASSERT_TRUE(store_->IndexAuditRecords({Row(0, "call.decided", "ses_0", "bot")}).ok());
  // A database that cannot grow: a batch of many new terms fails part-way, after some of its
  // terms were added (and looked up) inside its transaction, which then rolls back.
  const int64_t pages = SqliteStoreTestPeer::Pragma(*store_, "page_count");
  ASSERT_GT(pages, 0);
  ASSERT_EQ(SqliteStoreTestPeer::Pragma(*store_, "max_page_count = " + std::to_string(pages)),
            pages);
  std::vector<AuditIndexRow> doomed;
  for (uint64_t i = 1; i <= 2000; ++i) {
    doomed.push_back(Row(i, "call.decided", "ses_doomed_" + std::to_string(i), "bot"));
  }
  auto full = store_->IndexAuditRecords(doomed);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kInternal);
  ASSERT_GT(SqliteStoreTestPeer::Pragma(*store_, "max_page_count = 1000000"), pages);
  EXPECT_EQ(*store_->AuditIndexedUpTo(), 1u);

  // Other terms now get the ids the rolled-back ones had; the doomed terms must not come
  // back with them.
  std::vector<AuditIndexRow> later;
  for (uint64_t i = 1; i <= 50; ++i) {
    later.push_back(Row(i, "call.completed", "ses_other_" + std::to_string(i), "helper"));
  }
  for (uint64_t i = 51; i <= 100; ++i) {
    later.push_back(Row(i, "call.decided", "ses_doomed_" + std::to_string(i - 50), "bot"));
  }
  ASSERT_TRUE(store_->IndexAuditRecords(later).ok());
  AuditIndexFilter all;
  all.after_seq = 0;
  all.limit = 1000;
  auto got = store_->QueryAuditIndex(all);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, later);
}

}  // namespace
}  // namespace mandate::store
