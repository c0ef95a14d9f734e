#include "policy/scope_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mandate/core/limits.h"
#include "mandate/policy/authorize.h"
#include "policy/evaluator.h"

namespace mandate::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

PolicySet Policies(std::string_view text) {
  auto set = PolicySet::Parse(text, "p.cedar");
  EXPECT_TRUE(set.ok()) << set.error().message;
  return set.ok() ? std::move(*set) : PolicySet();
}

// The candidates of the set's index for a request, with the ancestors from the store.
std::vector<uint32_t> CandidatesFor(const PolicySet& set, const Request& request,
                                    const Entities& entities) {
  Evaluator evaluator(request, entities);
  std::vector<uint32_t> out;
  set.scope_index()->Candidates(
      {&request.principal, evaluator.RequestAncestors(Var::kPrincipal)},
      {&request.action, evaluator.RequestAncestors(Var::kAction)},
      {&request.resource, evaluator.RequestAncestors(Var::kResource)}, &out);
  return out;
}

Request AliceReadsDoc() {
  Request r;
  r.principal = {"Human", "alice"};
  r.action = {"Action", "jira:get"};
  r.resource = {"Doc", "d1"};
  return r;
}

Entities AliceStore() {
  Entities e;
  EXPECT_TRUE(e.Add({"Human", "alice"}, Value(), {{"Group", "eng"}}).ok());
  EXPECT_TRUE(e.Add({"Group", "eng"}, Value(), {{"Group", "all"}}).ok());
  EXPECT_TRUE(e.Add({"Action", "jira:get"}, Value(), {{"Action", "jira"}, {"Action", "read"}}).ok());
  EXPECT_TRUE(e.Add({"Doc", "d1"}, Value(), {{"Folder", "f"}}).ok());
  return e;
}

TEST(ScopeIndex, CandidatesAreThePoliciesWhoseKeyTheRequestReaches) {
  PolicySet set = Policies(R"(
    permit (principal == Human::"alice", action, resource);
    permit (principal == Human::"bob", action, resource);
    permit (principal in Group::"all", action, resource);
    permit (principal in Group::"ops", action, resource);
    permit (principal, action, resource in Folder::"f");
    permit (principal, action, resource == Doc::"d2");
    permit (principal, action in Action::"read", resource);
    permit (principal, action in [Action::"write", Action::"admin"], resource);
    permit (principal is Human, action, resource);
    permit (principal is Agent, action, resource);
    permit (principal, action, resource is Doc);
    permit (principal, action, resource);
    permit (principal is Human in Group::"eng", action, resource);
    permit (principal, action in [], resource);
  )");
  Request request = AliceReadsDoc();
  Entities store = AliceStore();
  EXPECT_THAT(CandidatesFor(set, request, store), ElementsAre(0, 2, 4, 6, 8, 10, 11, 12));
}

TEST(ScopeIndex, AnActionListReachedTwiceYieldsItsPolicyOnce) {
  PolicySet set = Policies(R"(
    @id("both") permit (principal, action in [Action::"read", Action::"jira"], resource);
  )");
  Request request = AliceReadsDoc();
  Entities store = AliceStore();
  EXPECT_THAT(CandidatesFor(set, request, store), ElementsAre(0));
  Response r = IsAuthorized(set, request, store);
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("both"));
}

TEST(ScopeIndex, ConditionErrorsOfPoliciesThatApplyAreStillReported) {
  PolicySet set = Policies(R"(
    @id("err") permit (principal == Human::"alice", action, resource) when { context.missing };
    @id("other") permit (principal == Human::"bob", action, resource) when { context.missing };
  )");
  Request request = AliceReadsDoc();
  Response r = IsAuthorized(set, request, AliceStore());
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], ::testing::StartsWith("err: "));
}

// A principal with more ancestors than the engine walks: scope matching errors, so the index
// cannot tell which policies apply, and every policy is evaluated and reports its error just as
// without the index.
TEST(ScopeIndex, FallsBackToEveryPolicyWhenAnAncestorWalkFails) {
  Entities store = AliceStore();
  // carol in t0 in t1 in ... in t<kEntityAncestorsMax>: one ancestor too many.
  ASSERT_TRUE(store.Add({"Human", "carol"}, Value(), {{"Team", "t0"}}).ok());
  for (size_t i = 0; i < core::kEntityAncestorsMax; ++i) {
    ASSERT_TRUE(store.Add({"Team", "t" + std::to_string(i)}, Value(),
                          {{"Team", "t" + std::to_string(i + 1)}})
                    .ok());
  }
  PolicySet set = Policies(R"(
    @id("team") permit (principal in Team::"nope", action, resource);
    @id("any") permit (principal, action, resource);
  )");
  Request request = AliceReadsDoc();
  request.principal = {"Human", "carol"};
  Response indexed = IsAuthorized(set, request, store);
  Response linear = AuthorizeEveryPolicy(set, request, store);
  EXPECT_EQ(indexed.errors, linear.errors);
  ASSERT_EQ(indexed.errors.size(), 1u);
  EXPECT_THAT(indexed.errors[0], ::testing::StartsWith("team: "));
  EXPECT_EQ(indexed.allow, linear.allow);
  EXPECT_EQ(indexed.permits, linear.permits);
}

