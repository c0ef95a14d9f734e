#include "policy/evaluator.h"

#include <gtest/gtest.h>

#include "policy/parser.h"

namespace mandate::policy {
namespace {

Value Json(std::string_view text) {
  auto j = core::Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  auto v = ValueFromJson(*j);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : Value();
}

class EvaluatorTest : public ::testing::Test {
 protected:
  EvaluatorTest() {
    request_.principal = {"Agent", "bot"};
    request_.action = {"Action", "jira:get_issue"};
    request_.resource = {"Upstream", "jira"};
    request_.context = Json(R"({"args": {"amount": 500, "env": "prod", "tags": ["a", "b"]},
                                "path": "/v1/issues/42", "n": 3, "flag": true, "empty": {},
                                "key with space": "yes"})");
    Add({"Agent", "bot"}, R"({"name": "bot", "level": 2, "owner": {"__entity":
                             {"type": "Human", "id": "alice"}}})",
        {{"Group", "support"}});
    Add({"Group", "support"}, "{}", {{"Group", "staff"}});
    Add({"Group", "staff"}, "{}", {});
    Add({"Human", "alice"}, R"({"dept": "finance"})", {{"Group", "finance"}});
    EXPECT_TRUE(entities_
                    .Add({"Human", "bob"},
                         Json(R"({"addr": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}}})"), {},
                         Json(R"({"team": "sre", "since": {"__extn": {"fn": "datetime",
                                  "arg": "2024-01-01"}}, "level": 3})"))
                    .ok());
    Add({"Action", "jira:get_issue"}, "{}", {{"Action", "jira"}, {"Action", "read"}});
  }

  void Add(EntityUid uid, std::string_view attrs, std::vector<EntityUid> parents) {
    ASSERT_TRUE(entities_.Add(std::move(uid), Json(attrs), std::move(parents)).ok());
  }

  core::Result<Value> Eval(std::string_view text) {
    auto e = ParseExpression(text, "expr");
    if (!e.ok()) return e.error();
    Evaluator evaluator(request_, entities_);
    return evaluator.Evaluate(**e, "expr");
  }

  // Evaluates to a bool, failing the test on error or another kind.
  bool True(std::string_view text) {
    auto v = Eval(text);
    EXPECT_TRUE(v.ok()) << text << ": " << v.error().message;
    if (!v.ok()) return false;
    EXPECT_TRUE(v->is_bool()) << text << " = " << v->ToString();
    return v->is_bool() && v->as_bool();
  }
  bool False(std::string_view text) {
    auto v = Eval(text);
    EXPECT_TRUE(v.ok()) << text << ": " << v.error().message;
    if (!v.ok()) return false;
    EXPECT_TRUE(v->is_bool()) << text << " = " << v->ToString();
    return v->is_bool() && !v->as_bool();
  }

  std::string Error(std::string_view text) {
    auto v = Eval(text);
    EXPECT_FALSE(v.ok()) << text << " = " << v->ToString();
    return v.ok() ? "" : v.error().message;
  }

  Request request_;
  Entities entities_;
};

TEST_F(EvaluatorTest, EvaluatesLiterals) {
  EXPECT_EQ(*Eval("42"), Value::Long(42));
  EXPECT_EQ(*Eval("-42"), Value::Long(-42));
  EXPECT_EQ(*Eval("\"hi\\n\""), Value::String("hi\n"));
  EXPECT_EQ(*Eval("true"), Value::Bool(true));
  EXPECT_EQ(*Eval("Acme::User::\"x\""), Value::Entity({"Acme::User", "x"}));
  EXPECT_EQ(*Eval("[3, 1, 3]"), Value::Set({Value::Long(1), Value::Long(3)}));
  EXPECT_EQ(*Eval("{a: 1, \"b\": [principal]}"),
            Json(R"({"a": 1, "b": [{"__entity": {"type": "Agent", "id": "bot"}}]})"));
  EXPECT_EQ(*Eval("[principal, 1 + 1]"),
            Value::Set({Value::Entity({"Agent", "bot"}), Value::Long(2)}));
}

