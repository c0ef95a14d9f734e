#include "policy/parser.h"

#include <gtest/gtest.h>

#include "mandate/core/limits.h"
#include "mandate/policy/policy_set.h"
#include "policy/ast.h"

namespace mandate::policy {
namespace {

using Op = ScopeConstraint::Op;

PolicySet MustParse(std::string_view text, std::string_view file = "a.cedar") {
  auto set = PolicySet::Parse(text, file);
  EXPECT_TRUE(set.ok()) << set.error().message;
  return set.ok() ? std::move(*set) : PolicySet();
}

// The full error message of parsing `text` as policies/a.cedar.
std::string ParseError(std::string_view text) {
  auto set = PolicySet::Parse(text, "policies/a.cedar");
  EXPECT_FALSE(set.ok()) << text;
  if (set.ok()) return "";
  EXPECT_EQ(set.error().code, core::ErrorCode::kBadRequest) << set.error().message;
  return set.error().message;
}

// The error of a policy whose only condition is `when { <expr> }`; the condition starts at
// line 1, column 44.
std::string ConditionError(std::string_view expr) {
  return ParseError("permit(principal, action, resource) when { " + std::string(expr) + " };");
}

std::unique_ptr<Expr> MustParseExpr(std::string_view text) {
  auto e = ParseExpression(text, "e");
  EXPECT_TRUE(e.ok()) << text << ": " << e.error().message;
  return e.ok() ? std::move(*e) : nullptr;
}

// ---- Policies and scope ----------------------------------------------------------------------

TEST(Parser, ParsesTheMinimalPolicy) {
  PolicySet set = MustParse("permit(principal, action, resource);");
  ASSERT_EQ(set.size(), 1u);
  const Policy& p = set.policies()[0];
  EXPECT_EQ(p.id, "a.cedar:0");
  EXPECT_FALSE(p.is_forbid);
  EXPECT_EQ(p.principal.op, Op::kAny);
  EXPECT_EQ(p.action.op, Op::kAny);
  EXPECT_EQ(p.resource.op, Op::kAny);
  EXPECT_TRUE(p.conditions.empty());
  EXPECT_TRUE(p.annotations.empty());
  EXPECT_EQ(p.location.ToString(), "a.cedar:1:1");
}

TEST(Parser, AcceptsAnEmptyFile) {
  EXPECT_EQ(MustParse("").size(), 0u);
  EXPECT_EQ(MustParse("  // nothing but comments\n").size(), 0u);
}

TEST(Parser, GeneratesIdsFromFileNameAndIndex) {
  PolicySet set = MustParse(
      "permit(principal, action, resource);\n"
      "@id(\"named\") forbid(principal, action, resource);\n"
      "forbid(principal, action, resource);",
      "policies/mandate.cedar");
  ASSERT_EQ(set.size(), 3u);
  EXPECT_EQ(set.policies()[0].id, "mandate.cedar:0");
  EXPECT_EQ(set.policies()[1].id, "named");
  EXPECT_EQ(set.policies()[2].id, "mandate.cedar:2");
  EXPECT_TRUE(set.policies()[2].is_forbid);
  EXPECT_EQ(set.policies()[2].index_in_file, 2u);
  EXPECT_EQ(set.policies()[1].location.ToString(), "policies/mandate.cedar:2:1");
  ASSERT_NE(set.Find("named"), nullptr);
  EXPECT_TRUE(set.Find("named")->is_forbid);
  EXPECT_EQ(set.Find("missing"), nullptr);
}

TEST(Parser, KeepsEveryAnnotation) {
  PolicySet set = MustParse(
      "@id(\"refund-needs-two\") @approval(\"finance-approvers\")\n"
      "@note(\"say \\\"hi\\\"\") @flag\n"
      "permit(principal, action, resource);");
  const Policy& p = set.policies()[0];
  EXPECT_EQ(p.id, "refund-needs-two");
  EXPECT_EQ(p.annotations.size(), 4u);
  ASSERT_NE(p.FindAnnotation("approval"), nullptr);
  EXPECT_EQ(*p.FindAnnotation("approval"), "finance-approvers");
  EXPECT_EQ(*p.FindAnnotation("note"), "say \"hi\"");
  EXPECT_EQ(*p.FindAnnotation("flag"), "");
  EXPECT_EQ(p.FindAnnotation("absent"), nullptr);
}

TEST(Parser, ParsesEveryPrincipalAndResourceConstraint) {
  PolicySet set = MustParse(R"(
    permit(principal == Agent::"triage-bot", action, resource == Upstream::"jira");
    permit(principal in Group::"support", action, resource in Upstream::"jira");
    permit(principal is Human, action, resource is Acme::Repo);
    permit(principal is Agent in Group::"g", action, resource is Repo in Org::"o");
    permit(principal == Acme::Corp::Human::"al\"ice", action, resource,);
  )");
  ASSERT_EQ(set.size(), 5u);
  const auto& ps = set.policies();
  EXPECT_EQ(ps[0].principal.op, Op::kEq);
  EXPECT_EQ(ps[0].principal.entities, (std::vector<EntityUid>{{"Agent", "triage-bot"}}));
  EXPECT_EQ(ps[0].resource.op, Op::kEq);
  EXPECT_EQ(ps[1].principal.op, Op::kIn);
  EXPECT_EQ(ps[1].principal.entities, (std::vector<EntityUid>{{"Group", "support"}}));
  EXPECT_EQ(ps[1].resource.op, Op::kIn);
  EXPECT_EQ(ps[2].principal.op, Op::kIs);
  EXPECT_EQ(ps[2].principal.entity_type, "Human");
  EXPECT_EQ(ps[2].resource.entity_type, "Acme::Repo");
  EXPECT_EQ(ps[3].principal.op, Op::kIsIn);
  EXPECT_EQ(ps[3].principal.entity_type, "Agent");
  EXPECT_EQ(ps[3].principal.entities, (std::vector<EntityUid>{{"Group", "g"}}));
  EXPECT_EQ(ps[3].resource.op, Op::kIsIn);
  EXPECT_EQ(ps[4].principal.entities, (std::vector<EntityUid>{{"Acme::Corp::Human", "al\"ice"}}));
}

TEST(Parser, ParsesEveryActionConstraint) {
  PolicySet set = MustParse(R"(
    permit(principal, action == Action::"jira:get", resource);
    permit(principal, action in Action::"read", resource);
    permit(principal, action in [Action::"read", Mandate::Action::"write",], resource);
    permit(principal, action in [], resource);
  )");
  const auto& ps = set.policies();
  EXPECT_EQ(ps[0].action.op, Op::kEq);
  EXPECT_EQ(ps[0].action.entities, (std::vector<EntityUid>{{"Action", "jira:get"}}));
  EXPECT_EQ(ps[1].action.op, Op::kIn);
  EXPECT_EQ(ps[2].action.op, Op::kIn);
  EXPECT_EQ(ps[2].action.entities,
            (std::vector<EntityUid>{{"Action", "read"}, {"Mandate::Action", "write"}}));
  EXPECT_EQ(ps[3].action.op, Op::kIn);
  EXPECT_TRUE(ps[3].action.entities.empty());
}

TEST(Parser, ParsesWhenAndUnlessClausesInOrder) {
  PolicySet set = MustParse(
      "forbid(principal, action, resource)\n"
      "  when { true }\n"
      "  unless { false }\n"
      "  when { 1 == 1 };");
  const Policy& p = set.policies()[0];
  ASSERT_EQ(p.conditions.size(), 3u);
  EXPECT_TRUE(p.conditions[0].is_when);
  EXPECT_FALSE(p.conditions[1].is_when);
  EXPECT_TRUE(p.conditions[2].is_when);
  EXPECT_EQ(p.conditions[1].location.ToString(), "a.cedar:3:3");
  EXPECT_EQ(p.conditions[2].expr->kind, ExprKind::kEq);
}

TEST(Parser, CopiesOfAPolicySetShareTheirAsts) {
  PolicySet set = MustParse("permit(principal, action, resource) when { true };");
  PolicySet copy = set;
  EXPECT_EQ(copy.policies()[0].conditions[0].expr.get(),
            set.policies()[0].conditions[0].expr.get());
  ASSERT_NE(copy.Find("a.cedar:0"), nullptr);
}

// ---- Expressions ---------------------------------------------------------------------------

TEST(Parser, FollowsCedarPrecedence) {
  // || < && < relations < + - < * < unary < member access.
  auto e = MustParseExpr("true || false && 1 + 2 * -context.y < 3");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kind, ExprKind::kOr);
  ASSERT_EQ(e->children.size(), 2u);
  const Expr& conj = *e->children[1];
  ASSERT_EQ(conj.kind, ExprKind::kAnd);
  const Expr& lt = *conj.children[1];
  ASSERT_EQ(lt.kind, ExprKind::kLt);
  const Expr& add = *lt.children[0];
  ASSERT_EQ(add.kind, ExprKind::kAdd);
  const Expr& mul = *add.children[1];
  ASSERT_EQ(mul.kind, ExprKind::kMul);
  const Expr& neg = *mul.children[1];
  ASSERT_EQ(neg.kind, ExprKind::kNeg);
  ASSERT_EQ(neg.children[0]->kind, ExprKind::kGetAttr);
  EXPECT_EQ(neg.children[0]->name, "y");
}

TEST(Parser, KeepsAndOrChainsFlat) {
  auto e = MustParseExpr("true && false && true && false");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->kind, ExprKind::kAnd);
  EXPECT_EQ(e->children.size(), 4u);
  EXPECT_EQ(e->depth, 2u);
}

