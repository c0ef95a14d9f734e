#include "mandate/policy/value.h"

#include <gtest/gtest.h>

#include <unordered_set>

#include "mandate/core/limits.h"
#include "mandate/policy/entities.h"

namespace mandate::policy {
namespace {

Value FromJson(std::string_view text) {
  auto j = core::Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  auto v = ValueFromJson(*j);
  EXPECT_TRUE(v.ok()) << text << ": " << v.error().message;
  return v.ok() ? *v : Value();
}

std::string JsonError(std::string_view text) {
  auto j = core::Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  auto v = ValueFromJson(*j);
  EXPECT_FALSE(v.ok()) << text;
  if (v.ok()) return "";
  EXPECT_EQ(v.error().code, core::ErrorCode::kBadRequest);
  return v.error().message;
}

TEST(Value, DefaultIsTheEmptyRecord) {
  Value v;
  EXPECT_TRUE(v.is_record());
  EXPECT_TRUE(v.as_record().empty());
  EXPECT_EQ(v.ToString(), "{}");
}

TEST(Value, FormatsAsCedarSyntax) {
  EXPECT_EQ(Value::Bool(true).ToString(), "true");
  EXPECT_EQ(Value::Long(-3).ToString(), "-3");
  EXPECT_EQ(Value::String("a\"b\\c\n").ToString(), R"("a\"b\\c\n")");
  EXPECT_EQ(Value::Entity({"Acme::User", "al\"ice"}).ToString(), R"(Acme::User::"al\"ice")");
  EXPECT_EQ(Value::Set({Value::Long(2), Value::Long(1)}).ToString(), "[1, 2]");
  Value::RecordFields f;
  f.emplace("b", Value::Bool(false));
  f.emplace("a", Value::String("x"));
  EXPECT_EQ(Value::Record(f).ToString(), R"({"a": "x", "b": false})");
}

TEST(Value, SetsAreUnorderedAndWithoutDuplicates) {
  Value a = Value::Set({Value::Long(3), Value::Long(1), Value::Long(3), Value::String("x")});
  Value b = Value::Set({Value::String("x"), Value::Long(1), Value::Long(3)});
  EXPECT_EQ(a.as_set().size(), 3u);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(a.SetContains(Value::Long(3)));
  EXPECT_FALSE(a.SetContains(Value::Long(2)));
  EXPECT_FALSE(Value::Long(3).SetContains(Value::Long(3)));
  EXPECT_EQ(Value::Set({}), Value::Set({}));
  EXPECT_NE(Value::Set({}), Value());
}

TEST(Value, EqualityIsStructuralAndNeverAcrossKinds) {
  EXPECT_NE(Value::Long(1), Value::Bool(true));
  EXPECT_NE(Value::String("1"), Value::Long(1));
  EXPECT_EQ(Value::Entity({"A", "x"}), Value::Entity({"A", "x"}));
  EXPECT_NE(Value::Entity({"A", "x"}), Value::Entity({"B", "x"}));
  EXPECT_EQ(FromJson(R"({"a": [1, {"b": "c"}]})"), FromJson(R"({"a": [{"b": "c"}, 1, 1]})"));
  EXPECT_NE(FromJson(R"({"a": 1})"), FromJson(R"({"a": 1, "b": 2})"));
}

TEST(Value, CompareIsATotalOrderByKindThenContent) {
  std::vector<Value> ordered = {Value::Bool(false),
                                Value::Bool(true),
                                Value::Long(-1),
                                Value::Long(5),
                                Value::String(""),
                                Value::String("a"),
                                Value::Entity({"A", "b"}),
                                Value::Entity({"B", "a"}),
                                Value::Set({}),
                                Value::Set({Value::Long(1)}),
                                Value(),
                                FromJson(R"({"a": 1})")};
  for (size_t i = 0; i < ordered.size(); ++i) {
    EXPECT_EQ(Compare(ordered[i], ordered[i]), 0) << i;
    for (size_t k = i + 1; k < ordered.size(); ++k) {
      EXPECT_LT(Compare(ordered[i], ordered[k]), 0) << i << " " << k;
      EXPECT_GT(Compare(ordered[k], ordered[i]), 0) << i << " " << k;
    }
  }
}

TEST(Value, ConvertsFromJson) {
  Value v = FromJson(R"({"n": -7, "s": "x", "b": true, "l": [1, "a"], "r": {"k": 2},
                         "e": {"__entity": {"type": "Group", "id": "finance"}}})");
  ASSERT_TRUE(v.is_record());
  EXPECT_EQ(*v.FindAttr("n"), Value::Long(-7));
  EXPECT_EQ(*v.FindAttr("s"), Value::String("x"));
  EXPECT_EQ(*v.FindAttr("b"), Value::Bool(true));
  EXPECT_EQ(*v.FindAttr("l"), Value::Set({Value::String("a"), Value::Long(1)}));
  EXPECT_EQ(*v.FindAttr("r")->FindAttr("k"), Value::Long(2));
  EXPECT_EQ(*v.FindAttr("e"), Value::Entity({"Group", "finance"}));
  EXPECT_EQ(v.FindAttr("missing"), nullptr);
  EXPECT_EQ(Value::Long(1).FindAttr("x"), nullptr);
}

TEST(Value, RejectsJsonCedarCannotRepresent) {
  EXPECT_EQ(JsonError("null"), "null is not a Cedar value");
  EXPECT_EQ(JsonError(R"({"a": [1.5]})"), "floating-point number 1.5 is not a Cedar value");
  for (const char* bad : {R"({"__entity": {"type": "A"}})", R"({"__entity": "A::\"x\""})",
                          R"({"__entity": {"type": "A", "id": 1}})",
                          R"({"__entity": {"type": "A", "id": "x"}, "more": 1})",
                          R"({"__entity": {"type": "A", "id": "x", "extra": 1}})"}) {
    EXPECT_NE(JsonError(bad).find("malformed entity reference"), std::string::npos) << bad;
  }
}