TEST_F(EvaluatorTest, EvaluatesVariables) {
  EXPECT_EQ(*Eval("principal"), Value::Entity({"Agent", "bot"}));
  EXPECT_EQ(*Eval("action"), Value::Entity({"Action", "jira:get_issue"}));
  EXPECT_EQ(*Eval("resource"), Value::Entity({"Upstream", "jira"}));
  EXPECT_EQ(*Eval("context.n"), Value::Long(3));
}

TEST_F(EvaluatorTest, EqualityWorksAcrossAllKindsWithoutErrors) {
  EXPECT_TRUE(True("1 == 1"));
  EXPECT_TRUE(False("1 == \"1\""));
  EXPECT_TRUE(False("1 == true"));
  EXPECT_TRUE(True("1 != \"1\""));
  EXPECT_TRUE(True("principal == Agent::\"bot\""));
  EXPECT_TRUE(False("principal == Human::\"bot\""));
  EXPECT_TRUE(True("[1, 2] == [2, 1, 1]"));
  EXPECT_TRUE(True("{a: 1, b: [1]} == {b: [1], a: 1}"));
  EXPECT_TRUE(False("{a: 1} == {a: 1, b: 2}"));
  EXPECT_TRUE(True("context.args.tags == [\"b\", \"a\"]"));
  EXPECT_TRUE(True("context.empty == {}"));
  EXPECT_TRUE(True("principal.owner == Human::\"alice\""));
}

TEST_F(EvaluatorTest, ComparesLongsDatetimesAndDurationsOnly) {
  EXPECT_TRUE(True("1 < 2"));
  EXPECT_TRUE(False("2 < 2"));
  EXPECT_TRUE(True("2 <= 2"));
  EXPECT_TRUE(True("3 > 2"));
  EXPECT_TRUE(False("2 > 2"));
  EXPECT_TRUE(True("2 >= 2"));
  EXPECT_TRUE(True("-9223372036854775808 < 9223372036854775807"));
  EXPECT_TRUE(True("context.args.amount <= 50000"));
  EXPECT_EQ(Error("\"a\" < \"b\""),
            "type error: '<' expects long, datetime or duration operands, got string at expr:1:5");
  EXPECT_EQ(Error("1 >= true"),
            "type error: '>=' expects operands of type long, got bool at expr:1:3");
}

TEST_F(EvaluatorTest, DoesCheckedArithmetic) {
  EXPECT_EQ(*Eval("1 + 2 * 3 - 4"), Value::Long(3));
  EXPECT_EQ(*Eval("-context.n"), Value::Long(-3));
  EXPECT_EQ(*Eval("--3"), Value::Long(3));
  EXPECT_EQ(Error("9223372036854775807 + 1"), "integer overflow in '+' at expr:1:21");
  EXPECT_EQ(Error("-9223372036854775808 - 1"), "integer overflow in '-' at expr:1:22");
  EXPECT_EQ(Error("4611686018427387904 * 2"), "integer overflow in '*' at expr:1:21");
  EXPECT_EQ(Error("-(-9223372036854775808)"), "integer overflow in '-' at expr:1:1");
  EXPECT_EQ(Error("1 + \"a\""), "type error: '+' expects long operands, got string at expr:1:3");
  EXPECT_EQ(Error("-\"a\""), "type error: '-' expects a long, got string at expr:1:1");
}

TEST_F(EvaluatorTest, NotRequiresABool) {
  EXPECT_TRUE(True("!false"));
  EXPECT_TRUE(True("!!true"));
  EXPECT_EQ(Error("!1"), "type error: '!' expects a bool, got long at expr:1:1");
}

TEST_F(EvaluatorTest, AndOrShortCircuitAndRequireBools) {
  EXPECT_TRUE(True("true && true"));
  EXPECT_TRUE(False("true && false"));
  EXPECT_TRUE(True("false || true"));
  EXPECT_TRUE(False("false || false"));
  // The right operand is not evaluated once the left decides, so it cannot error.
  EXPECT_TRUE(False("false && (1 < \"x\")"));
  EXPECT_TRUE(False("false && 7"));
  EXPECT_TRUE(True("true || context.missing"));
  EXPECT_TRUE(False("context has missing && context.missing == 1"));
  // Every operand that is evaluated must be a bool.
  EXPECT_EQ(Error("true && 1"), "type error: '&&' expects bool operands, got long at expr:1:1");
  EXPECT_EQ(Error("1 && false"), "type error: '&&' expects bool operands, got long at expr:1:1");
  EXPECT_EQ(Error("false || \"x\""),
            "type error: '||' expects bool operands, got string at expr:1:1");
  EXPECT_EQ(Error("true && context.missing"),
            "record does not have the attribute 'missing' at expr:1:17");
}