TEST(Parser, ArithmeticIsLeftAssociative) {
  auto e = MustParseExpr("1 - 2 - 3");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kind, ExprKind::kSub);
  EXPECT_EQ(e->children[0]->kind, ExprKind::kSub);
  EXPECT_EQ(e->children[1]->value, Value::Long(3));
}

TEST(Parser, ParsesLiteralsAndFoldsConstantCollections) {
  auto e = MustParseExpr(R"([1, "a", true, Acme::User::"u", {k: [2, 1, 1]}, ])");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kind, ExprKind::kLiteral);
  EXPECT_EQ(e->value.ToString(), R"([true, 1, "a", Acme::User::"u", {"k": [1, 2]}])");
  auto r = MustParseExpr(R"({"quoted key": 1, principal: 2, plain: -3})");
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->kind, ExprKind::kLiteral);
  EXPECT_EQ(r->value.ToString(), R"({"plain": -3, "principal": 2, "quoted key": 1})");
  auto dynamic = MustParseExpr("[principal, 1]");
  ASSERT_NE(dynamic, nullptr);
  EXPECT_EQ(dynamic->kind, ExprKind::kSet);
  auto dynamic_record = MustParseExpr("{a: context}");
  ASSERT_NE(dynamic_record, nullptr);
  EXPECT_EQ(dynamic_record->kind, ExprKind::kRecord);
  EXPECT_EQ(dynamic_record->keys, (std::vector<std::string>{"a"}));
  EXPECT_EQ(MustParseExpr("[]")->value, Value::Set({}));
  EXPECT_EQ(MustParseExpr("{}")->value, Value());
}

