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

TEST(Value, PlainJsonTakesEscapesAsRecords) {
  auto j = core::Json::Parse(R"({"e": {"__entity": {"type": "Group", "id": "finance"}},
                                 "x": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
                                 "bad": {"__extn": 5}, "l": [{"__entity": 1}]})");
  ASSERT_TRUE(j.ok());
  auto v = ValueFromPlainJson(*j);
  ASSERT_TRUE(v.ok()) << v.error().message;
  const Value* e = v->FindAttr("e");
  ASSERT_NE(e, nullptr);
  ASSERT_TRUE(e->is_record());
  EXPECT_EQ(*e->FindAttr("__entity")->FindAttr("id"), Value::String("finance"));
  const Value* x = v->FindAttr("x");
  ASSERT_TRUE(x != nullptr && x->is_record());
  EXPECT_EQ(*x->FindAttr("__extn")->FindAttr("fn"), Value::String("ip"));
  EXPECT_EQ(*v->FindAttr("bad")->FindAttr("__extn"), Value::Long(5));
  // What Cedar cannot represent is still refused.
  auto fl = core::Json::Parse(R"({"a": {"__entity": 1.5}})");
  ASSERT_TRUE(fl.ok());
  EXPECT_FALSE(ValueFromPlainJson(*fl).ok());
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

// ---- Extension values -------------------------------------------------------------------------

TEST(Value, ReadsExtensionValuesFromJson) {
  Value ip = FromJson(R"({"__extn": {"fn": "ip", "arg": "10.0.0.1"}})");
  ASSERT_TRUE(ip.is_extension(ExtensionType::kIpAddr));
  EXPECT_EQ(ip, FromJson(R"({"__extn": {"fn": "ip", "args": ["10.0.0.1/32"]}})"));
  EXPECT_EQ(TypeName(ip), "ipaddr");
  EXPECT_EQ(FromJson(R"({"__extn": {"fn": "decimal", "arg": "1.5"}})"),
            FromJson(R"({"__extn": {"fn": "decimal", "arg": "1.5000"}})"));
  // As in the reference, any extension function may be named, the multi-argument ones too.
  EXPECT_EQ(FromJson(R"({"__extn": {"fn": "offset", "args": [
                        {"__extn": {"fn": "datetime", "arg": "1970-01-01"}},
                        {"__extn": {"fn": "duration", "arg": "1d"}}]}})"),
            FromJson(R"({"__extn": {"fn": "datetime", "arg": "1970-01-02"}})"));
  EXPECT_EQ(FromJson(R"({"__extn": {"fn": "isIpv4", "arg": {"__extn": {"fn": "ip",
                        "arg": "::1"}}}})"),
            Value::Bool(false));
  Value set = FromJson(R"([{"__extn": {"fn": "ip", "arg": "::1"}},
                           {"__extn": {"fn": "ip", "arg": "0:0::1/128"}}])");
  EXPECT_EQ(set.as_set().size(), 1u);  // equal by value: one element
}

TEST(Value, RejectsMalformedOrFailingExtensionJson) {
  EXPECT_EQ(JsonError(R"({"__extn": {"fn": "ip", "arg": "10.0.0.256"}})"),
            "error while evaluating `ipaddr` extension function: invalid IP address: 10.0.0.256");
  EXPECT_EQ(JsonError(R"({"__extn": {"fn": "nope", "arg": "1"}})"),
            "extension function `nope` does not exist");
  EXPECT_EQ(JsonError(R"({"__extn": {"fn": "ip", "arg": 1}})"),
            "type error: expected string, got long");
  EXPECT_EQ(JsonError(R"({"__extn": {"fn": "ip", "args": []}})"),
            "wrong number of arguments provided to extension function `ip`: expected 1, got 0");
  EXPECT_EQ(JsonError(R"({"__extn": {"fn": "ip", "arg": null}})"), "null is not a Cedar value");
  // Shapes the reference reads as plain records (or with keys it ignores): refused here.
  for (const char* bad : {R"({"__extn": "ip"})", R"({"__extn": {"fn": "ip"}})",
                          R"({"__extn": {"fn": 1, "arg": "::1"}})",
                          R"({"__extn": {"fn": "ip", "arg": "::1"}, "more": 1})",
                          R"({"__extn": {"fn": "ip", "arg": "::1", "extra": 1}})",
                          R"({"__extn": {"fn": "ip", "arg": "::1", "args": ["::1"]}})",
                          R"({"__extn": {"fn": "ip", "args": "::1"}})"}) {
    EXPECT_NE(JsonError(bad).find("malformed extension value"), std::string::npos) << bad;
  }
}

