#include "policy/parser.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "mandate/core/limits.h"
#include "policy/lexer.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;
using core::Status;
using ExprPtr = std::unique_ptr<Expr>;

// Words Cedar reserves: they cannot name attributes, record keys, annotations or types.
bool IsReserved(std::string_view w) {
  return w == "true" || w == "false" || w == "if" || w == "then" || w == "else" || w == "in" ||
         w == "has" || w == "like" || w == "is";
}

bool IsVarName(std::string_view w, Var* var) {
  static constexpr Var kVars[] = {Var::kPrincipal, Var::kAction, Var::kResource, Var::kContext};
  for (Var v : kVars) {
    if (w == VarName(v)) {
      *var = v;
      return true;
    }
  }
  return false;
}

// Cedar reserves the name component `__cedar` (for its own types): no entity type may use it
// (nor may an identifier naming an attribute, see AttributeName).
bool HasReservedComponent(std::string_view type) {
  constexpr std::string_view kReserved = "__cedar";
  for (size_t start = 0;;) {
    size_t end = type.find("::", start);
    if (type.substr(start, end == std::string_view::npos ? end : end - start) == kReserved) {
      return true;
    }
    if (end == std::string_view::npos) return false;
    start = end + 2;
  }
}

// The action scope only names actions: entities whose type's last component is `Action`.
bool IsActionType(std::string_view type) {
  constexpr std::string_view kAction = "Action";
  if (type == kAction) return true;
  return type.size() > kAction.size() + 2 && type.substr(type.size() - kAction.size()) == kAction &&
         type.substr(type.size() - kAction.size() - 2, 2) == "::";
}