TEST(ScopeIndex, AnEmptySetHasNoIndexAndDenies) {
  PolicySet set;
  EXPECT_EQ(set.scope_index(), nullptr);
  Response r = IsAuthorized(set, AliceReadsDoc(), AliceStore());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST(ScopeIndex, MergeRebuildsTheIndex) {
  PolicySet set = Policies(R"(permit (principal == Human::"bob", action, resource);)");
  auto more = PolicySet::Parse(R"(@id("a") permit (principal == Human::"alice", action, resource);)",
                               "q.cedar");
  ASSERT_TRUE(more.ok());
  ASSERT_TRUE(set.Merge(std::move(*more)).ok());
  Response r = IsAuthorized(set, AliceReadsDoc(), AliceStore());
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("a"));
}

// Exactness (scope_index.h): on random sets of policies over a small hierarchy, with every kind
// of scope constraint and conditions that hold, fail or error, the indexed answer equals the
// answer of evaluating every policy, for every request over the universe.
TEST(ScopeIndex, IndexedAnswersEqualLinearAnswersOnRandomSets) {
  std::mt19937 rng(20261123);
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<EntityUid> principals = {
      {"Human", "alice"}, {"Human", "bob"}, {"Agent", "bot"}, {"Group", "eng"}, {"Group", "all"}};
  const std::vector<EntityUid> actions = {
      {"Action", "a:get"}, {"Action", "a:put"}, {"Action", "a"}, {"Action", "read"},
      {"Action", "write"}};
  const std::vector<EntityUid> resources = {
      {"Doc", "d1"}, {"Doc", "d2"}, {"Folder", "f"}, {"Upstream", "u"}};
  Entities store;
  ASSERT_TRUE(store.Add({"Human", "alice"}, Value(), {{"Group", "eng"}}).ok());
  ASSERT_TRUE(store.Add({"Human", "bob"}, Value(), {{"Group", "all"}}).ok());
  ASSERT_TRUE(store.Add({"Agent", "bot"}, Value(), {{"Group", "eng"}}).ok());
  ASSERT_TRUE(store.Add({"Group", "eng"}, Value(), {{"Group", "all"}}).ok());
  ASSERT_TRUE(store.Add({"Action", "a:get"}, Value(), {{"Action", "a"}, {"Action", "read"}}).ok());
  ASSERT_TRUE(store.Add({"Action", "a:put"}, Value(), {{"Action", "a"}, {"Action", "write"}}).ok());
  ASSERT_TRUE(store.Add({"Doc", "d1"}, Value(), {{"Folder", "f"}}).ok());
  ASSERT_TRUE(store.Add({"Doc", "d2"}, Value(), {{"Upstream", "u"}}).ok());
  ASSERT_TRUE(store.Add({"Folder", "f"}, Value(), {{"Upstream", "u"}}).ok());

  auto scope = [&](std::string_view var, const std::vector<EntityUid>& universe, bool is_action) {
    const EntityUid& e = universe[pick(universe.size())];
    switch (pick(is_action ? 4 : 5)) {
      case 0:
        return std::string(var);
      case 1:
        return std::string(var) + " == " + e.ToString();
      case 2:
        return std::string(var) + " in " + e.ToString();
      case 3:
        if (is_action) {
          return std::string(var) + " in [" + e.ToString() + ", " +
                 universe[pick(universe.size())].ToString() + "]";
        }
        return std::string(var) + " is " + e.type;
      default:
        return std::string(var) + " is " + e.type + " in " + e.ToString();
    }
  };
  const char* conditions[] = {"", " when { true }", " when { false }", " when { context.x }",
                              " unless { principal has tier }"};
  for (int round = 0; round < 200; ++round) {
    std::string text;
    const size_t count = 1 + pick(40);
    for (size_t i = 0; i < count; ++i) {
      text += pick(4) == 0 ? "forbid (" : "permit (";
      text += scope("principal", principals, false) + ", " + scope("action", actions, true) +
              ", " + scope("resource", resources, false) + ")" + conditions[pick(5)] + ";\n";
    }
    PolicySet set = Policies(text);
    ASSERT_EQ(set.size(), count);
    for (const EntityUid& p : principals) {
      for (const EntityUid& a : actions) {
        for (const EntityUid& r : resources) {
          Request request{p, a, r, Value()};
          Response indexed = IsAuthorized(set, request, store);
          Response linear = AuthorizeEveryPolicy(set, request, store);
          ASSERT_EQ(indexed.allow, linear.allow) << text << p.ToString() << a.ToString();
          ASSERT_EQ(indexed.permits, linear.permits) << text;
          ASSERT_EQ(indexed.forbids, linear.forbids) << text;
          ASSERT_EQ(indexed.errors, linear.errors) << text;
        }
      }
    }
  }
}

}  // namespace
}  // namespace mandate::policy