TEST(Parser, ParsesNegativeLiteralsIncludingTheSmallestLong) {
  EXPECT_EQ(MustParseExpr("-9223372036854775808")->value, Value::Long(INT64_MIN));
  EXPECT_EQ(MustParseExpr("9223372036854775807")->value, Value::Long(INT64_MAX));
  auto twice = MustParseExpr("--5");
  ASSERT_EQ(twice->kind, ExprKind::kNeg);
  EXPECT_EQ(twice->children[0]->value, Value::Long(-5));
  EXPECT_EQ(MustParseExpr("-(5)")->kind, ExprKind::kNeg);
}

TEST(Parser, ParsesVariablesAttributesAndMethods) {
  auto e = MustParseExpr(R"(context["a b"].c.contains(principal))");
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->kind, ExprKind::kContains);
  ASSERT_EQ(e->children[0]->kind, ExprKind::kGetAttr);
  EXPECT_EQ(e->children[0]->name, "c");
  EXPECT_EQ(e->children[0]->children[0]->name, "a b");
  EXPECT_EQ(e->children[0]->children[0]->children[0]->var, Var::kContext);
  EXPECT_EQ(e->children[1]->var, Var::kPrincipal);
  EXPECT_EQ(MustParseExpr("[1].containsAll([1])")->kind, ExprKind::kContainsAll);
  EXPECT_EQ(MustParseExpr("[1].containsAny([1])")->kind, ExprKind::kContainsAny);
  EXPECT_EQ(MustParseExpr("[1].isEmpty()")->kind, ExprKind::kIsEmpty);
  EXPECT_EQ(MustParseExpr("resource.principal")->name, "principal");
}