TEST(Value, RejectsJsonDuplicateKeysBuiltInMemory) {
  core::Json j(core::Json::Object{{"a", 1}, {"a", 2}});
  auto v = ValueFromJson(j);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().message, "duplicate record key 'a'");
}

TEST(Value, RejectsJsonNestedTooDeep) {
  core::Json j = 1;
  for (size_t i = 0; i < core::kJsonDepthMax + 1; ++i) j = core::Json(core::Json::Array{j});
  auto v = ValueFromJson(j);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("nested deeper"), std::string::npos);
}

TEST(Value, RoundTripsThroughJson) {
  const char* text =
      R"({"a":[1,"x",{"__entity":{"type":"T","id":"i"}}],"b":{"c":true},"d":-9223372036854775808})";
  Value v = FromJson(text);
  auto back = ValueFromJson(ValueToJson(v));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, v);
}

TEST(EntityUid, FormatsHashesAndCompares) {
  EntityUid a{"Agent", "triage-bot"};
  EXPECT_EQ(a.ToString(), R"(Agent::"triage-bot")");
  EXPECT_EQ(a, (EntityUid{"Agent", "triage-bot"}));
  EXPECT_NE(a, (EntityUid{"Human", "triage-bot"}));
  std::unordered_set<EntityUid> set{a, {"Agent", "x"}, a};
  EXPECT_EQ(set.size(), 2u);
  // Type and id do not commute in the hash.
  EXPECT_NE(EntityUidHash()({"a", "b"}), EntityUidHash()({"b", "a"}));
}

// ---- Entities -------------------------------------------------------------------------------

TEST(Entities, StoresAttributesAndParents) {
  Entities es;
  ASSERT_TRUE(
      es.Add({"Human", "alice"}, FromJson(R"({"dept": "finance"})"), {{"Group", "finance"}}).ok());
  EXPECT_TRUE(es.Contains({"Human", "alice"}));
  EXPECT_FALSE(es.Contains({"Human", "bob"}));
  EXPECT_EQ(es.size(), 1u);
  ASSERT_NE(es.Attrs({"Human", "alice"}), nullptr);
  EXPECT_EQ(*es.Attrs({"Human", "alice"})->FindAttr("dept"), Value::String("finance"));
  EXPECT_EQ(es.Attrs({"Human", "bob"}), nullptr);
  ASSERT_NE(es.Parents({"Human", "alice"}), nullptr);
  EXPECT_EQ(es.Parents({"Human", "alice"})->size(), 1u);
}