TEST_F(EvaluatorTest, IfThenElseEvaluatesOneBranch) {
  EXPECT_EQ(*Eval("if context.flag then 1 else context.missing"), Value::Long(1));
  EXPECT_EQ(*Eval("if !context.flag then context.missing else \"b\""), Value::String("b"));
  EXPECT_EQ(Error("if 1 then 2 else 3"),
            "type error: 'if' expects a bool condition, got long at expr:1:1");
}

TEST_F(EvaluatorTest, InFollowsTheHierarchyTransitively) {
  EXPECT_TRUE(True("principal in Group::\"support\""));
  EXPECT_TRUE(True("principal in Group::\"staff\""));
  EXPECT_TRUE(True("principal in principal"));  // every entity is `in` itself
  EXPECT_TRUE(False("principal in Group::\"finance\""));
  EXPECT_TRUE(True("principal.owner in Group::\"finance\""));
  EXPECT_TRUE(True("Group::\"support\" in Group::\"staff\""));
  EXPECT_TRUE(False("Group::\"staff\" in Group::\"support\""));
  EXPECT_TRUE(True("action in Action::\"read\""));
  EXPECT_TRUE(False("action in Action::\"write\""));
  // An entity missing from the store is only `in` itself.
  EXPECT_TRUE(True("Ghost::\"x\" in Ghost::\"x\""));
  EXPECT_TRUE(False("Ghost::\"x\" in Group::\"staff\""));
}

TEST_F(EvaluatorTest, InAcceptsASetOfEntities) {
  EXPECT_TRUE(True("principal in [Group::\"finance\", Group::\"staff\"]"));
  EXPECT_TRUE(False("principal in [Group::\"finance\"]"));
  EXPECT_TRUE(False("principal in []"));
  EXPECT_TRUE(True("principal in [principal.owner, principal]"));
}

TEST_F(EvaluatorTest, InRejectsNonEntities) {
  EXPECT_EQ(Error("1 in Group::\"staff\""),
            "type error: 'in' expects an entity on its left, got long at expr:1:3");
  EXPECT_EQ(Error("principal in \"staff\""),
            "type error: 'in' expects an entity or a set of entities, got string at expr:1:11");
  // As the reference: every element of the set must be an entity, even after a match.
  EXPECT_EQ(Error("principal in [principal, 1]"),
            "type error: 'in' expects a set of entities, got long at expr:1:11");
}

TEST_F(EvaluatorTest, HasTestsRecordsAndEntities) {
  EXPECT_TRUE(True("context has args"));
  EXPECT_TRUE(True("context.args has env"));
  EXPECT_TRUE(False("context.args has region"));
  EXPECT_TRUE(True("context has \"key with space\""));
  EXPECT_TRUE(True("principal has name"));
  EXPECT_TRUE(False("principal has email"));
  EXPECT_TRUE(False("Ghost::\"x\" has name"));  // unknown entity: false, not an error
  EXPECT_TRUE(True("context has args.amount"));
  EXPECT_TRUE(False("context has args.region"));
  EXPECT_TRUE(False("context has nothing.at.all"));
  EXPECT_TRUE(True("principal has owner.dept"));  // through an entity-valued attribute
  EXPECT_EQ(Error("context.n has x"),
            "type error: 'has' expects an entity or a record, got long at expr:1:11");
  // The extended form only evaluates prefixes it has checked, so a non-record prefix errors
  // where the plain attribute read would.
  EXPECT_EQ(Error("context has n.x"),
            "type error: 'has' expects an entity or a record, got long at expr:1:9");
}