TEST(Value, WritesExtensionValuesAsCedarAndJson) {
  Value ip = FromJson(R"({"__extn": {"fn": "ip", "arg": "10.0.0.1"}})");
  EXPECT_EQ(ip.ToString(), R"(ip("10.0.0.1/32"))");
  EXPECT_EQ(ValueToJson(ip).Dump(), R"({"__extn":{"fn":"ip","arg":"10.0.0.1/32"}})");
  Value dec = FromJson(R"({"__extn": {"fn": "decimal", "arg": "-0.5"}})");
  EXPECT_EQ(dec.ToString(), R"(decimal("-0.5000"))");
  Value dt = FromJson(R"({"__extn": {"fn": "datetime", "arg": "2024-10-15T11:38:02.101+1134"}})");
  EXPECT_EQ(dt.ToString(), R"(datetime("2024-10-15T00:04:02.101Z"))");
  Value dur = FromJson(R"({"__extn": {"fn": "duration", "arg": "1h30m"}})");
  EXPECT_EQ(dur.ToString(), R"(duration("5400000ms"))");
  // A datetime no string can name, and its JSON, which the reference reads back.
  Value far = FromJson(R"({"__extn": {"fn": "offset", "args": [
                         {"__extn": {"fn": "datetime", "arg": "9999-12-31"}},
                         {"__extn": {"fn": "duration", "arg": "1d"}}]}})");
  EXPECT_EQ(far.ToString(), R"(datetime("1970-01-01").offset(duration("253402300800000ms")))");
  EXPECT_EQ(ValueToJson(far).Dump(),
            R"({"__extn":{"fn":"offset","args":[{"__extn":{"fn":"datetime","arg":"1970-01-01"}},)"
            R"({"__extn":{"fn":"duration","arg":"253402300800000ms"}}]}})");
  for (const Value& v : {ip, dec, dt, dur, far}) {
    auto back = ValueFromJson(ValueToJson(v));
    ASSERT_TRUE(back.ok()) << v.ToString();
    EXPECT_EQ(*back, v);
  }
}

TEST(Value, ExtensionValuesOrderTotallyAndNeverEqualOtherKinds) {
  Value a = FromJson(R"({"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}})");
  Value b = FromJson(R"({"__extn": {"fn": "ip", "arg": "10.0.0.0/9"}})");
  Value c = FromJson(R"({"__extn": {"fn": "ip", "arg": "::a00:0/8"}})");
  Value d = FromJson(R"({"__extn": {"fn": "duration", "arg": "0ms"}})");
  Value e = FromJson(R"({"__extn": {"fn": "decimal", "arg": "0.0"}})");
  const std::vector<Value> all = {a, b, c, d, e};
  for (size_t i = 0; i < all.size(); ++i) {
    for (size_t k = 0; k < all.size(); ++k) {
      EXPECT_EQ(Compare(all[i], all[k]) == 0, i == k) << all[i].ToString() << all[k].ToString();
      EXPECT_EQ(Compare(all[i], all[k]), -Compare(all[k], all[i]));
    }
  }
  EXPECT_NE(d, Value::Long(0));
  EXPECT_NE(e, Value::String("0.0"));
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

