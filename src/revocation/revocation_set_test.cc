// Tests of the in-memory revocation set over a real SQLite store (DESIGN.md invariant 4):
// revocations persist and reload, every kind is checked, a failed revocation publishes nothing,
// and a revocation is visible to every Check that starts after Revoke returned.
#include "mandate/revocation/revocation_set.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "mandate/store/sqlite_store.h"

namespace mandate::revocation {
namespace {

namespace fs = std::filesystem;
using core::ErrorCode;

using core::testing::TempDir;

constexpr int64_t kNow = 1767000000;

class RevocationSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = Open();
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(store_->PutHuman({"alice", {}, kNow}).ok());
    ASSERT_TRUE(store_->PutAgent({"bot", "alice", {}, kNow}).ok());
    ASSERT_TRUE(store_->CreateSession(Session("ses_root", "")).ok());
    ASSERT_TRUE(store_->CreateSession(Session("ses_child", "ses_root")).ok());
    ASSERT_TRUE(store_->CreateSession(Session("ses_grandchild", "ses_child")).ok());
    ASSERT_TRUE(store_->CreateSession(Session("ses_other", "")).ok());
    set_ = MustLoad(*store_);
  }

  std::unique_ptr<store::SqliteStore> Open() {
    auto s = store::SqliteStore::Open(dir_.Sub("mandate.db"));
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? std::move(s).value() : nullptr;
  }

  static std::unique_ptr<RevocationSet> MustLoad(store::Store& store) {
    auto set = RevocationSet::Load(store);
    EXPECT_TRUE(set.ok()) << set.error().message;
    return set.ok() ? std::move(set).value() : nullptr;
  }

  store::Session Session(const std::string& sid, const std::string& parent) {
    store::Session s;
    s.sid = sid;
    s.parent_sid = parent;
    s.root_sid = parent.empty() ? sid : "ses_root";
    s.agent = "bot";
    s.human = "alice";
    s.task = "SUP-1";
    s.scope = {"*"};
    s.depth = parent.empty() ? 0 : (parent == "ses_root" ? 1 : 2);
    s.created_at = kNow;
    s.expires_at = kNow + 900;
    return s;
  }

  TempDir dir_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<RevocationSet> set_;
};

TEST(RevocationKind, NamesRoundTrip) {
  for (Kind k : {Kind::kSession, Kind::kAgent, Kind::kHuman, Kind::kTask}) {
    EXPECT_EQ(KindFromName(KindName(k)), k);
  }
  EXPECT_EQ(KindName(Kind::kSession), "session");
  EXPECT_EQ(KindName(Kind::kTask), "task");
  EXPECT_FALSE(KindFromName("Session").has_value());
  EXPECT_FALSE(KindFromName("").has_value());
  EXPECT_FALSE(KindFromName("group").has_value());
}

TEST_F(RevocationSetTest, EmptySetRevokesNothing) {
  Subjects s{"ses_root", {"ses_root"}, "bot", "alice", "SUP-1"};
  EXPECT_FALSE(set_->Check(s).has_value());
  EXPECT_FALSE(set_->Contains(Kind::kSession, "ses_root"));
}

TEST_F(RevocationSetTest, PersistedRevocationsReload) {
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kSession, "ses_child", "compromised", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kAgent, "rogue-bot", "r", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kHuman, "mallory", "r", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kTask, "SUP-9", "r", kNow).ok());

  // A restart: close the database, reopen it, rebuild the set.
  set_.reset();
  store_.reset();
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  auto reloaded = MustLoad(*store_);
  ASSERT_NE(reloaded, nullptr);
  EXPECT_TRUE(reloaded->Contains(Kind::kSession, "ses_child"));
  EXPECT_TRUE(reloaded->Contains(Kind::kAgent, "rogue-bot"));
  EXPECT_TRUE(reloaded->Contains(Kind::kHuman, "mallory"));
  EXPECT_TRUE(reloaded->Contains(Kind::kTask, "SUP-9"));
  EXPECT_FALSE(reloaded->Contains(Kind::kSession, "ses_root"));
  EXPECT_FALSE(reloaded->Contains(Kind::kAgent, "mallory")) << "kinds must not mix";
  // The grandchild is refused through its revoked ancestor.
  Subjects grandchild{
      "ses_grandchild", {"ses_grandchild", "ses_child", "ses_root"}, "bot", "alice", "SUP-1"};
  EXPECT_EQ(reloaded->Check(grandchild), Kind::kSession);
}