TEST_F(EvaluatorTest, ReadsAttributes) {
  EXPECT_EQ(*Eval("context.args.amount"), Value::Long(500));
  EXPECT_EQ(*Eval("context[\"args\"][\"env\"]"), Value::String("prod"));
  EXPECT_EQ(*Eval("context[\"key with space\"]"), Value::String("yes"));
  EXPECT_EQ(*Eval("principal.level"), Value::Long(2));
  EXPECT_EQ(*Eval("principal.owner.dept"), Value::String("finance"));
  EXPECT_EQ(*Eval("{a: {b: 7}}.a.b"), Value::Long(7));                           // from a literal
  EXPECT_EQ(*Eval("{a: {b: principal}}.a.b"), Value::Entity({"Agent", "bot"}));  // built
}

TEST_F(EvaluatorTest, MissingAttributesAndEntitiesAreErrors) {
  EXPECT_EQ(Error("context.args.region"),
            "record does not have the attribute 'region' at expr:1:14");
  EXPECT_EQ(Error("principal.email"),
            "entity Agent::\"bot\" does not have the attribute 'email' at expr:1:11");
  EXPECT_EQ(Error("Ghost::\"x\".name"), "entity Ghost::\"x\" does not exist at expr:1:12");
  EXPECT_EQ(Error("context.n.x"),
            "type error: attribute access expects an entity or a record, got long at "
            "expr:1:11");
}

TEST_F(EvaluatorTest, LikeMatchesWildcardsAndEscapedStars) {
  EXPECT_TRUE(True("context.path like \"/v1/*\""));
  EXPECT_TRUE(True("context.path like \"*/issues/*\""));
  EXPECT_TRUE(True("context.path like \"*\""));
  EXPECT_TRUE(True("context.path like \"/v1/issues/42\""));
  EXPECT_TRUE(False("context.path like \"/v1/issues/4\""));
  EXPECT_TRUE(False("context.path like \"/v2/*\""));
  EXPECT_TRUE(True("\"\" like \"\""));
  EXPECT_TRUE(True("\"\" like \"**\""));
  EXPECT_TRUE(False("\"\" like \"?\""));
  EXPECT_TRUE(True("\"aXbXc\" like \"a*b*c\""));
  EXPECT_TRUE(True("\"abc\" like \"a**c\""));
  EXPECT_TRUE(False("\"a\" like \"a*a\""));  // prefix and suffix must not overlap
  EXPECT_TRUE(True("\"aa\" like \"a*a\""));
  EXPECT_TRUE(True("\"abab\" like \"*ab\""));
  EXPECT_TRUE(True("\"mississippi\" like \"*sip*\""));
  EXPECT_TRUE(False("\"mississippi\" like \"*sipx*\""));
  // \* is a literal star.
  EXPECT_TRUE(True("\"a*b\" like \"a\\*b\""));
  EXPECT_TRUE(False("\"axb\" like \"a\\*b\""));
  EXPECT_TRUE(True("\"a*bc\" like \"a\\**\""));
  // Wildcards match whole characters.
  EXPECT_TRUE(True("\"héllo\" like \"h*o\""));
  EXPECT_TRUE(True("\"héllo\" like \"*é*\""));
  EXPECT_EQ(Error("context.n like \"*\""),
            "type error: 'like' expects a string, got long at expr:1:11");
}

TEST_F(EvaluatorTest, SetMethods) {
  EXPECT_TRUE(True("context.args.tags.contains(\"a\")"));
  EXPECT_TRUE(False("context.args.tags.contains(\"c\")"));
  EXPECT_TRUE(True("[principal].contains(Agent::\"bot\")"));
  EXPECT_TRUE(False("[1].contains(\"1\")"));
  EXPECT_TRUE(True("[1, 2, 3].containsAll([3, 1])"));
  EXPECT_TRUE(False("[1, 2].containsAll([1, 4])"));
  EXPECT_TRUE(True("[1].containsAll([])"));
  EXPECT_TRUE(True("[1, 2].containsAny([4, 2])"));
  EXPECT_TRUE(False("[1, 2].containsAny([])"));
  EXPECT_TRUE(True("[].isEmpty()"));
  EXPECT_TRUE(False("[1].isEmpty()"));
  EXPECT_EQ(Error("\"abc\".contains(\"a\")"),
            "type error: 'contains' expects a set, got string at expr:1:7");
  EXPECT_EQ(Error("[1].containsAll(1)"),
            "type error: 'containsAll' expects a set argument, got long at expr:1:5");
  EXPECT_EQ(Error("{}.isEmpty()"), "type error: 'isEmpty' expects a set, got record at expr:1:4");
}