TEST(Entities, StoresTags) {
  Entities es;
  ASSERT_TRUE(es.Add({"Human", "alice"}, Value(), {}, FromJson(R"({"team": "sre"})")).ok());
  ASSERT_TRUE(es.Add({"Human", "bob"}, Value(), {}).ok());
  ASSERT_NE(es.Tags({"Human", "alice"}), nullptr);
  EXPECT_EQ(*es.Tags({"Human", "alice"})->FindAttr("team"), Value::String("sre"));
  ASSERT_NE(es.Tags({"Human", "bob"}), nullptr);
  EXPECT_TRUE(es.Tags({"Human", "bob"})->as_record().empty());
  EXPECT_EQ(es.Tags({"Human", "carol"}), nullptr);
  auto bad = es.Add({"A", "x"}, Value(), {}, Value::Long(1));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "tags of A::\"x\" must be a record, got long");
  EXPECT_FALSE(es.Contains({"A", "x"}));
}

core::Result<Entities> EntitiesJson(std::string_view text, size_t max = 100) {
  auto j = core::Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  return EntitiesFromJson(*j, max);
}

TEST(Entities, LoadsTheCedarJsonEntityFormat) {
  auto es = EntitiesJson(R"([
    {"uid": {"type": "User", "id": "a"}, "attrs": {"addr": {"__extn": {"fn": "ip", "arg": "::1"}}},
     "parents": [{"type": "Group", "id": "g"}, {"__entity": {"type": "Group", "id": "h"}}],
     "tags": {"level": 3}},
    {"uid": {"__entity": {"type": "Group", "id": "g"}}},
    {"uid": {"type": "Group", "id": "h"}, "attrs": {}, "parents": [], "tags": {}}])");
  ASSERT_TRUE(es.ok()) << es.error().message;
  EXPECT_EQ(es->size(), 3u);
  EXPECT_TRUE(es->Attrs({"User", "a"})->FindAttr("addr")->is_extension(ExtensionType::kIpAddr));
  EXPECT_EQ(*es->Tags({"User", "a"})->FindAttr("level"), Value::Long(3));
  EXPECT_TRUE(es->IsDescendant({"User", "a"}, {"Group", "h"}));
  EXPECT_TRUE(es->Tags({"Group", "g"})->as_record().empty());
}

TEST(Entities, RejectsMalformedEntityJson) {
  auto message = [](std::string_view text) {
    auto es = EntitiesJson(text);
    EXPECT_FALSE(es.ok()) << text;
    return es.ok() ? std::string() : es.error().message;
  };
  EXPECT_EQ(message("{}"), "entities must be a JSON array");
  EXPECT_EQ(message("[1]"), "an entity must be an object");
  EXPECT_EQ(message(R"([{"attrs": {}}])"), "entity without \"uid\"");
  EXPECT_EQ(message(R"([{"uid": {"type": "A"}}])"),
            "entity uid: expected {\"type\": string, \"id\": string}");
  EXPECT_EQ(message(R"([{"uid": {"type": "A", "id": "x"}, "attributes": {}}])"),
            "unknown member \"attributes\" in an entity (expected uid, attrs, parents, tags)");
  EXPECT_EQ(message(R"([{"uid": {"type": "A", "id": "x"}, "tags": [1]}])"),
            "\"tags\" of A::\"x\" must be an object");
  EXPECT_EQ(message(R"([{"uid": {"type": "A", "id": "x"}, "tags": {"t": 1.5}}])"),
            "\"tags\" of A::\"x\": floating-point number 1.5 is not a Cedar value");
  EXPECT_EQ(message(R"([{"uid": {"type": "A", "id": "x"}, "attrs": {"a": {"__extn": {"fn": "ip",
                      "arg": "x"}}}}])"),
            "\"attrs\" of A::\"x\": error while evaluating `ipaddr` extension function: invalid "
            "IP address: x");
  EXPECT_EQ(message(R"([{"uid": {"type": "A", "id": "x"}, "parents": {}}])"),
            "\"parents\" of A::\"x\" must be an array");
  auto twice = EntitiesJson(R"([{"uid": {"type": "A", "id": "x"}}, {"uid": {"type": "A", "id": "x"}}])");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, core::ErrorCode::kConflict);
  auto many = EntitiesJson(R"([{"uid": {"type": "A", "id": "x"}}, {"uid": {"type": "A", "id": "y"}}])", 1);
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.error().code, core::ErrorCode::kPayloadTooLarge);
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