ExprPtr CloneExpr(const Expr& e) {
  auto c = std::make_unique<Expr>();
  c->kind = e.kind;
  c->var = e.var;
  c->line = e.line;
  c->column = e.column;
  c->depth = e.depth;
  c->value = e.value;
  c->name = e.name;
  c->pattern = e.pattern;
  c->keys = e.keys;
  c->function = e.function;
  c->children.reserve(e.children.size());
  // Bounded by the AST depth invariant.
  for (const ExprPtr& child : e.children) c->children.push_back(CloneExpr(*child));
  return c;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view display_name)
      : tokens_(tokens), name_(display_name) {}

  Result<std::vector<Policy>> Policies(std::string_view id_file) {
    std::vector<Policy> policies;
    while (!Is(TokenKind::kEnd)) {
      if (policies.size() >= core::kPoliciesMax) {
        return MakeError(
            ErrorCode::kPayloadTooLarge,
            std::string(name_) + ": more than " + std::to_string(core::kPoliciesMax) + " policies");
      }
      MANDATE_ASSIGN_OR_RETURN(Policy p, ParsePolicy(policies.size(), id_file));
      policies.push_back(std::move(p));
    }
    return policies;
  }

  Result<ExprPtr> SingleExpression() {
    MANDATE_ASSIGN_OR_RETURN(ExprPtr e, ParseExpr());
    if (!Is(TokenKind::kEnd)) return Expected("end of expression");
    return e;
  }

 private:
  // ---- Token access -----------------------------------------------------------------------
  const Token& Peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& Take() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool Is(TokenKind k, size_t ahead = 0) const { return Peek(ahead).kind == k; }
  bool IsWord(std::string_view w, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kIdent && Peek(ahead).text == w;
  }

  // ---- Errors -----------------------------------------------------------------------------
  core::Error ErrorAt(const Token& t, std::string_view message) const {
    return MakeError(ErrorCode::kBadRequest, std::string(name_) + ":" + std::to_string(t.line) +
                                                 ":" + std::to_string(t.column) + ": " +
                                                 std::string(message));
  }
  // "expected <what>, found <current token>", at the current token.
  core::Error Expected(std::string_view what) const {
    return ErrorAt(Peek(), "expected " + std::string(what) + ", found " + DescribeToken(Peek()));
  }
  Status Expect(TokenKind k, std::string_view what) {
    if (!Is(k)) return Expected(what);
    Take();
    return core::OkStatus();
  }
  SourceLocation Loc(const Token& t) const {
    return SourceLocation{std::string(name_), t.line, t.column};
  }

  Result<std::string> StringLiteral(const Token& t) {
    Result<std::string> s = UnescapeString(t.text);
    if (!s.ok()) return ErrorAt(t, s.error().message);
    return s;
  }

  // ---- Policies ---------------------------------------------------------------------------
  Result<Policy> ParsePolicy(size_t index, std::string_view id_file) {
    Policy p;
    p.index_in_file = index;
    p.location = Loc(Peek());
    while (Is(TokenKind::kAt)) {
      Take();
      const Token& key = Peek();
      if (key.kind != TokenKind::kIdent) return Expected("an annotation name after '@'");
      if (IsReserved(key.text)) {
        return ErrorAt(key, "'" + std::string(key.text) +
                                "' is a reserved word and cannot name an annotation");
      }
      Take();
      std::string value;
      if (Is(TokenKind::kLParen)) {
        Take();
        if (!Is(TokenKind::kString)) {
          return Expected("a string value for annotation '@" + std::string(key.text) + "'");
        }
        MANDATE_ASSIGN_OR_RETURN(value, StringLiteral(Take()));
        MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRParen, "')' after the annotation value"));
      }
      if (!p.annotations.emplace(std::string(key.text), std::move(value)).second) {
        return ErrorAt(key, "duplicate annotation '@" + std::string(key.text) + "'");
      }
    }
    if (IsWord("permit")) {
      p.is_forbid = false;
    } else if (IsWord("forbid")) {
      p.is_forbid = true;
    } else {
      return Expected(p.annotations.empty() ? "'permit' or 'forbid'"
                                            : "'permit' or 'forbid' after annotations");
    }
    std::string effect(Take().text);
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kLParen, "'(' after '" + effect + "'"));
    MANDATE_RETURN_IF_ERROR(ParseScope(Var::kPrincipal, &p.principal));
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kComma, "',' after the principal constraint"));
    MANDATE_RETURN_IF_ERROR(ParseScope(Var::kAction, &p.action));
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kComma, "',' after the action constraint"));
    MANDATE_RETURN_IF_ERROR(ParseScope(Var::kResource, &p.resource));
    // Cedar accepts a trailing comma after the resource constraint.
    if (Is(TokenKind::kComma) && Is(TokenKind::kRParen, 1)) Take();
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRParen, "')' after scope"));
    while (IsWord("when") || IsWord("unless")) {
      const Token& kw = Take();
      Condition c;
      c.is_when = kw.text == "when";
      c.location = Loc(kw);
      MANDATE_RETURN_IF_ERROR(
          Expect(TokenKind::kLBrace, "'{' after '" + std::string(kw.text) + "'"));
      if (Is(TokenKind::kRBrace)) {
        return ErrorAt(Peek(), "empty '" + std::string(kw.text) +
                                   "' condition: write an expression or remove the clause");
      }
      MANDATE_ASSIGN_OR_RETURN(ExprPtr e, ParseExpr());
      c.expr = std::shared_ptr<const Expr>(std::move(e));
      MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRBrace, "'}' after the condition"));
      p.conditions.push_back(std::move(c));
    }
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kSemi, p.conditions.empty()
                                                         ? "'when', 'unless' or ';' after scope"
                                                         : "'when', 'unless' or ';'"));
    if (const std::string* id = p.FindAnnotation("id")) {
      p.id = *id;
    } else {
      p.id = std::string(id_file) + ":" + std::to_string(index);
    }
    return p;
  }

  Status ParseScope(Var var, ScopeConstraint* out) {
    std::string var_name(VarName(var));
    if (!IsWord(var_name)) return Expected("'" + var_name + "'");
    out->location = Loc(Take());
    out->op = ScopeConstraint::Op::kAny;
    // Each entity of the constraint, with where it is written (for the validator's findings).
    auto add_entity = [&](std::string_view after) -> Status {
      SourceLocation at = Loc(Peek());
      MANDATE_ASSIGN_OR_RETURN(EntityUid uid, ParseScopeEntity(var, after));
      out->entities.push_back(std::move(uid));
      out->entity_locations.push_back(std::move(at));
      return core::OkStatus();
    };
    if (IsWord("is")) {
      if (var == Var::kAction) return ErrorAt(Peek(), "'is' is not allowed in the action scope");
      Take();
      MANDATE_ASSIGN_OR_RETURN(out->entity_type, ParseTypePath("an entity type after 'is'"));
      out->op = ScopeConstraint::Op::kIs;
      if (IsWord("in")) {
        Take();
        MANDATE_RETURN_IF_ERROR(add_entity("'in'"));
        out->op = ScopeConstraint::Op::kIsIn;
      }
      return core::OkStatus();
    }
    if (Is(TokenKind::kEqEq)) {
      Take();
      MANDATE_RETURN_IF_ERROR(add_entity("'=='"));
      out->op = ScopeConstraint::Op::kEq;
    } else if (IsWord("in")) {
      Take();
      out->op = ScopeConstraint::Op::kIn;
      if (Is(TokenKind::kLBracket)) {
        if (var != Var::kAction) {
          return ErrorAt(Peek(), "'" + var_name +
                                     " in [...]' is not allowed: only the action scope takes a "
                                     "list; use a single entity");
        }
        Take();
        while (!Is(TokenKind::kRBracket)) {
          MANDATE_RETURN_IF_ERROR(add_entity("'[' or ','"));
          if (!Is(TokenKind::kComma)) break;
          Take();
        }
        MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRBracket, "',' or ']' in the action list"));
      } else {
        MANDATE_RETURN_IF_ERROR(add_entity("'in'"));
      }
    } else if (Is(TokenKind::kAssign)) {
      return ErrorAt(Peek(), "'=' is not an operator; did you mean '=='?");
    } else if (Is(TokenKind::kNotEq) || Is(TokenKind::kLt) || Is(TokenKind::kLe) ||
               Is(TokenKind::kGt) || Is(TokenKind::kGe)) {
      return ErrorAt(Peek(), DescribeToken(Peek()) +
                                 " is not allowed in the scope; use '==', 'in' or 'is' (or move "
                                 "the test into a 'when' condition)");
    }
    return core::OkStatus();
  }

  // An entity literal in the scope, where Cedar allows nothing else. The action scope only
  // names actions.
  Result<EntityUid> ParseScopeEntity(Var var, std::string_view after) {
    const Token& start = Peek();
    if (start.kind == TokenKind::kSlot) {
      return ErrorAt(
          start, "policy templates are not supported (found slot " + DescribeToken(start) + ")");
    }
    MANDATE_ASSIGN_OR_RETURN(
        EntityUid uid, ParseEntityLiteral("an entity (Type::\"id\") after " + std::string(after)));
    if (var == Var::kAction && !IsActionType(uid.type)) {
      return ErrorAt(start,
                     "the action scope must name actions (type Action or "
                     "Namespace::Action), found " +
                         uid.ToString());
    }
    return uid;
  }

  // Type::"id" or A::B::"id".
  Result<EntityUid> ParseEntityLiteral(std::string_view what) {
    if (!Is(TokenKind::kIdent)) return Expected(what);
    const Token& start = Peek();
    std::string type;
    for (;;) {
      if (!Is(TokenKind::kIdent)) return Expected("a name or a quoted id after '::'");
      const Token& part = Take();
      if (IsReserved(part.text)) {
        return ErrorAt(
            part, "'" + std::string(part.text) + "' is a reserved word and cannot name a type");
      }
      type.append(part.text);
      if (!Is(TokenKind::kColonColon)) {
        return Expected("'::' and a quoted id after '" + type + "'");
      }
      Take();
      if (Is(TokenKind::kString)) {
        MANDATE_RETURN_IF_ERROR(CheckTypeName(start, type));
        MANDATE_ASSIGN_OR_RETURN(std::string id, StringLiteral(Take()));
        return EntityUid{std::move(type), std::move(id)};
      }
      type.append("::");
    }
  }

  Status CheckTypeName(const Token& at, const std::string& type) const {
    if (!HasReservedComponent(type)) return core::OkStatus();
    return ErrorAt(at, "the name '" + type + "' contains '__cedar', which is reserved");
  }

  // A type name: A or A::B (not followed by a quoted id).
  Result<std::string> ParseTypePath(std::string_view what) {
    if (!Is(TokenKind::kIdent)) return Expected(what);
    const Token& start = Peek();
    std::string type;
    for (;;) {
      const Token& part = Take();
      if (IsReserved(part.text)) {
        return ErrorAt(
            part, "'" + std::string(part.text) + "' is a reserved word and cannot name a type");
      }
      type.append(part.text);
      if (!(Is(TokenKind::kColonColon) && Is(TokenKind::kIdent, 1))) {
        MANDATE_RETURN_IF_ERROR(CheckTypeName(start, type));
        return type;
      }
      Take();
      type.append("::");
    }
  }

  // ---- Expressions ------------------------------------------------------------------------
  // Builds a node and enforces the AST depth limit (ast.h invariant).
  Result<ExprPtr> Make(ExprKind kind, const Token& at, std::vector<ExprPtr> children) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    uint32_t depth = 0;
    for (const ExprPtr& c : children) depth = std::max(depth, c->depth);
    e->depth = depth + 1;
    if (e->depth > core::kPolicyAstDepthMax) return DepthError(at);
    e->children = std::move(children);
    return e;
  }
  Result<ExprPtr> Make1(ExprKind kind, const Token& at, ExprPtr a) {
    std::vector<ExprPtr> c;
    c.push_back(std::move(a));
    return Make(kind, at, std::move(c));
  }
  Result<ExprPtr> Make2(ExprKind kind, const Token& at, ExprPtr a, ExprPtr b) {
    std::vector<ExprPtr> c;
    c.push_back(std::move(a));
    c.push_back(std::move(b));
    return Make(kind, at, std::move(c));
  }
  ExprPtr Literal(const Token& at, Value v) {
    auto e = std::make_unique<Expr>();
    e->kind = ExprKind::kLiteral;
    e->line = at.line;
    e->column = at.column;
    e->value = std::move(v);
    return e;
  }
  core::Error DepthError(const Token& at) const {
    return ErrorAt(at, "expression nested deeper than " + std::to_string(core::kPolicyAstDepthMax) +
                           " levels");
  }

  // Expr := Or | 'if' Expr 'then' Expr 'else' Expr
  Result<ExprPtr> ParseExpr() {
    // Every recursion of the parser passes through here, so this bounds the stack.
    if (nesting_ >= core::kPolicyAstDepthMax) return DepthError(Peek());
    ++nesting_;
    Result<ExprPtr> e = ParseExprInner();
    --nesting_;
    return e;
  }

  Result<ExprPtr> ParseExprInner() {
    if (!IsWord("if")) return ParseOr();
    const Token& kw = Take();
    MANDATE_ASSIGN_OR_RETURN(ExprPtr cond, ParseExpr());
    if (!IsWord("then")) return Expected("'then' after the 'if' condition");
    Take();
    MANDATE_ASSIGN_OR_RETURN(ExprPtr a, ParseExpr());
    if (!IsWord("else")) return Expected("'else' after the 'then' branch");
    Take();
    MANDATE_ASSIGN_OR_RETURN(ExprPtr b, ParseExpr());
    std::vector<ExprPtr> c;
    c.push_back(std::move(cond));
    c.push_back(std::move(a));
    c.push_back(std::move(b));
    return Make(ExprKind::kIf, kw, std::move(c));
  }

  // Or := And {'||' And}; And := Relation {'&&' Relation}. Kept n-ary so that long chains
  // (`a || b || c ...`) do not deepen the tree.
  Result<ExprPtr> ParseOr() { return ParseChain(TokenKind::kOrOr, ExprKind::kOr); }
  Result<ExprPtr> ParseAnd() { return ParseChain(TokenKind::kAndAnd, ExprKind::kAnd); }

  Result<ExprPtr> ParseChain(TokenKind op, ExprKind kind) {
    const Token& first_token = Peek();
    auto operand = [&]() { return op == TokenKind::kOrOr ? ParseAnd() : ParseRelation(); };
    MANDATE_ASSIGN_OR_RETURN(ExprPtr first, operand());
    if (!Is(op)) return first;
    std::vector<ExprPtr> operands;
    operands.push_back(std::move(first));
    while (Is(op)) {
      Take();
      MANDATE_ASSIGN_OR_RETURN(ExprPtr next, operand());
      operands.push_back(std::move(next));
    }
    return Make(kind, first_token, std::move(operands));
  }

  static bool RelOpKind(const Token& t, ExprKind* kind) {
    switch (t.kind) {
      case TokenKind::kEqEq:
        *kind = ExprKind::kEq;
        return true;
      case TokenKind::kNotEq:
        *kind = ExprKind::kNe;
        return true;
      case TokenKind::kLt:
        *kind = ExprKind::kLt;
        return true;
      case TokenKind::kLe:
        *kind = ExprKind::kLe;
        return true;
      case TokenKind::kGt:
        *kind = ExprKind::kGt;
        return true;
      case TokenKind::kGe:
        *kind = ExprKind::kGe;
        return true;
      case TokenKind::kIdent:
        if (t.text == "in") {
          *kind = ExprKind::kIn;
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  bool AtRelationOperator() const {
    ExprKind unused;
    return RelOpKind(Peek(), &unused) || IsWord("has") || IsWord("like") || IsWord("is") ||
           Is(TokenKind::kAssign);
  }

  // Relation := Add [RelOp Add] | Add 'has' (IDENT | STR) | Add 'like' STR
  //           | Add 'is' Path ['in' Add]
  Result<ExprPtr> ParseRelation() {
    MANDATE_ASSIGN_OR_RETURN(ExprPtr lhs, ParseAdd());
    ExprKind kind;
    const Token& op = Peek();
    if (RelOpKind(op, &kind)) {
      Take();
      MANDATE_ASSIGN_OR_RETURN(ExprPtr rhs, ParseAdd());
      MANDATE_ASSIGN_OR_RETURN(lhs, Make2(kind, op, std::move(lhs), std::move(rhs)));
    } else if (op.kind == TokenKind::kAssign) {
      return ErrorAt(op, "'=' is not an operator; did you mean '=='?");
    } else if (IsWord("has")) {
      Take();
      MANDATE_ASSIGN_OR_RETURN(lhs, ParseHas(op, std::move(lhs)));
    } else if (IsWord("like")) {
      Take();
      if (!Is(TokenKind::kString)) return Expected("a string pattern after 'like'");
      const Token& pat = Take();
      Result<Pattern> pattern = UnescapePattern(pat.text);
      if (!pattern.ok()) return ErrorAt(pat, pattern.error().message);
      MANDATE_ASSIGN_OR_RETURN(lhs, Make1(ExprKind::kLike, op, std::move(lhs)));
      lhs->pattern = std::move(*pattern);
    } else if (IsWord("is")) {
      Take();
      MANDATE_ASSIGN_OR_RETURN(std::string type, ParseTypePath("an entity type after 'is'"));
      if (IsWord("in")) {
        Take();
        MANDATE_ASSIGN_OR_RETURN(ExprPtr rhs, ParseAdd());
        MANDATE_ASSIGN_OR_RETURN(lhs, Make2(ExprKind::kIs, op, std::move(lhs), std::move(rhs)));
      } else {
        MANDATE_ASSIGN_OR_RETURN(lhs, Make1(ExprKind::kIs, op, std::move(lhs)));
      }
      lhs->name = std::move(type);
    } else {
      return lhs;
    }
    if (AtRelationOperator()) {
      return ErrorAt(Peek(), "comparison operators cannot be chained; add parentheses");
    }
    return lhs;
  }

  // `e has a` or `e has "a b"`; `e has a.b.c` means `e has a && e.a has b && e.a.b has c`.
  Result<ExprPtr> ParseHas(const Token& op, ExprPtr target) {
    std::vector<std::string> path;
    if (Is(TokenKind::kString)) {
      MANDATE_ASSIGN_OR_RETURN(std::string attr, StringLiteral(Take()));
      path.push_back(std::move(attr));
    } else {
      MANDATE_ASSIGN_OR_RETURN(std::string attr, AttributeName("an attribute name after 'has'"));
      path.push_back(std::move(attr));
      while (Is(TokenKind::kDot) && Is(TokenKind::kIdent, 1)) {
        Take();
        MANDATE_ASSIGN_OR_RETURN(attr, AttributeName("an attribute name after '.'"));
        path.push_back(std::move(attr));
      }
    }
    std::vector<ExprPtr> tests;
    ExprPtr prefix = std::move(target);
    for (size_t i = 0; i < path.size(); ++i) {
      bool last = i + 1 == path.size();
      ExprPtr receiver = last ? std::move(prefix) : CloneExpr(*prefix);
      MANDATE_ASSIGN_OR_RETURN(ExprPtr test, Make1(ExprKind::kHasAttr, op, std::move(receiver)));
      test->name = path[i];
      tests.push_back(std::move(test));
      if (!last) {
        MANDATE_ASSIGN_OR_RETURN(prefix, Make1(ExprKind::kGetAttr, op, std::move(prefix)));
        prefix->name = path[i];
      }
    }
    if (tests.size() == 1) return std::move(tests.front());
    return Make(ExprKind::kAnd, op, std::move(tests));
  }

  // An identifier naming an attribute; reserved words are not allowed (use ["if"]).
  Result<std::string> AttributeName(std::string_view what) {
    if (!Is(TokenKind::kIdent)) return Expected(what);
    const Token& t = Take();
    if (IsReserved(t.text)) {
      return ErrorAt(t, "'" + std::string(t.text) + "' is a reserved word; write [\"" +
                            std::string(t.text) + "\"]");
    }
    // The reference reserves `__cedar` as an identifier too; quoted, it is an ordinary key.
    if (t.text == "__cedar") {
      return ErrorAt(t, "'__cedar' is reserved; quote it: [\"__cedar\"], has \"__cedar\"");
    }
    return std::string(t.text);
  }

  // Add := Mult {('+' | '-') Mult}
  Result<ExprPtr> ParseAdd() {
    MANDATE_ASSIGN_OR_RETURN(ExprPtr lhs, ParseMult());
    while (Is(TokenKind::kPlus) || Is(TokenKind::kMinus)) {
      const Token& op = Take();
      MANDATE_ASSIGN_OR_RETURN(ExprPtr rhs, ParseMult());
      MANDATE_ASSIGN_OR_RETURN(
          lhs, Make2(op.kind == TokenKind::kPlus ? ExprKind::kAdd : ExprKind::kSub, op,
                     std::move(lhs), std::move(rhs)));
    }
    return lhs;
  }

  // Mult := Unary {'*' Unary}
  Result<ExprPtr> ParseMult() {
    MANDATE_ASSIGN_OR_RETURN(ExprPtr lhs, ParseUnary());
    for (;;) {
      if (Is(TokenKind::kSlash)) return ErrorAt(Peek(), "Cedar has no division operator '/'");
      if (Is(TokenKind::kPercent)) return ErrorAt(Peek(), "Cedar has no remainder operator '%'");
      if (!Is(TokenKind::kStar)) return lhs;
      const Token& op = Take();
      MANDATE_ASSIGN_OR_RETURN(ExprPtr rhs, ParseUnary());
      MANDATE_ASSIGN_OR_RETURN(lhs, Make2(ExprKind::kMul, op, std::move(lhs), std::move(rhs)));
    }
  }

  // Unary := ['!'{1,4} | '-'{1,4}] Member. A '-' directly before an integer literal makes a
  // negative literal, so -9223372036854775808 is representable.
  Result<ExprPtr> ParseUnary() {
    if (!Is(TokenKind::kBang) && !Is(TokenKind::kMinus)) return ParseMember();
    const TokenKind op_kind = Peek().kind;
    const Token& first = Peek();
    std::vector<const Token*> ops;
    while (Is(op_kind)) ops.push_back(&Take());
    constexpr size_t kUnaryMax = 4;  // as the Cedar reference
    if (ops.size() > kUnaryMax) {
      return ErrorAt(first, "more than " + std::to_string(kUnaryMax) + " " + DescribeToken(first) +
                                " in a row");
    }
    const bool negate = op_kind == TokenKind::kMinus;
    ExprPtr operand;
    if (negate && Is(TokenKind::kInt) && !Is(TokenKind::kDot, 1) && !Is(TokenKind::kLBracket, 1) &&
        !Is(TokenKind::kLParen, 1)) {
      const Token& lit = Take();
      constexpr uint64_t kMinMagnitude = uint64_t{1} << 63;
      if (lit.number > kMinMagnitude) {
        return ErrorAt(lit, "integer literal -" + std::string(lit.text) + " is too small");
      }
      int64_t v = lit.number == kMinMagnitude ? INT64_MIN : -static_cast<int64_t>(lit.number);
      operand = Literal(*ops.back(), Value::Long(v));
      ops.pop_back();
    } else {
      MANDATE_ASSIGN_OR_RETURN(operand, ParseMember());
    }
    while (!ops.empty()) {
      MANDATE_ASSIGN_OR_RETURN(operand, Make1(negate ? ExprKind::kNeg : ExprKind::kNot, *ops.back(),
                                              std::move(operand)));
      ops.pop_back();
    }
    return operand;
  }

  // Member := Primary {'.' IDENT ['(' args ')'] | '[' STR ']'}
  Result<ExprPtr> ParseMember() {
    MANDATE_ASSIGN_OR_RETURN(ExprPtr e, ParsePrimary());
    for (;;) {
      if (Is(TokenKind::kDot)) {
        Take();
        const Token& name_token = Peek();
        MANDATE_ASSIGN_OR_RETURN(std::string name, AttributeName("an attribute or method name "
                                                                 "after '.'"));
        if (Is(TokenKind::kLParen)) {
          MANDATE_ASSIGN_OR_RETURN(e, ParseMethod(name_token, name, std::move(e)));
        } else {
          MANDATE_ASSIGN_OR_RETURN(e, Make1(ExprKind::kGetAttr, name_token, std::move(e)));
          e->name = std::move(name);
        }
      } else if (Is(TokenKind::kLBracket)) {
        const Token& open = Take();
        if (!Is(TokenKind::kString)) return Expected("a quoted attribute name after '['");
        MANDATE_ASSIGN_OR_RETURN(std::string name, StringLiteral(Take()));
        MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRBracket, "']' after the attribute name"));
        MANDATE_ASSIGN_OR_RETURN(e, Make1(ExprKind::kGetAttr, open, std::move(e)));
        e->name = std::move(name);
      } else if (Is(TokenKind::kLParen)) {
        return ErrorAt(Peek(), "only methods and functions can be called");
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> ParseMethod(const Token& name_token, const std::string& name, ExprPtr receiver) {
    ExprKind kind;
    size_t arity;
    if (name == "contains") {
      kind = ExprKind::kContains;
      arity = 1;
    } else if (name == "containsAll") {
      kind = ExprKind::kContainsAll;
      arity = 1;
    } else if (name == "containsAny") {
      kind = ExprKind::kContainsAny;
      arity = 1;
    } else if (name == "isEmpty") {
      kind = ExprKind::kIsEmpty;
      arity = 0;
    } else if (name == "getTag") {
      kind = ExprKind::kGetTag;
      arity = 1;
    } else if (name == "hasTag") {
      kind = ExprKind::kHasTag;
      arity = 1;
    } else if (const ExtensionFunctionInfo* info = FindExtensionFunction(name)) {
      if (!info->is_method) {
        return ErrorAt(name_token, "'" + name + "' is a function, not a method: write " + name +
                                       "(...)");
      }
      // As the reference, a wrong number of arguments to an extension method is an evaluation
      // error (the policy is skipped), not a parse error.
      MANDATE_ASSIGN_OR_RETURN(std::vector<ExprPtr> args, ParseArguments());
      std::vector<ExprPtr> children;
      children.push_back(std::move(receiver));
      for (ExprPtr& a : args) children.push_back(std::move(a));
      MANDATE_ASSIGN_OR_RETURN(ExprPtr call,
                               Make(ExprKind::kExtensionCall, name_token, std::move(children)));
      call->function = info->function;
      call->name = name;
      return call;
    } else {
      return ErrorAt(name_token, "unknown method '" + name + "'");
    }
    MANDATE_ASSIGN_OR_RETURN(std::vector<ExprPtr> args, ParseArguments());
    if (args.size() != arity) {
      return ErrorAt(name_token, "'" + name + "' takes " + std::to_string(arity) +
                                     (arity == 1 ? " argument" : " arguments") + ", got " +
                                     std::to_string(args.size()));
    }
    std::vector<ExprPtr> children;
    children.push_back(std::move(receiver));
    for (ExprPtr& a : args) children.push_back(std::move(a));
    return Make(kind, name_token, std::move(children));
  }

  // '(' [Expr {',' Expr} [',']] ')'
  Result<std::vector<ExprPtr>> ParseArguments() {
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kLParen, "'('"));
    std::vector<ExprPtr> args;
    while (!Is(TokenKind::kRParen)) {
      MANDATE_ASSIGN_OR_RETURN(ExprPtr a, ParseExpr());
      args.push_back(std::move(a));
      if (!Is(TokenKind::kComma)) break;
      Take();
    }
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRParen, "',' or ')' in the argument list"));
    return args;
  }

  Result<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kInt:
        Take();
        if (t.number > static_cast<uint64_t>(INT64_MAX)) {
          return ErrorAt(t, "integer literal " + std::string(t.text) +
                                " is too large (the largest long is 9223372036854775807)");
        }
        return Literal(t, Value::Long(static_cast<int64_t>(t.number)));
      case TokenKind::kString: {
        Take();
        MANDATE_ASSIGN_OR_RETURN(std::string s, StringLiteral(t));
        return Literal(t, Value::String(std::move(s)));
      }
      case TokenKind::kIdent:
        return ParseIdentPrimary();
      case TokenKind::kLParen: {
        Take();
        MANDATE_ASSIGN_OR_RETURN(ExprPtr e, ParseExpr());
        MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRParen, "')' to close '('"));
        return e;
      }
      case TokenKind::kLBracket:
        return ParseSetLiteral();
      case TokenKind::kLBrace:
        return ParseRecordLiteral();
      case TokenKind::kSlot:
        return ErrorAt(t,
                       "policy templates are not supported (found slot " + DescribeToken(t) + ")");
      default:
        return Expected("an expression");
    }
  }

  Result<ExprPtr> ParseIdentPrimary() {
    const Token& t = Peek();
    if (t.text == "true" || t.text == "false") {
      Take();
      return Literal(t, Value::Bool(t.text == "true"));
    }
    if (t.text == "if") {
      return ErrorAt(t, "'if' must be parenthesized here: (if ... then ... else ...)");
    }
    if (IsReserved(t.text)) return Expected("an expression");
    Var var;
    if (IsVarName(t.text, &var) && !Is(TokenKind::kColonColon, 1)) {
      Take();
      auto e = std::make_unique<Expr>();
      e->kind = ExprKind::kVar;
      e->var = var;
      e->line = t.line;
      e->column = t.column;
      return e;
    }
    // A name: the start of an entity literal (A::B::"id"), or a function.
    size_t save = pos_;
    std::string path;
    for (;;) {
      const Token& part = Take();
      path.append(part.text);
      if (Is(TokenKind::kColonColon) && Is(TokenKind::kString, 1)) {
        pos_ = save;
        MANDATE_ASSIGN_OR_RETURN(EntityUid uid, ParseEntityLiteral("an entity"));
        return Literal(t, Value::Entity(std::move(uid)));
      }
      if (!(Is(TokenKind::kColonColon) && Is(TokenKind::kIdent, 1))) break;
      Take();
      path.append("::");
    }
    if (Is(TokenKind::kColonColon)) {
      Take();
      return Expected("a name or a quoted id after '::'");
    }
    if (Is(TokenKind::kLParen)) return ParseFunctionCall(t, path);
    return ErrorAt(t, "unknown variable '" + path +
                          "' (the variables are principal, action, resource and context; an "
                          "entity is written Type::\"id\")");
  }

  // name(args...): a call of an extension function (a constructor: ip, decimal, datetime,
  // duration). A constructor applied to one string literal is evaluated here, once, when the
  // literal is valid; an invalid literal stays a call, whose evaluation errors (the policy is
  // skipped), as in the reference.
  Result<ExprPtr> ParseFunctionCall(const Token& name_token, const std::string& name) {
    const ExtensionFunctionInfo* info = FindExtensionFunction(name);
    if (info == nullptr) return ErrorAt(name_token, "unknown function '" + name + "'");
    if (info->is_method) {
      return ErrorAt(name_token, "'" + name + "' is a method, not a function: write x." + name +
                                     "(...)");
    }
    MANDATE_ASSIGN_OR_RETURN(std::vector<ExprPtr> args, ParseArguments());
    if (args.size() == 1 && args[0]->kind == ExprKind::kLiteral && args[0]->value.is_string()) {
      const Value* arg = &args[0]->value;
      Result<Value> folded = CallExtensionFunction(info->function, std::span(&arg, 1));
      if (folded.ok()) return Literal(name_token, std::move(*folded));
    }
    MANDATE_ASSIGN_OR_RETURN(ExprPtr call,
                             Make(ExprKind::kExtensionCall, name_token, std::move(args)));
    call->function = info->function;
    call->name = name;
    return call;
  }

  // '[' [Expr {',' Expr} [',']] ']'; folded to a literal when every element is one.
  Result<ExprPtr> ParseSetLiteral() {
    const Token& open = Take();
    std::vector<ExprPtr> elements;
    while (!Is(TokenKind::kRBracket)) {
      MANDATE_ASSIGN_OR_RETURN(ExprPtr e, ParseExpr());
      elements.push_back(std::move(e));
      if (!Is(TokenKind::kComma)) break;
      Take();
    }
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRBracket, "',' or ']' in the set literal"));
    bool constant = std::all_of(elements.begin(), elements.end(),
                                [](const ExprPtr& e) { return e->kind == ExprKind::kLiteral; });
    if (constant) {
      std::vector<Value> values;
      values.reserve(elements.size());
      for (ExprPtr& e : elements) values.push_back(std::move(e->value));
      return Literal(open, Value::Set(std::move(values)));
    }
    return Make(ExprKind::kSet, open, std::move(elements));
  }

  // '{' [Key ':' Expr {',' Key ':' Expr} [',']] '}'; keys are identifiers or strings.
  Result<ExprPtr> ParseRecordLiteral() {
    const Token& open = Take();
    std::vector<std::string> keys;
    std::vector<ExprPtr> values;
    while (!Is(TokenKind::kRBrace)) {
      const Token& key_token = Peek();
      std::string key;
      if (Is(TokenKind::kString)) {
        MANDATE_ASSIGN_OR_RETURN(key, StringLiteral(Take()));
      } else {
        MANDATE_ASSIGN_OR_RETURN(key, AttributeName("a record key (an identifier or string)"));
      }
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        return ErrorAt(key_token, "duplicate record key '" + key + "'");
      }
      MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kColon, "':' after the record key"));
      MANDATE_ASSIGN_OR_RETURN(ExprPtr v, ParseExpr());
      keys.push_back(std::move(key));
      values.push_back(std::move(v));
      if (!Is(TokenKind::kComma)) break;
      Take();
    }
    MANDATE_RETURN_IF_ERROR(Expect(TokenKind::kRBrace, "',' or '}' in the record literal"));
    bool constant = std::all_of(values.begin(), values.end(),
                                [](const ExprPtr& e) { return e->kind == ExprKind::kLiteral; });
    if (constant) {
      Value::RecordFields fields;
      for (size_t i = 0; i < keys.size(); ++i) {
        fields.emplace(std::move(keys[i]), std::move(values[i]->value));
      }
      return Literal(open, Value::Record(std::move(fields)));
    }
    MANDATE_ASSIGN_OR_RETURN(ExprPtr e, Make(ExprKind::kRecord, open, std::move(values)));
    e->keys = std::move(keys);
    return e;
  }

  const std::vector<Token>& tokens_;
  std::string_view name_;
  size_t pos_ = 0;
  size_t nesting_ = 0;
};

}  // namespace

Result<std::vector<Policy>> ParsePolicies(std::string_view text, std::string_view display_name,
                                          std::string_view id_file) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(text, display_name));
  return Parser(tokens, display_name).Policies(id_file);
}

Result<std::unique_ptr<Expr>> ParseExpression(std::string_view text,
                                              std::string_view display_name) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(text, display_name));
  return Parser(tokens, display_name).SingleExpression();
}

}  // namespace mandate::policy