TEST_F(EvaluatorTest, IsTestsTheEntityType) {
  EXPECT_TRUE(True("principal is Agent"));
  EXPECT_TRUE(False("principal is Human"));
  EXPECT_TRUE(False("principal is Acme::Agent"));
  EXPECT_TRUE(True("Acme::Agent::\"x\" is Acme::Agent"));
  EXPECT_TRUE(True("principal is Agent in Group::\"staff\""));
  EXPECT_TRUE(False("principal is Agent in Group::\"finance\""));
  EXPECT_TRUE(True("principal is Agent in [Group::\"finance\", Group::\"support\"]"));
  // A type mismatch decides before the `in` operand is evaluated.
  EXPECT_TRUE(False("principal is Human in context.missing"));
  EXPECT_EQ(Error("context is Agent"),
            "type error: 'is' expects an entity, got record at expr:1:9");
}

TEST_F(EvaluatorTest, CallsExtensionFunctionsAndMethods) {
  EXPECT_TRUE(True("ip(\"10.1.2.3\").isInRange(ip(\"10.0.0.0/8\"))"));
  EXPECT_TRUE(True("Human::\"bob\".addr.isIpv4()"));
  EXPECT_TRUE(True("decimal(\"1.25\").lessThan(decimal(\"1.2501\"))"));
  EXPECT_TRUE(True("datetime(\"2024-01-01\").offset(duration(\"1h\")) == "
                   "datetime(\"2024-01-01T01:00:00Z\")"));
  EXPECT_EQ(*Eval("duration(\"90m\").toHours()"), Value::Long(1));
  // The argument may be computed at run time.
  EXPECT_EQ(Error("ip(context.path)"),
            "error while evaluating `ipaddr` extension function: error parsing IP address from "
            "the string `` at expr:1:1");
}

TEST_F(EvaluatorTest, ExtensionValuesAreEqualByValue) {
  EXPECT_TRUE(True("ip(\"10.0.0.1\") == ip(\"10.0.0.1/32\")"));
  EXPECT_TRUE(False("ip(\"10.0.0.1/24\") == ip(\"10.0.0.0/24\")"));
  EXPECT_TRUE(True("decimal(\"1.0\") == decimal(\"1.0000\")"));
  EXPECT_TRUE(False("decimal(\"1.0\") == \"1.0\""));
  EXPECT_TRUE(True("datetime(\"2024-01-01\") == datetime(\"2024-01-01T00:00:00.000+0000\")"));
  EXPECT_TRUE(False("duration(\"1ms\") == decimal(\"0.0001\")"));
  EXPECT_TRUE(True("[ip(\"::1\"), ip(\"0:0::1/128\")] == [ip(\"::1\")]"));
  EXPECT_TRUE(True("[decimal(\"1.0\"), 1].contains(decimal(\"1.00\"))"));
}

TEST_F(EvaluatorTest, OrdersDatetimesAndDurationsButNotOtherExtensions) {
  EXPECT_TRUE(True("datetime(\"2024-01-01\") < datetime(\"2024-01-02\")"));
  EXPECT_TRUE(True("datetime(\"2024-01-01\") <= datetime(\"2024-01-01\")"));
  EXPECT_TRUE(True("duration(\"1d\") >= duration(\"24h\")"));
  EXPECT_TRUE(False("duration(\"-1ms\") > duration(\"0ms\")"));
  EXPECT_EQ(Error("decimal(\"1.0\") < decimal(\"2.0\")"),
            "type error: '<' expects long, datetime or duration operands, got decimal at "
            "expr:1:16");
  EXPECT_EQ(Error("datetime(\"2024-01-01\") < duration(\"1d\")"),
            "type error: '<' expects operands of type datetime, got duration at expr:1:24");
  EXPECT_EQ(Error("duration(\"1h\") < 5"),
            "type error: '<' expects operands of type duration, got long at expr:1:16");
  EXPECT_EQ(Error("5 < duration(\"1h\")"),
            "type error: '<' expects operands of type long, got duration at expr:1:3");
  EXPECT_EQ(Error("ip(\"::1\") > ip(\"::2\")"),
            "type error: '>' expects long, datetime or duration operands, got ipaddr at "
            "expr:1:11");
}