TEST(Parser, ParsesHasLikeIsAndIf) {
  auto has = MustParseExpr("context has amount");
  ASSERT_EQ(has->kind, ExprKind::kHasAttr);
  EXPECT_EQ(has->name, "amount");
  EXPECT_EQ(MustParseExpr(R"(context has "a b")")->name, "a b");
  auto nested = MustParseExpr("context has a.b");
  ASSERT_EQ(nested->kind, ExprKind::kAnd);
  EXPECT_EQ(nested->children[1]->kind, ExprKind::kHasAttr);
  EXPECT_EQ(nested->children[1]->children[0]->kind, ExprKind::kGetAttr);
  auto like = MustParseExpr(R"(context.path like "/v1/*\*")");
  ASSERT_EQ(like->kind, ExprKind::kLike);
  EXPECT_EQ(like->pattern.segments, (std::vector<std::string>{"/v1/", "*"}));
  EXPECT_EQ(like->pattern.ToString(), R"("/v1/*\*")");
  auto is = MustParseExpr(R"(principal is Acme::User in Group::"g")");
  ASSERT_EQ(is->kind, ExprKind::kIs);
  EXPECT_EQ(is->name, "Acme::User");
  EXPECT_EQ(is->children.size(), 2u);
  auto cond = MustParseExpr("if true then 1 else 2");
  ASSERT_EQ(cond->kind, ExprKind::kIf);
  EXPECT_EQ(cond->children.size(), 3u);
  EXPECT_EQ(MustParseExpr("principal in [Group::\"a\"]")->kind, ExprKind::kIn);
}

TEST(Parser, RecordsSourceLocationsOfOperators) {
  auto e = MustParseExpr("1 +\n  2 < 3");
  ASSERT_EQ(e->kind, ExprKind::kLt);
  EXPECT_EQ(e->line, 2u);
  EXPECT_EQ(e->column, 5u);
  EXPECT_EQ(e->children[0]->line, 1u);
  EXPECT_EQ(e->children[0]->column, 3u);
}

// ---- Errors: policies -------------------------------------------------------------------------

TEST(ParserErrors, NamesFileLineColumnAndWhatWasExpected) {
  EXPECT_EQ(ParseError("// header\n"
                       "permit(principal, action,\n"
                       "       resource when { true };"),
            "policies/a.cedar:3:17: expected ')' after scope, found 'when'");
}

TEST(ParserErrors, RejectsMissingSemicolon) {
  EXPECT_EQ(ParseError("permit(principal, action, resource)"),
            "policies/a.cedar:1:36: expected 'when', 'unless' or ';' after scope, found end of "
            "file");
  EXPECT_EQ(ParseError("permit(principal, action, resource) when { true }\npermit"),
            "policies/a.cedar:2:1: expected 'when', 'unless' or ';', found 'permit'");
}

TEST(ParserErrors, RejectsUnknownEffect) {
  EXPECT_EQ(ParseError("allow(principal, action, resource);"),
            "policies/a.cedar:1:1: expected 'permit' or 'forbid', found 'allow'");
  EXPECT_EQ(ParseError("@id(\"x\") ;"),
            "policies/a.cedar:1:10: expected 'permit' or 'forbid' after annotations, found ';'");
}

TEST(ParserErrors, RejectsMalformedHeads) {
  EXPECT_EQ(ParseError("permit principal, action, resource);"),
            "policies/a.cedar:1:8: expected '(' after 'permit', found 'principal'");
  EXPECT_EQ(ParseError("permit(action, principal, resource);"),
            "policies/a.cedar:1:8: expected 'principal', found 'action'");
  EXPECT_EQ(ParseError("permit(principal action, resource);"),
            "policies/a.cedar:1:18: expected ',' after the principal constraint, found "
            "'action'");
  EXPECT_EQ(ParseError("permit(principal, action resource);"),
            "policies/a.cedar:1:26: expected ',' after the action constraint, found "
            "'resource'");
  EXPECT_EQ(ParseError("permit(principal, action);"),
            "policies/a.cedar:1:25: expected ',' after the action constraint, found ')'");
  EXPECT_EQ(ParseError("permit(principal, action, resource, context);"),
            "policies/a.cedar:1:35: expected ')' after scope, found ','");
}

TEST(ParserErrors, RejectsInvalidScopeConstraints) {
  EXPECT_EQ(ParseError("permit(principal = User::\"a\", action, resource);"),
            "policies/a.cedar:1:18: '=' is not an operator; did you mean '=='?");
  EXPECT_EQ(ParseError("permit(principal != User::\"a\", action, resource);"),
            "policies/a.cedar:1:18: '!=' is not allowed in the scope; use '==', 'in' or 'is' "
            "(or move the test into a 'when' condition)");
  EXPECT_EQ(ParseError("permit(principal in [User::\"a\"], action, resource);"),
            "policies/a.cedar:1:21: 'principal in [...]' is not allowed: only the action scope "
            "takes a list; use a single entity");
  EXPECT_EQ(ParseError("permit(principal == context, action, resource);"),
            "policies/a.cedar:1:28: expected '::' and a quoted id after 'context', found ','");
  EXPECT_EQ(ParseError("permit(principal == 1, action, resource);"),
            "policies/a.cedar:1:21: expected an entity (Type::\"id\") after '==', found '1'");
  EXPECT_EQ(ParseError("permit(principal is User::\"a\", action, resource);"),
            "policies/a.cedar:1:25: expected ',' after the principal constraint, found "
            "'::'");
  EXPECT_EQ(ParseError("permit(principal, action is Action, resource);"),
            "policies/a.cedar:1:26: 'is' is not allowed in the action scope");
  EXPECT_EQ(ParseError("permit(principal, action == User::\"a\", resource);"),
            "policies/a.cedar:1:29: the action scope must name actions (type Action or "
            "Namespace::Action), found User::\"a\"");
  EXPECT_EQ(ParseError("permit(principal, action in [Action::\"a\" Action::\"b\"], resource);"),
            "policies/a.cedar:1:42: expected ',' or ']' in the action list, found 'Action'");
  EXPECT_EQ(ParseError("permit(principal, action in [Action::\"a\", MyAction::\"b\"], resource);"),
            "policies/a.cedar:1:43: the action scope must name actions (type Action or "
            "Namespace::Action), found MyAction::\"b\"");
}

TEST(ParserErrors, RejectsTemplates) {
  EXPECT_EQ(ParseError("permit(principal == ?principal, action, resource);"),
            "policies/a.cedar:1:21: policy templates are not supported (found slot "
            "'?principal')");
  EXPECT_EQ(ConditionError("?resource"),
            "policies/a.cedar:1:44: policy templates are not supported (found slot "
            "'?resource')");
}

TEST(ParserErrors, RejectsBadAnnotations) {
  EXPECT_EQ(ParseError("@id(\"a\") @id(\"b\") permit(principal, action, resource);"),
            "policies/a.cedar:1:11: duplicate annotation '@id'");
  EXPECT_EQ(ParseError("@if(\"a\") permit(principal, action, resource);"),
            "policies/a.cedar:1:2: 'if' is a reserved word and cannot name an annotation");
  EXPECT_EQ(ParseError("@id(42) permit(principal, action, resource);"),
            "policies/a.cedar:1:5: expected a string value for annotation '@id', found '42'");
  EXPECT_EQ(ParseError("@id(\"a\" permit(principal, action, resource);"),
            "policies/a.cedar:1:9: expected ')' after the annotation value, found 'permit'");
  EXPECT_EQ(ParseError("@(\"a\") permit(principal, action, resource);"),
            "policies/a.cedar:1:2: expected an annotation name after '@', found '('");
  EXPECT_EQ(ParseError("@id(\"\\q\") permit(principal, action, resource);"),
            "policies/a.cedar:1:5: invalid escape '\\q'");
}

TEST(ParserErrors, RejectsEmptyAndUnclosedConditions) {
  EXPECT_EQ(ParseError("permit(principal, action, resource) when { };"),
            "policies/a.cedar:1:44: empty 'when' condition: write an expression or remove the "
            "clause");
  EXPECT_EQ(ParseError("permit(principal, action, resource) unless true;"),
            "policies/a.cedar:1:44: expected '{' after 'unless', found 'true'");
  EXPECT_EQ(ParseError("permit(principal, action, resource) when { true ;"),
            "policies/a.cedar:1:49: expected '}' after the condition, found ';'");
}

TEST(ParserErrors, RejectsDuplicateIdsInOneFile) {
  auto set = PolicySet::Parse(
      "@id(\"x\") permit(principal, action, resource);\n"
      "@id(\"x\") forbid(principal, action, resource);",
      "a.cedar");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kConflict);
  EXPECT_EQ(set.error().message, "duplicate policy id 'x' (a.cedar:1:1 and a.cedar:2:1)");
}

TEST(ParserErrors, RejectsAnIdThatCollidesWithAGeneratedOne) {
  auto set = PolicySet::Parse(
      "permit(principal, action, resource);\n"
      "@id(\"a.cedar:0\") forbid(principal, action, resource);",
      "a.cedar");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kConflict);
}

// ---- Extension functions and tags ------------------------------------------------------------

TEST(Parser, FoldsConstructorsOfValidLiteralsOnce) {
  auto ip = MustParseExpr(R"(ip("10.0.0.0/8"))");
  ASSERT_NE(ip, nullptr);
  ASSERT_EQ(ip->kind, ExprKind::kLiteral);
  EXPECT_TRUE(ip->value.is_extension(ExtensionType::kIpAddr));
  // Escapes are undone before the literal is parsed.
  EXPECT_EQ(MustParseExpr(R"(ip("\x31\u{30}.0.0.1"))")->value, MustParseExpr(R"(ip("10.0.0.1"))")->value);
  // A set of folded constructors is a literal too.
  auto set = MustParseExpr(R"([decimal("1.0"), decimal("1.00"), duration("1h")])");
  ASSERT_EQ(set->kind, ExprKind::kLiteral);
  EXPECT_EQ(set->value.as_set().size(), 2u);
}

TEST(Parser, KeepsCallsThatMustBeEvaluated) {
  // An invalid literal is an evaluation error in the reference, not a parse error.
  auto bad = MustParseExpr(R"(ip("10.0.0.256"))");
  ASSERT_NE(bad, nullptr);
  EXPECT_EQ(bad->kind, ExprKind::kExtensionCall);
  EXPECT_EQ(bad->function, ExtensionFunction::kIp);
  auto dynamic = MustParseExpr("ip(context.addr)");
  EXPECT_EQ(dynamic->kind, ExprKind::kExtensionCall);
  auto arity = MustParseExpr(R"(ip("1.2.3.4", "x"))");
  EXPECT_EQ(arity->kind, ExprKind::kExtensionCall);
  EXPECT_EQ(arity->children.size(), 2u);
  auto method = MustParseExpr(R"(context.a.isInRange(ip("10.0.0.0/8"),))");
  ASSERT_EQ(method->kind, ExprKind::kExtensionCall);
  EXPECT_EQ(method->function, ExtensionFunction::kIsInRange);
  EXPECT_EQ(method->name, "isInRange");
  ASSERT_EQ(method->children.size(), 2u);  // the receiver first
  EXPECT_EQ(method->children[0]->kind, ExprKind::kGetAttr);
  EXPECT_EQ(MustParseExpr("context.d.toHours(1, 2)")->children.size(), 3u);
  auto tag = MustParseExpr(R"(principal.getTag("team"))");
  EXPECT_EQ(tag->kind, ExprKind::kGetTag);
  EXPECT_EQ(MustParseExpr(R"(principal.hasTag("team"))")->kind, ExprKind::kHasTag);
}

TEST(ParserErrors, RejectsMisplacedExtensionCalls) {
  EXPECT_EQ(ConditionError(R"(lessThan(decimal("1.0"), decimal("2.0")))"),
            "policies/a.cedar:1:44: 'lessThan' is a method, not a function: write x.lessThan(...)");
  EXPECT_EQ(ConditionError(R"(decimal("1.0").ip())"),
            "policies/a.cedar:1:59: 'ip' is a function, not a method: write ip(...)");
  EXPECT_EQ(ConditionError(R"(Decimal::decimal("1.0"))"),
            "policies/a.cedar:1:44: unknown function 'Decimal::decimal'");
  EXPECT_EQ(ConditionError(R"(principal.getTag("a", "b"))"),
            "policies/a.cedar:1:54: 'getTag' takes 1 argument, got 2");
  EXPECT_EQ(ConditionError("principal.hasTag()"),
            "policies/a.cedar:1:54: 'hasTag' takes 1 argument, got 0");
  EXPECT_EQ(ConditionError("ip(,)"), "policies/a.cedar:1:47: expected an expression, found ','");
}

TEST(ParserErrors, BoundsTheDepthOfNestedCalls) {
  std::string e = "datetime(\"2024-01-01\")";
  for (size_t i = 0; i < core::kPolicyAstDepthMax + 1; ++i) e += ".toDate()";
  EXPECT_NE(ConditionError(e).find("nested deeper than"), std::string::npos);
  std::string args = "ip(context.a)";
  for (size_t i = 0; i < core::kPolicyAstDepthMax + 1; ++i) args = "ip(" + args + ")";
  EXPECT_NE(ConditionError(args).find("nested deeper than"), std::string::npos);
}

TEST(ParserErrors, ReportsLexerErrorsWithTheFileName) {
  EXPECT_EQ(ParseError("permit(principal, action, resource) when { 1 # 2 };"),
            "policies/a.cedar:1:46: unexpected character '#'");
}

// ---- Errors: expressions ----------------------------------------------------------------------

TEST(ParserErrors, RejectsUnknownVariablesAndFunctions) {
  EXPECT_EQ(ConditionError("user.name"),
            "policies/a.cedar:1:44: unknown variable 'user' (the variables are principal, "
            "action, resource and context; an entity is written Type::\"id\")");
  EXPECT_EQ(ConditionError("foo(\"10.0.0.1\")"), "policies/a.cedar:1:44: unknown function 'foo'");
  EXPECT_EQ(ConditionError("foo::bar(1)"), "policies/a.cedar:1:44: unknown function 'foo::bar'");
  EXPECT_EQ(ConditionError("ip::ip(\"10.0.0.1\")"),
            "policies/a.cedar:1:44: unknown function 'ip::ip'");
  EXPECT_EQ(ConditionError("context.foo()"), "policies/a.cedar:1:52: unknown method 'foo'");
  EXPECT_EQ(ConditionError("[1].contains(1, 2)"),
            "policies/a.cedar:1:48: 'contains' takes 1 argument, got 2");
  EXPECT_EQ(ConditionError("[1].isEmpty(1)"),
            "policies/a.cedar:1:48: 'isEmpty' takes 0 arguments, got 1");
  EXPECT_EQ(ConditionError("(true)(1)"),
            "policies/a.cedar:1:50: only methods and functions can be called");
}

TEST(ParserErrors, RejectsChainedAndMisspelledOperators) {
  EXPECT_EQ(ConditionError("1 < 2 < 3"),
            "policies/a.cedar:1:50: comparison operators cannot be chained; add parentheses");
  EXPECT_EQ(ConditionError("1 == 1 == true"),
            "policies/a.cedar:1:51: comparison operators cannot be chained; add parentheses");
  EXPECT_EQ(ConditionError("context has a == true"),
            "policies/a.cedar:1:58: comparison operators cannot be chained; add parentheses");
  EXPECT_EQ(ConditionError("1 = 1"),
            "policies/a.cedar:1:46: '=' is not an operator; did you mean '=='?");
  EXPECT_EQ(ConditionError("4 / 2 == 2"),
            "policies/a.cedar:1:46: Cedar has no division operator '/'");
  EXPECT_EQ(ConditionError("4 % 2 == 0"),
            "policies/a.cedar:1:46: Cedar has no remainder operator '%'");
  EXPECT_EQ(ConditionError("!!!!!true"), "policies/a.cedar:1:44: more than 4 '!' in a row");
  EXPECT_EQ(ConditionError("-----1 == 1"), "policies/a.cedar:1:44: more than 4 '-' in a row");
  EXPECT_EQ(ConditionError("!-1"), "policies/a.cedar:1:45: expected an expression, found '-'");
}

TEST(ParserErrors, RejectsBadLiterals) {
  EXPECT_EQ(ConditionError("9223372036854775808 > 0"),
            "policies/a.cedar:1:44: integer literal 9223372036854775808 is too large (the "
            "largest long is 9223372036854775807)");
  EXPECT_EQ(ConditionError("-9223372036854775809 < 0"),
            "policies/a.cedar:1:45: integer literal -9223372036854775809 is too small");
  EXPECT_EQ(ConditionError("\"\\q\" == \"\""), "policies/a.cedar:1:44: invalid escape '\\q'");
  EXPECT_EQ(ConditionError("[1, 2"),
            "policies/a.cedar:1:50: expected ',' or ']' in the set literal, found '}'");
  EXPECT_EQ(ConditionError("{a: 1, a: 2} == {}"),
            "policies/a.cedar:1:51: duplicate record key 'a'");
  EXPECT_EQ(ConditionError("{a 1} == {}"),
            "policies/a.cedar:1:47: expected ':' after the record key, found '1'");
  EXPECT_EQ(ConditionError("{1: 1} == {}"),
            "policies/a.cedar:1:45: expected a record key (an identifier or string), found "
            "'1'");
  EXPECT_EQ(ConditionError("{if: 1} == {}"),
            "policies/a.cedar:1:45: 'if' is a reserved word; write [\"if\"]");
  EXPECT_EQ(ConditionError("User::1 == principal"),
            "policies/a.cedar:1:50: expected a name or a quoted id after '::', found '1'");
}

TEST(ParserErrors, RejectsBadAttributeAccess) {
  EXPECT_EQ(ConditionError("context.if"),
            "policies/a.cedar:1:52: 'if' is a reserved word; write [\"if\"]");
  EXPECT_EQ(ConditionError("context.1"),
            "policies/a.cedar:1:52: expected an attribute or method name after '.', found '1'");
  EXPECT_EQ(ConditionError("context[1]"),
            "policies/a.cedar:1:52: expected a quoted attribute name after '[', found '1'");
  EXPECT_EQ(ConditionError("context[\"a\" == 1"),
            "policies/a.cedar:1:56: expected ']' after the attribute name, found '=='");
  EXPECT_EQ(ConditionError("context has 1"),
            "policies/a.cedar:1:56: expected an attribute name after 'has', found '1'");
  EXPECT_EQ(ConditionError("context has in"),
            "policies/a.cedar:1:56: 'in' is a reserved word; write [\"in\"]");
}

TEST(ParserErrors, RejectsBadLikeIsAndIf) {
  EXPECT_EQ(ConditionError("context.s like context.p"),
            "policies/a.cedar:1:59: expected a string pattern after 'like', found 'context'");
  EXPECT_EQ(ConditionError("context.s like \"\\q\""),
            "policies/a.cedar:1:59: invalid escape '\\q'");
  EXPECT_EQ(ConditionError("principal is \"User\""),
            "policies/a.cedar:1:57: expected an entity type after 'is', found '\"User\"'");
  EXPECT_EQ(ConditionError("if true then 1"),
            "policies/a.cedar:1:59: expected 'else' after the 'then' branch, found '}'");
  EXPECT_EQ(ConditionError("if true 1 else 2"),
            "policies/a.cedar:1:52: expected 'then' after the 'if' condition, found '1'");
  EXPECT_EQ(ConditionError("1 + if true then 1 else 2"),
            "policies/a.cedar:1:48: 'if' must be parenthesized here: (if ... then ... else ...)");
  EXPECT_EQ(ConditionError("then"), "policies/a.cedar:1:44: expected an expression, found 'then'");
  EXPECT_EQ(ConditionError(")"), "policies/a.cedar:1:44: expected an expression, found ')'");
  EXPECT_EQ(ConditionError("(true"), "policies/a.cedar:1:50: expected ')' to close '(', found '}'");
}

// Found by differential testing (tests/differential): the reference rejects any name with a
// `__cedar` component ("the name ... contains `__cedar`, which is reserved").
TEST(ParserErrors, RejectsTheReservedCedarNamespace) {
  EXPECT_EQ(ConditionError("principal == __cedar::User::\"a\""),
            "policies/a.cedar:1:57: the name '__cedar::User' contains '__cedar', which is "
            "reserved");
  EXPECT_EQ(ConditionError("principal is A::__cedar"),
            "policies/a.cedar:1:57: the name 'A::__cedar' contains '__cedar', which is reserved");
  EXPECT_EQ(ParseError("permit(principal in __cedar::\"a\", action, resource);"),
            "policies/a.cedar:1:21: the name '__cedar' contains '__cedar', which is reserved");
  EXPECT_EQ(ParseError("permit(principal, action == __cedar::Action::\"a\", resource);"),
            "policies/a.cedar:1:29: the name '__cedar::Action' contains '__cedar', which is "
            "reserved");
  // As an identifier naming an attribute or a record key it is reserved too; quoted, it is not.
  EXPECT_EQ(ConditionError("context.__cedar"),
            "policies/a.cedar:1:52: '__cedar' is reserved; quote it: [\"__cedar\"], has "
            "\"__cedar\"");
  EXPECT_EQ(ConditionError("context has a.__cedar"),
            "policies/a.cedar:1:58: '__cedar' is reserved; quote it: [\"__cedar\"], has "
            "\"__cedar\"");
  EXPECT_EQ(ConditionError("{__cedar: 1} == {}"),
            "policies/a.cedar:1:45: '__cedar' is reserved; quote it: [\"__cedar\"], has "
            "\"__cedar\"");
  // Only whole components are reserved; quoted keys and annotations are fine.
  MustParse(R"(@__cedar("x") permit(principal is __cedarX::User, action, resource)
               when { context["__cedar"] == {"__cedar": 1} && context has "__cedar" };)");
}

TEST(ParserErrors, ExpressionParserRejectsTrailingTokens) {
  auto e = ParseExpression("1 2", "e");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "e:1:3: expected end of expression, found '2'");
}

}  // namespace
}  // namespace mandate::policy