TEST(Entities, RejectsNonRecordAttributesAndDuplicates) {
  Entities es;
  auto bad = es.Add({"A", "x"}, Value::Long(1), {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, core::ErrorCode::kBadRequest);
  EXPECT_EQ(bad.error().message, "attributes of A::\"x\" must be a record, got long");
  ASSERT_TRUE(es.Add({"A", "x"}, Value(), {}).ok());
  auto dup = es.Add({"A", "x"}, Value(), {});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, core::ErrorCode::kConflict);
  std::vector<EntityUid> many(core::kEntityAncestorsMax + 1, EntityUid{"G", "g"});
  EXPECT_FALSE(es.Add({"A", "y"}, Value(), many).ok());
}

TEST(Entities, AnswersTransitiveDescendancy) {
  Entities es;
  // Parents may be added after their children.
  ASSERT_TRUE(es.Add({"Agent", "bot"}, Value(), {{"Group", "support"}}).ok());
  ASSERT_TRUE(es.Add({"Group", "support"}, Value(), {{"Group", "staff"}, {"Org", "acme"}}).ok());
  ASSERT_TRUE(es.Add({"Group", "staff"}, Value(), {{"Org", "acme"}}).ok());
  EXPECT_TRUE(es.IsDescendant({"Agent", "bot"}, {"Group", "support"}));
  EXPECT_TRUE(es.IsDescendant({"Agent", "bot"}, {"Group", "staff"}));
  EXPECT_TRUE(es.IsDescendant({"Agent", "bot"}, {"Org", "acme"}));  // parent not in the store
  EXPECT_FALSE(es.IsDescendant({"Group", "staff"}, {"Agent", "bot"}));
  EXPECT_FALSE(es.IsDescendant({"Agent", "bot"}, {"Agent", "bot"}));  // not its own ancestor
  EXPECT_FALSE(es.IsDescendant({"Agent", "unknown"}, {"Group", "support"}));
  std::vector<std::string> seen;
  ASSERT_TRUE(es.ForEachAncestor({"Agent", "bot"}, [&](const EntityUid& a) {
                  seen.push_back(a.ToString());
                  return true;
                }).ok());
  // Breadth first, each ancestor once.
  EXPECT_EQ(seen, (std::vector<std::string>{R"(Group::"support")", R"(Group::"staff")",
                                            R"(Org::"acme")"}));
}

TEST(Entities, SurvivesCycles) {
  Entities es;
  ASSERT_TRUE(es.Add({"G", "a"}, Value(), {{"G", "b"}}).ok());
  ASSERT_TRUE(es.Add({"G", "b"}, Value(), {{"G", "a"}}).ok());
  EXPECT_TRUE(es.IsDescendant({"G", "a"}, {"G", "b"}));
  EXPECT_TRUE(es.IsDescendant({"G", "b"}, {"G", "a"}));
  EXPECT_FALSE(es.IsDescendant({"G", "a"}, {"G", "c"}));
}

TEST(Entities, BoundsTheAncestorWalk) {
  Entities es;
  // A chain longer than the limit: the walk stops with an error rather than running on.
  const size_t n = core::kEntityAncestorsMax + 5;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(es.Add({"G", std::to_string(i)}, Value(), {{"G", std::to_string(i + 1)}}).ok());
  }
  auto deep = es.IsDescendantChecked({"G", "0"}, {"G", std::to_string(n)});
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().code, core::ErrorCode::kBadRequest);
  EXPECT_NE(deep.error().message.find("more than 1024 ancestors"), std::string::npos);
  EXPECT_FALSE(es.IsDescendant({"G", "0"}, {"G", std::to_string(n)}));
  // Within the bound the answer is found.
  EXPECT_TRUE(es.IsDescendant({"G", "0"}, {"G", "1000"}));
  EXPECT_TRUE(es.IsDescendant({"G", "100"}, {"G", std::to_string(n)}));
}

TEST(Entities, HandlesWideHierarchies) {
  Entities es;
  std::vector<EntityUid> parents;
  for (int i = 0; i < 500; ++i) parents.push_back({"G", std::to_string(i)});
  ASSERT_TRUE(es.Add({"U", "u"}, Value(), parents).ok());
  EXPECT_TRUE(es.IsDescendant({"U", "u"}, {"G", "499"}));
  EXPECT_FALSE(es.IsDescendant({"U", "u"}, {"G", "500"}));
}

}  // namespace
}  // namespace mandate::policy