TEST_F(EvaluatorTest, ExtensionErrorsAreEvaluationErrors) {
  // Invalid literals, wrong argument counts and type errors: the reference parses these and
  // fails at evaluation, so the policy is skipped rather than the file refused.
  EXPECT_EQ(Error("ip(\"10.0.0.256\").isIpv4()"),
            "error while evaluating `ipaddr` extension function: invalid IP address: 10.0.0.256 "
            "at expr:1:1");
  EXPECT_EQ(Error("decimal(\"1.23456\")"),
            "error while evaluating `decimal` extension function: too many digits after the "
            "decimal in `1.23456` at expr:1:1");
  EXPECT_EQ(Error("ip(\"::1\").isIpv4(1)"),
            "wrong number of arguments provided to extension function `isIpv4`: expected 1, got "
            "2 at expr:1:11");
  EXPECT_EQ(Error("ip(\"1.2.3.4\", \"x\")"),
            "wrong number of arguments provided to extension function `ip`: expected 1, got 2 at "
            "expr:1:1");
  EXPECT_EQ(Error("\"1.0\".lessThan(decimal(\"1.0\"))"),
            "type error: expected decimal, got string (maybe you forgot to apply the `decimal` "
            "constructor?) at expr:1:7");
  EXPECT_EQ(Error("ip(1)"), "type error: expected string, got long at expr:1:1");
  EXPECT_EQ(Error("ip(\"::1\") has x"),
            "type error: 'has' expects an entity or a record, got ipaddr at expr:1:11");
  EXPECT_EQ(Error("if ip(\"::1\") then 1 else 2"),
            "type error: 'if' expects a bool condition, got ipaddr at expr:1:1");
  // Every argument is evaluated first: an error there wins.
  EXPECT_EQ(Error("ip(\"::1\").isInRange(context.missing)"),
            "record does not have the attribute 'missing' at expr:1:29");
}

TEST_F(EvaluatorTest, ReadsEntityTags) {
  EXPECT_TRUE(True("Human::\"bob\".hasTag(\"team\")"));
  EXPECT_TRUE(False("Human::\"bob\".hasTag(\"addr\")"));  // an attribute, not a tag
  EXPECT_TRUE(False("principal.hasTag(\"team\")"));        // an entity without tags
  EXPECT_TRUE(False("Ghost::\"x\".hasTag(\"team\")"));     // not in the store: false
  EXPECT_EQ(*Eval("Human::\"bob\".getTag(\"team\")"), Value::String("sre"));
  EXPECT_EQ(*Eval("Human::\"bob\".getTag(if true then \"level\" else \"x\") + 1"),
            Value::Long(4));
  EXPECT_TRUE(True("Human::\"bob\".getTag(\"since\") < datetime(\"2025-01-01\")"));
  EXPECT_TRUE(
      True("Human::\"bob\".hasTag(\"team\") && Human::\"bob\".getTag(\"team\") == \"sre\""));
}

TEST_F(EvaluatorTest, TagErrors) {
  EXPECT_EQ(Error("Human::\"bob\".getTag(\"nope\")"),
            "entity Human::\"bob\" does not have the tag 'nope' at expr:1:14");
  EXPECT_EQ(Error("Ghost::\"x\".getTag(\"team\")"),
            "entity Ghost::\"x\" does not exist at expr:1:12");
  EXPECT_EQ(Error("context.getTag(\"a\")"),
            "type error: 'getTag' expects an entity, got record at expr:1:9");
  EXPECT_EQ(Error("principal.hasTag(1)"),
            "type error: 'hasTag' expects a string tag, got long at expr:1:11");
}

TEST_F(EvaluatorTest, ReportsErrorsAtTheFaultyNode) {
  EXPECT_EQ(Error("1 == 1 &&\n  context.args.x > 0"),
            "record does not have the attribute 'x' at expr:2:16");
}

}  // namespace
}  // namespace mandate::policy