TEST_F(RevocationSetTest, EveryRevocationIsFoundAcrossFilterGrowthAndReload) {
  // 2,100 revocations: the filter in front of the sets is rebuilt twice (1,024 -> 2,048 ->
  // 4,096 entries). Every revoked subject must still be found (a Bloom filter has no false
  // negatives), in its kind only, and the unrevoked ones not.
  std::vector<std::pair<Kind, std::string>> revoked;
  for (int i = 0; i < 2100; ++i) {
    const Kind kind = i % 3 == 0 ? Kind::kAgent : (i % 3 == 1 ? Kind::kHuman : Kind::kTask);
    revoked.emplace_back(kind, "subject-" + std::to_string(i));
    ASSERT_TRUE(set_->Revoke(*store_, kind, revoked.back().second, "r", kNow).ok());
  }
  auto reloaded = MustLoad(*store_);
  ASSERT_NE(reloaded, nullptr);
  for (const RevocationSet* set : {set_.get(), reloaded.get()}) {
    for (const auto& [kind, subject] : revoked) {
      EXPECT_TRUE(set->Contains(kind, subject)) << subject;
      // Named strings: Subjects holds views (a ternary of string and literal is a temporary).
      const std::string agent = kind == Kind::kAgent ? subject : "bot";
      const std::string human = kind == Kind::kHuman ? subject : "alice";
      const std::string task = kind == Kind::kTask ? subject : "SUP-1";
      Subjects s{"ses_other", {"ses_other"}, agent, human, task};
      EXPECT_EQ(set->Check(s), kind) << subject;
    }
    for (int i = 2100; i < 4200; ++i) {
      const std::string other = "subject-" + std::to_string(i);
      EXPECT_FALSE(set->Check({"ses_other", {"ses_other"}, other, other, other}).has_value()) << other;
    }
    // Kinds do not mix: subject-0 is an agent, not a human.
    EXPECT_FALSE(set->Check({"ses_other", {"ses_other"}, "bot", "subject-0", "SUP-1"}).has_value());
  }
}

TEST_F(RevocationSetTest, CheckByEachKind) {
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kAgent, "rogue-bot", "r", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kHuman, "mallory", "r", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kTask, "SUP-9", "r", kNow).ok());
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kSession, "ses_other", "r", kNow).ok());

  Subjects clean{"ses_root", {"ses_root"}, "bot", "alice", "SUP-1"};
  EXPECT_FALSE(set_->Check(clean).has_value());

  Subjects by_sid = clean;
  by_sid.sid = "ses_other";
  by_sid.ancestor_sids = {};
  EXPECT_EQ(set_->Check(by_sid), Kind::kSession);

  Subjects by_ancestor = clean;
  by_ancestor.sid = "ses_x";
  by_ancestor.ancestor_sids = {"ses_x", "ses_other"};
  EXPECT_EQ(set_->Check(by_ancestor), Kind::kSession);

  Subjects by_agent = clean;
  by_agent.agent = "rogue-bot";
  EXPECT_EQ(set_->Check(by_agent), Kind::kAgent);

  Subjects by_human = clean;
  by_human.human = "mallory";
  EXPECT_EQ(set_->Check(by_human), Kind::kHuman);

  Subjects by_task = clean;
  by_task.task = "SUP-9";
  EXPECT_EQ(set_->Check(by_task), Kind::kTask);

  // A session's kind wins when several apply (the most specific revocation is named).
  Subjects all{"ses_other", {}, "rogue-bot", "mallory", "SUP-9"};
  EXPECT_EQ(set_->Check(all), Kind::kSession);

  // A value revoked under one kind does not revoke it under another.
  Subjects crossed = clean;
  crossed.task = "rogue-bot";
  crossed.agent = "SUP-9";
  EXPECT_FALSE(set_->Check(crossed).has_value());

  // Empty subjects never match (a session without a task is not "task-revoked").
  Subjects empty{"", {}, "", "", ""};
  EXPECT_FALSE(set_->Check(empty).has_value());
}

TEST_F(RevocationSetTest, RevokingASessionReturnsItsSubtreeSubjectFirst) {
  auto affected = set_->Revoke(*store_, Kind::kSession, "ses_root", "tree", kNow);
  ASSERT_TRUE(affected.ok()) << affected.error().message;
  EXPECT_EQ(*affected, (std::vector<std::string>{"ses_root", "ses_child", "ses_grandchild"}));
  EXPECT_TRUE(set_->Contains(Kind::kSession, "ses_root"));
  auto stored = store_->GetSession("ses_grandchild");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->revoked_at, std::optional<int64_t>(kNow));

  // Other kinds return no sessions.
  auto agent = set_->Revoke(*store_, Kind::kAgent, "bot", "r", kNow);
  ASSERT_TRUE(agent.ok());
  EXPECT_TRUE(agent->empty());
}

TEST_F(RevocationSetTest, RevokeOfUnknownSessionIsNotFoundAndPublishesNothing) {
  auto r = set_->Revoke(*store_, Kind::kSession, "ses_nope", "typo", kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(set_->Contains(Kind::kSession, "ses_nope"));
  Subjects s{"ses_nope", {"ses_nope"}, "bot", "alice", "SUP-1"};
  EXPECT_FALSE(set_->Check(s).has_value());
  auto persisted = store_->ListRevocations();
  ASSERT_TRUE(persisted.ok());
  EXPECT_TRUE(persisted->empty());
}

TEST_F(RevocationSetTest, InvalidSubjectIsRefusedAndPublishesNothing) {
  auto r = set_->Revoke(*store_, Kind::kAgent, "", "r", kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kBadRequest);
  auto ctl = set_->Revoke(*store_, Kind::kHuman, "bad\nname", "r", kNow);
  ASSERT_FALSE(ctl.ok());
  EXPECT_EQ(ctl.error().code, ErrorCode::kBadRequest);
  EXPECT_FALSE(set_->Contains(Kind::kHuman, "bad\nname"));
  auto persisted = store_->ListRevocations();
  ASSERT_TRUE(persisted.ok());
  EXPECT_TRUE(persisted->empty());
}

TEST_F(RevocationSetTest, RevokingTwiceIsHarmless) {
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kAgent, "bot", "first", kNow).ok());
  auto again = set_->Revoke(*store_, Kind::kAgent, "bot", "second", kNow + 1);
  EXPECT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(set_->Contains(Kind::kAgent, "bot"));
  ASSERT_TRUE(set_->Revoke(*store_, Kind::kSession, "ses_child", "first", kNow).ok());
  auto tree_again = set_->Revoke(*store_, Kind::kSession, "ses_child", "second", kNow + 1);
  ASSERT_TRUE(tree_again.ok()) << tree_again.error().message;
  EXPECT_EQ(tree_again->front(), "ses_child");
}

TEST_F(RevocationSetTest, ConcurrentCheckDuringRevoke) {
  constexpr int kAgents = 40;
  std::vector<std::string> agents;
  for (int i = 0; i < kAgents; ++i) agents.push_back("agent-" + std::to_string(i));
  // published[i] is set once Revoke of agents[i] returned; from then on every Check that starts
  // must see it (no cache outlives a revocation), and a revocation never disappears again.
  std::vector<std::atomic<bool>> published(kAgents);
  for (auto& p : published) p.store(false);
  std::atomic<bool> done{false};
  std::atomic<int> violations{0};
  std::atomic<uint64_t> checks{0};

  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      std::vector<bool> seen(kAgents, false);
      while (!done.load()) {
        for (int i = t; i < kAgents; i += 1) {
          const bool was_published = published[i].load();
          Subjects s{"ses_root", {"ses_root"}, agents[i], "alice", "SUP-1"};
          const bool revoked = set_->Check(s) == Kind::kAgent;
          if (was_published && !revoked) violations++;
          if (seen[i] && !revoked) violations++;
          seen[i] = seen[i] || revoked;
          checks++;
        }
      }
    });
  }
  for (int i = 0; i < kAgents; ++i) {
    auto r = set_->Revoke(*store_, Kind::kAgent, agents[i], "bulk", kNow);
    if (!r.ok()) {
      ADD_FAILURE() << r.error().message;
      break;  // not ASSERT: the readers must still be joined
    }
    published[i].store(true);
  }
  // Let the readers run over the fully revoked set for a moment too.
  while (checks.load() < 10000) std::this_thread::yield();
  done.store(true);
  for (auto& th : readers) th.join();
  EXPECT_EQ(violations.load(), 0);
  for (const auto& a : agents) EXPECT_TRUE(set_->Contains(Kind::kAgent, a));
  EXPECT_FALSE(set_->Contains(Kind::kAgent, "bot"));
}

}  // namespace
}  // namespace mandate::revocation
