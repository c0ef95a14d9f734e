#include "mandate/policy/validator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "mandate/core/limits.h"
#include "policy/lexer.h"
#include "policy/ast.h"

namespace mandate::policy {
namespace {

using Kind = CedarType::Kind;
using Severity = ValidationFinding::Severity;

constexpr std::string_view kClassActions[] = {"read", "write", "destructive"};

bool IsClassAction(std::string_view id) {
  return std::find(std::begin(kClassActions), std::end(kClassActions), id) != std::end(kClassActions);
}

// Cedar's three-valued boolean types: a boolean expression may be known true or false.
enum class BoolType : uint8_t { kAny, kTrue, kFalse };

BoolType Negate(BoolType b) {
  return b == BoolType::kTrue ? BoolType::kFalse : b == BoolType::kFalse ? BoolType::kTrue : BoolType::kAny;
}

struct Typed {
  CedarTypePtr type = CedarType::Unknown();
  BoolType b = BoolType::kAny;  // for kBool
};

Typed UnknownT() { return Typed{}; }
Typed BoolT(BoolType b) { return Typed{CedarType::Bool(), b}; }
Typed Of(CedarTypePtr t) { return Typed{std::move(t), BoolType::kAny}; }

bool IsUnknown(const Typed& t) { return t.type->kind == Kind::kUnknown; }

// An attribute known to be present: (the receiver expression, printed; the attribute).
using Capability = std::pair<std::string, std::string>;
using Caps = std::set<Capability>;

Caps Union(const Caps& a, const Caps& b) {
  Caps out = a;
  out.insert(b.begin(), b.end());
  return out;
}

Caps Intersection(const Caps& a, const Caps& b) {
  Caps out;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

struct TypeResult {
  Typed t;
  Caps caps;
};

// The least upper bound of two types in strict mode: the same type, with records of the same
// attributes (optional when optional in either) and sets of such elements. Unknown absorbs
// anything. nullptr when there is none. Bounded by the depth of the types (schema types are at
// most kPolicySchemaTypeDepthMax deep, literal ones at most kPolicyAstDepthMax).
CedarTypePtr Lub(const CedarTypePtr& a, const CedarTypePtr& b) {
  if (a->kind == Kind::kUnknown || b->kind == Kind::kUnknown) return CedarType::Unknown();
  if (a->kind != b->kind) return nullptr;
  switch (a->kind) {
    case Kind::kEntity:
      return a->entity_type == b->entity_type ? a : nullptr;
    case Kind::kSet: {
      CedarTypePtr e = Lub(a->element, b->element);
      if (!e) return nullptr;
      return e == a->element ? a : CedarType::Set(std::move(e));
    }
    case Kind::kRecord: {
      if (a == b) return a;
      if (a->attributes.size() != b->attributes.size()) return nullptr;
      std::vector<CedarAttribute> attrs;
      for (size_t i = 0; i < a->attributes.size(); ++i) {
        const CedarAttribute& x = a->attributes[i];
        const CedarAttribute& y = b->attributes[i];
        if (x.name != y.name) return nullptr;
        CedarTypePtr t = Lub(x.type, y.type);
        if (!t) return nullptr;
        attrs.push_back(CedarAttribute{x.name, std::move(t), x.required && y.required});
      }
      return CedarType::Record(std::move(attrs), a->open || b->open);
    }
    default:
      return a;
  }
}

// Prints an expression in Cedar's syntax: the key of capabilities (structural equality, as
// Cedar's type checker compares expressions) and the quotes of messages. Bounded by the AST
// depth invariant (ast.h).
void Print(const Expr& e, std::string* out) {
  auto bin = [&](std::string_view op) {
    out->push_back('(');
    Print(*e.children[0], out);
    out->append(op);
    Print(*e.children[1], out);
    out->push_back(')');
  };
  auto method = [&](std::string_view name) {
    Print(*e.children[0], out);
    out->append(name);
    out->push_back('(');
    for (size_t i = 1; i < e.children.size(); ++i) Print(*e.children[i], out);
    out->push_back(')');
  };
  auto attr = [&](const std::string& name) {
    if (IsBareName(name)) {
      out->append(".").append(name);
    } else {
      out->append("[");
      core::AppendJsonString(name, out);
      out->append("]");
    }
  };
  switch (e.kind) {
    case ExprKind::kLiteral:
      out->append(e.value.ToString());
      return;
    case ExprKind::kVar:
      out->append(VarName(e.var));
      return;
    case ExprKind::kSet:
    case ExprKind::kRecord:
      out->push_back(e.kind == ExprKind::kSet ? '[' : '{');
      for (size_t i = 0; i < e.children.size(); ++i) {
        if (i > 0) out->append(", ");
        if (e.kind == ExprKind::kRecord) {
          core::AppendJsonString(e.keys[i], out);
          out->append(": ");
        }
        Print(*e.children[i], out);
      }
      out->push_back(e.kind == ExprKind::kSet ? ']' : '}');
      return;
    case ExprKind::kNot:
    case ExprKind::kNeg:
      out->append(e.kind == ExprKind::kNot ? "!" : "-");
      Print(*e.children[0], out);
      return;
    case ExprKind::kAnd:
    case ExprKind::kOr:
      out->push_back('(');
      for (size_t i = 0; i < e.children.size(); ++i) {
        if (i > 0) out->append(e.kind == ExprKind::kAnd ? " && " : " || ");
        Print(*e.children[i], out);
      }
      out->push_back(')');
      return;
    case ExprKind::kIf:
      out->append("(if ");
      Print(*e.children[0], out);
      out->append(" then ");
      Print(*e.children[1], out);
      out->append(" else ");
      Print(*e.children[2], out);
      out->push_back(')');
      return;
    case ExprKind::kEq:
      return bin(" == ");
    case ExprKind::kNe:
      return bin(" != ");
    case ExprKind::kLt:
      return bin(" < ");
    case ExprKind::kLe:
      return bin(" <= ");
    case ExprKind::kGt:
      return bin(" > ");
    case ExprKind::kGe:
      return bin(" >= ");
    case ExprKind::kIn:
      return bin(" in ");
    case ExprKind::kAdd:
      return bin(" + ");
    case ExprKind::kSub:
      return bin(" - ");
    case ExprKind::kMul:
      return bin(" * ");
    case ExprKind::kContains:
      return method(".contains");
    case ExprKind::kContainsAll:
      return method(".containsAll");
    case ExprKind::kContainsAny:
      return method(".containsAny");
    case ExprKind::kIsEmpty:
      return method(".isEmpty");
    case ExprKind::kGetAttr:
      Print(*e.children[0], out);
      attr(e.name);
      return;
    case ExprKind::kHasAttr:
      Print(*e.children[0], out);
      out->append(" has ");
      if (IsBareName(e.name)) {
        out->append(e.name);
      } else {
        core::AppendJsonString(e.name, out);
      }
      return;
    case ExprKind::kLike:
      Print(*e.children[0], out);
      out->append(" like ").append(e.pattern.ToString());
      return;
    case ExprKind::kIs:
      Print(*e.children[0], out);
      out->append(" is ").append(e.name);
      if (e.children.size() > 1) {
        out->append(" in ");
        Print(*e.children[1], out);
      }
      return;
    default:
      // An expression kind this validator does not know: distinct from every other print.
      out->append("?" + std::to_string(static_cast<int>(e.kind)) + "(" + e.name);
      for (const auto& c : e.children) {
        out->append(", ");
        Print(*c, out);
      }
      out->push_back(')');
      return;
  }
}

constexpr size_t kQuoteCharsMax = 60;

// The request environments of one policy: a principal type, an action (declared, or an open
// upstream's stand-in for its unlisted tools) and a resource type.
struct Env {
  std::string_view principal;
  std::string_view resource;
  const SchemaAction* action = nullptr;
  std::string_view open_upstream;  // set when `action` is a stand-in
};

// An action as the type checker sees it: a declared one, or an unlisted tool of an open upstream
// (the environment's stand-in, or a literal naming one).
struct ActionRef {
  const SchemaAction* declared = nullptr;
  std::string_view open_upstream;
  std::string_view literal_id;  // set for a literal naming an unlisted tool
};

BoolType Combine(BoolType a, BoolType b) {  // a && b, without capabilities
  if (a == BoolType::kFalse || b == BoolType::kFalse) return BoolType::kFalse;
  if (a == BoolType::kTrue && b == BoolType::kTrue) return BoolType::kTrue;
  return BoolType::kAny;
}

BoolType AnyOf(BoolType acc, BoolType next) {  // a || b over tri-states, for `in [..]`
  if (acc == BoolType::kTrue || next == BoolType::kTrue) return BoolType::kTrue;
  if (acc == BoolType::kAny || next == BoolType::kAny) return BoolType::kAny;
  return BoolType::kFalse;
}

// Every request environment the schema allows, action by action.
std::vector<Env> Environments(const Schema& schema) {
  std::vector<Env> envs;
  auto add = [&](const SchemaAction& a, std::string_view open_upstream) {
    for (const std::string& p : a.principal_types) {
      for (const std::string& r : a.resource_types) envs.push_back(Env{p, r, &a, open_upstream});
    }
  };
  for (const auto& [id, a] : schema.actions()) {
    if (a.applies) add(a, "");
  }
  for (const auto& [upstream, a] : schema.open_upstreams()) add(a, upstream);
  return envs;
}

struct RawFinding {
  Severity severity;
  std::string rule;
  uint32_t line;
  uint32_t column;
  std::string text;
};

class PolicyChecker {
 public:
  PolicyChecker(const Schema& schema, const Policy& policy, size_t* steps_left)
      : schema_(schema), policy_(policy), steps_left_(steps_left) {}

  bool exhausted() const { return *steps_left_ == 0; }

  // `envs`: every request environment of the schema (Environments()).
  std::vector<ValidationFinding> Run(const std::vector<Env>& envs) {
    CheckNames();
    size_t applicable = 0;
    size_t actions_checked = 0;
    const SchemaAction* last_action = nullptr;
    bool all_false = true;
    for (const Env& env : envs) {
      if (!Step()) break;  // the scope test of each environment is work too
      env_ = &env;
      const BoolType scope = ScopeType(env);
      if (scope == BoolType::kFalse) continue;
      ++applicable;
      if (env.action != last_action) {
        last_action = env.action;
        ++actions_checked;
      }
      env_findings_.clear();
      const BoolType conditions = ConditionsType();
      if (Combine(scope, conditions) != BoolType::kFalse) all_false = false;
      for (RawFinding& f : env_findings_) Aggregate(std::move(f), ActionLabel(env));
    }
    env_ = nullptr;
    std::vector<ValidationFinding> out;
    for (auto& [key, agg] : aggregated_) {
      std::string message = agg.finding.text;
      if (!agg.first_action.empty() && agg.actions < actions_checked) {
        message += " (for " + agg.first_action;
        if (agg.actions > 1) message += " and " + std::to_string(agg.actions - 1) + " other actions";
        message += ")";
      }
      out.push_back(Finding(agg.finding.severity, agg.finding.rule, agg.finding.line, agg.finding.column, std::move(message)));
    }
    if (!exhausted()) {
      if (applicable == 0) {
        out.push_back(Finding(Severity::kWarning, "no-applicable-action", policy_.location.line, policy_.location.column,
                              "no request Mandate makes matches this scope (no action applies to these principal, "
                              "action and resource constraints): the policy never applies"));
      } else if (all_false) {
        out.push_back(Finding(Severity::kWarning, "impossible-policy", policy_.location.line, policy_.location.column,
                              "the policy is false for every request the schema allows: it never applies"));
      }
    }
    std::stable_sort(out.begin(), out.end(), [](const ValidationFinding& a, const ValidationFinding& b) {
      return std::tie(a.location.line, a.location.column) < std::tie(b.location.line, b.location.column);
    });
    return out;
  }

 private:
  struct Aggregated {
    RawFinding finding;
    std::string first_action;  // empty: not specific to an action
    size_t actions = 0;
    std::string last_action;
  };

  ValidationFinding Finding(Severity severity, std::string rule, uint32_t line, uint32_t column, std::string message) const {
    ValidationFinding f;
    f.severity = severity;
    f.rule = std::move(rule);
    f.policy_id = policy_.id;
    f.location = SourceLocation{policy_.location.file, line, column};
    f.message = std::move(message);
    return f;
  }

  void Aggregate(RawFinding f, const std::string& action) {
    auto key = std::make_tuple(f.line, f.column, static_cast<int>(f.severity), f.rule, f.text);
    auto [it, inserted] = aggregated_.try_emplace(std::move(key));
    Aggregated& agg = it->second;
    if (inserted) {
      agg.finding = std::move(f);
      agg.first_action = action;
    }
    if (!action.empty() && agg.last_action != action) {
      agg.last_action = action;
      ++agg.actions;
    }
  }

  static std::string ActionLabel(const Env& env) {
    if (!env.open_upstream.empty()) return "the unlisted tools of upstream " + std::string(env.open_upstream);
    return EntityUid{"Action", env.action->id}.ToString();
  }

  // ---- Names (a pass of its own, like Cedar's: short-circuits do not hide them) ------------

  void CheckNames() {
    for (const ScopeConstraint* c : {&policy_.principal, &policy_.action, &policy_.resource}) {
      for (size_t i = 0; i < c->entities.size(); ++i) {
        const SourceLocation& at = i < c->entity_locations.size() ? c->entity_locations[i] : c->location;
        CheckEntityName(c->entities[i], at.line, at.column);
      }
      if ((c->op == ScopeConstraint::Op::kIs || c->op == ScopeConstraint::Op::kIsIn)) {
        CheckTypeName(c->entity_type, c->location.line, c->location.column);
      }
      if (c == &policy_.action && c->op == ScopeConstraint::Op::kIn && c->entities.empty()) {
        Aggregate(RawFinding{Severity::kError, "empty-set", c->location.line, c->location.column,
                             "`action in []` names no action: an empty set literal has no element type"},
                  "");
      }
    }
    for (const Condition& c : policy_.conditions) {
      if (c.expr) CheckNamesIn(*c.expr);
    }
  }

  void CheckNamesIn(const Expr& e) {
    if (e.kind == ExprKind::kLiteral) CheckNamesInValue(e.value, e, 0);
    if (e.kind == ExprKind::kIs) CheckTypeName(e.name, e.line, e.column);
    for (const auto& c : e.children) CheckNamesIn(*c);  // bounded by the AST depth invariant
  }

  void CheckNamesInValue(const Value& v, const Expr& at, size_t depth) {
    if (depth > core::kPolicyAstDepthMax) return;  // literals are no deeper than their AST
    switch (v.kind()) {
      case Value::Kind::kEntity:
        CheckEntityName(v.as_entity(), at.line, at.column);
        return;
      case Value::Kind::kSet:
        for (const Value& x : v.as_set()) CheckNamesInValue(x, at, depth + 1);
        return;
      case Value::Kind::kRecord:
        for (const auto& [k, x] : v.as_record()) CheckNamesInValue(x, at, depth + 1);
        return;
      default:
        return;
    }
  }

  void CheckTypeName(const std::string& type, uint32_t line, uint32_t column) {
    if (schema_.HasEntityType(type) || type == "Action") return;
    std::vector<std::string_view> candidates;
    for (const auto& [name, et] : schema_.entity_types()) candidates.push_back(name);
    std::string text = "unknown entity type " + type;
    if (std::string near = ClosestName(type, candidates); !near.empty()) {
      text += "; did you mean " + near + "?";
    } else {
      text += " (the types are Human, Agent, Group, Upstream and the upstreams' resource types)";
    }
    Aggregate(RawFinding{Severity::kError, "unknown-entity-type", line, column, text}, "");
  }

  void CheckEntityName(const EntityUid& uid, uint32_t line, uint32_t column) {
    const bool is_action = uid.type == "Action" ||
                           (uid.type.size() > 8 && uid.type.compare(uid.type.size() - 8, 8, "::Action") == 0);
    if (!is_action) {
      CheckTypeName(uid.type, line, column);
      return;
    }
    if (uid.type == "Action" && (schema_.FindAction(uid.id) || schema_.OpenUpstreamOf(uid.id))) return;
    std::string text = "unknown action " + uid.ToString();
    if (uid.type != "Action") {
      text += ": Mandate's actions have the type Action (no namespace)";
    } else if (std::string near = SuggestAction(uid.id); !near.empty()) {
      text += "; did you mean " + EntityUid{"Action", near}.ToString() + "?";
    }
    Aggregate(RawFinding{Severity::kError, "unknown-action", line, column, text}, "");
  }

  // A declared action close to `id`: a tool of the same upstream, or the same tool of the
  // closest upstream, or the closest group.
  std::string SuggestAction(std::string_view id) const {
    std::vector<std::string_view> groups;
    for (const auto& [name, a] : schema_.actions()) {
      if (!a.applies) groups.push_back(name);
    }
    const size_t colon = id.find(':');
    if (colon == std::string_view::npos) return ClosestName(id, groups);
    std::string_view upstream = id.substr(0, colon);
    std::string_view tool = id.substr(colon + 1);
    const SchemaAction* group = schema_.FindAction(upstream);
    if (group == nullptr || group->applies) {
      std::string near = ClosestName(upstream, groups);
      if (near.empty()) return "";
      std::string candidate = near + ":" + std::string(tool);
      return schema_.FindAction(candidate) ? candidate : near;
    }
    std::vector<std::string_view> tools;
    const std::string prefix = std::string(upstream) + ":";
    for (auto it = schema_.actions().lower_bound(prefix); it != schema_.actions().end() && it->first.rfind(prefix, 0) == 0; ++it) {
      tools.push_back(std::string_view(it->first).substr(prefix.size()));
    }
    std::string near = ClosestName(tool, tools);
    return near.empty() ? "" : prefix + near;
  }

  // ---- The scope ---------------------------------------------------------------------------

  ActionRef EnvAction() const {
    ActionRef r;
    if (env_->open_upstream.empty()) {
      r.declared = env_->action;
    } else {
      r.open_upstream = env_->open_upstream;
    }
    return r;
  }

  std::optional<ActionRef> LiteralAction(const EntityUid& uid) const {
    if (uid.type != "Action") return std::nullopt;
    ActionRef r;
    if (const SchemaAction* a = schema_.FindAction(uid.id)) {
      r.declared = a;
      return r;
    }
    if (const SchemaAction* open = schema_.OpenUpstreamOf(uid.id)) {
      r.open_upstream = open->parents.front();
      r.literal_id = uid.id;
      return r;
    }
    return std::nullopt;
  }

  // Whether action `a` is `in` the action `ancestor`, as far as the schema knows.
  BoolType ActionIn(const ActionRef& a, const EntityUid& ancestor) const {
    if (ancestor.type != "Action") return BoolType::kFalse;
    if (a.declared != nullptr) {
      // Breadth-first over the declared parents; the actions bound the walk.
      std::vector<const SchemaAction*> frontier{a.declared};
      std::set<const SchemaAction*> seen{a.declared};
      while (!frontier.empty()) {
        const SchemaAction* x = frontier.back();
        frontier.pop_back();
        if (x->id == ancestor.id) return BoolType::kTrue;
        for (const std::string& p : x->parents) {
          const SchemaAction* parent = schema_.FindAction(p);
          if (parent != nullptr && seen.insert(parent).second) frontier.push_back(parent);
        }
      }
      return BoolType::kFalse;
    }
    if (!a.literal_id.empty() && a.literal_id == ancestor.id) return BoolType::kTrue;
    if (ancestor.id == a.open_upstream) return BoolType::kTrue;
    if (IsClassAction(ancestor.id)) return BoolType::kAny;  // the class of an unlisted tool is not known
    if (a.literal_id.empty()) {
      const SchemaAction* open = schema_.OpenUpstreamOf(ancestor.id);
      if (open != nullptr && open->parents.front() == a.open_upstream) return BoolType::kAny;
    }
    return BoolType::kFalse;
  }

  BoolType ActionEq(const ActionRef& a, const ActionRef& b) const {
    if (a.declared != nullptr || b.declared != nullptr) {
      return a.declared == b.declared ? BoolType::kTrue : BoolType::kFalse;
    }
    if (a.open_upstream != b.open_upstream) return BoolType::kFalse;
    if (!a.literal_id.empty() && !b.literal_id.empty()) {
      return a.literal_id == b.literal_id ? BoolType::kTrue : BoolType::kFalse;
    }
    if (a.literal_id.empty() && b.literal_id.empty()) return BoolType::kTrue;  // the same stand-in
    return BoolType::kAny;  // the stand-in may be that unlisted tool
  }

  BoolType EntityScope(const ScopeConstraint& c, std::string_view type) const {
    switch (c.op) {
      case ScopeConstraint::Op::kAny:
        return BoolType::kTrue;
      case ScopeConstraint::Op::kEq:
        return c.entities.front().type == type ? BoolType::kAny : BoolType::kFalse;
      case ScopeConstraint::Op::kIn:
        return schema_.MayBeIn(type, c.entities.front().type) ? BoolType::kAny : BoolType::kFalse;
      case ScopeConstraint::Op::kIs:
        return c.entity_type == type ? BoolType::kTrue : BoolType::kFalse;
      case ScopeConstraint::Op::kIsIn:
        if (c.entity_type != type) return BoolType::kFalse;
        return schema_.MayBeIn(type, c.entities.front().type) ? BoolType::kAny : BoolType::kFalse;
    }
    return BoolType::kAny;
  }

  BoolType ActionScope(const ScopeConstraint& c) const {
    if (c.op == ScopeConstraint::Op::kAny) return BoolType::kTrue;
    const ActionRef self = EnvAction();
    if (c.op == ScopeConstraint::Op::kEq) {
      std::optional<ActionRef> lit = LiteralAction(c.entities.front());
      return lit ? ActionEq(self, *lit) : BoolType::kFalse;
    }
    BoolType out = BoolType::kFalse;  // `in [...]`: in any of them
    for (const EntityUid& uid : c.entities) out = AnyOf(out, ActionIn(self, uid));
    return out;
  }

  BoolType ScopeType(const Env& env) const {
    BoolType t = EntityScope(policy_.principal, env.principal);
    if (t == BoolType::kFalse) return t;
    t = Combine(t, ActionScope(policy_.action));
    if (t == BoolType::kFalse) return t;
    return Combine(t, EntityScope(policy_.resource, env.resource));
  }

  // The conditions, in order, as one `&&` chain (capabilities flow from each to the next;
  // `unless { e }` is `!e`).
  BoolType ConditionsType() {
    BoolType acc = BoolType::kTrue;
    Caps caps;
    for (const Condition& c : policy_.conditions) {
      if (acc == BoolType::kFalse || !c.expr) break;
      TypeResult r = Check(*c.expr, caps);
      BoolType b = ExpectBool(r.t, *c.expr, "a condition");
      if (!c.is_when) {
        b = Negate(b);
        r.caps.clear();
      }
      acc = Combine(acc, b);
      if (acc != BoolType::kFalse) caps = Union(caps, r.caps);
    }
    return acc;
  }

  // ---- The type checker -----------------------------------------------------------------

  void Report(const Expr& at, std::string rule, std::string text) {
    env_findings_.push_back(RawFinding{Severity::kError, std::move(rule), at.line, at.column, std::move(text)});
  }

  const std::string& Key(const Expr& e) {
    auto it = keys_.find(&e);
    if (it != keys_.end()) return it->second;
    std::string s;
    Print(e, &s);
    return keys_.emplace(&e, std::move(s)).first->second;
  }

  // `e` quoted for a message, shortened.
  std::string Quote(const Expr& e) {
    std::string s = Key(e);
    if (s.size() > kQuoteCharsMax) s = s.substr(0, kQuoteCharsMax - 3) + "...";
    return "`" + s + "`";
  }

  static std::string Article(const CedarType& t) {
    switch (t.kind) {
      case Kind::kBool:
        return "a Bool";
      case Kind::kLong:
        return "a Long";
      case Kind::kString:
        return "a String";
      case Kind::kEntity:
        return "an entity of type " + t.entity_type;
      case Kind::kSet:
        return "a set (" + t.ToString() + ")";
      case Kind::kRecord:
        return "a record";
      default:
        return "of an unknown type";
    }
  }

  // The boolean type of an operand that must be a Bool; reports it otherwise.
  BoolType ExpectBool(const Typed& t, const Expr& at, std::string_view role) {
    if (IsUnknown(t)) return BoolType::kAny;
    if (t.type->kind != Kind::kBool) {
      Report(at, "type-error", Quote(at) + " is " + Article(*t.type) + ", but " + std::string(role) + " must be a Bool");
      return BoolType::kAny;
    }
    return t.b;
  }

  // Reports an operand that must be a Long.
  void ExpectLong(const Typed& t, const Expr& at, std::string_view op) {
    if (IsUnknown(t) || t.type->kind == Kind::kLong) return;
    std::string text = Quote(at) + " is " + Article(*t.type) + ", but `" + std::string(op) + "` takes Longs";
    if (op == "+" && t.type->kind == Kind::kString) text += " (Cedar has no string concatenation)";
    Report(at, "type-error", std::move(text));
  }

  bool Step() {
    if (*steps_left_ == 0) return false;
    --*steps_left_;
    return true;
  }

  TypeResult Check(const Expr& e, const Caps& caps) {
    if (!Step()) return {};
    switch (e.kind) {
      case ExprKind::kLiteral:
        return {TypeOfValue(e.value, e, 0), {}};
      case ExprKind::kVar:
        switch (e.var) {
          case Var::kPrincipal:
            return {Of(CedarType::Entity(std::string(env_->principal))), {}};
          case Var::kAction:
            return {Of(CedarType::Entity("Action")), {}};
          case Var::kResource:
            return {Of(CedarType::Entity(std::string(env_->resource))), {}};
          case Var::kContext:
            return {Of(env_->action->context), {}};
        }
        return {};
      case ExprKind::kSet: {
        std::vector<Typed> elements;
        for (const auto& c : e.children) elements.push_back(Check(*c, caps).t);
        return {SetOf(elements, e), {}};
      }
      case ExprKind::kRecord: {
        std::vector<CedarAttribute> attrs;
        for (size_t i = 0; i < e.children.size(); ++i) {
          attrs.push_back(CedarAttribute{e.keys[i], Check(*e.children[i], caps).t.type, true});
        }
        return {Of(CedarType::Record(std::move(attrs))), {}};
      }
      case ExprKind::kNot: {
        Typed t = Check(*e.children[0], caps).t;
        return {BoolT(Negate(ExpectBool(t, *e.children[0], "the operand of `!`"))), {}};
      }
      case ExprKind::kNeg: {
        ExpectLong(Check(*e.children[0], caps).t, *e.children[0], "-");
        return {Of(CedarType::Long()), {}};
      }
      case ExprKind::kAnd:
        return CheckAnd(e, caps);
      case ExprKind::kOr:
        return CheckOr(e, caps);
      case ExprKind::kIf:
        return CheckIf(e, caps);
      case ExprKind::kEq:
        return {BoolT(TypeOfEq(e, caps)), {}};
      case ExprKind::kNe:
        return {BoolT(Negate(TypeOfEq(e, caps))), {}};
      case ExprKind::kLt:
      case ExprKind::kLe:
      case ExprKind::kGt:
      case ExprKind::kGe:
      case ExprKind::kAdd:
      case ExprKind::kSub:
      case ExprKind::kMul: {
        static const std::map<ExprKind, std::string_view> kOps = {
            {ExprKind::kLt, "<"}, {ExprKind::kLe, "<="}, {ExprKind::kGt, ">"}, {ExprKind::kGe, ">="},
            {ExprKind::kAdd, "+"}, {ExprKind::kSub, "-"}, {ExprKind::kMul, "*"}};
        const std::string_view op = kOps.at(e.kind);
        for (const auto& c : e.children) ExpectLong(Check(*c, caps).t, *c, op);
        if (e.kind == ExprKind::kAdd || e.kind == ExprKind::kSub || e.kind == ExprKind::kMul) {
          return {Of(CedarType::Long()), {}};
        }
        return {BoolT(BoolType::kAny), {}};
      }
      case ExprKind::kIn:
        return {BoolT(TypeOfIn(e, caps)), {}};
      case ExprKind::kContains:
      case ExprKind::kContainsAll:
      case ExprKind::kContainsAny:
      case ExprKind::kIsEmpty:
        return {CheckSetMethod(e, caps), {}};
      case ExprKind::kGetAttr:
        return {TypeOfGetAttr(e, caps), {}};
      case ExprKind::kHasAttr:
        return TypeOfHasAttr(e, caps);
      case ExprKind::kLike: {
        Typed t = Check(*e.children[0], caps).t;
        if (!IsUnknown(t) && t.type->kind != Kind::kString) {
          Report(*e.children[0], "type-error", Quote(*e.children[0]) + " is " + Article(*t.type) + ", but `like` matches Strings");
        }
        return {BoolT(BoolType::kAny), {}};
      }
      case ExprKind::kIs:
        return CheckIs(e, caps);
      default:
        // A kind this validator does not know (e.g. an extension function): its type is
        // unknown, and only its operands are checked.
        for (const auto& c : e.children) Check(*c, caps);
        return {};
    }
  }

  Typed TypeOfValue(const Value& v, const Expr& at, size_t depth) {
    switch (v.kind()) {
      case Value::Kind::kBool:
        return BoolT(v.as_bool() ? BoolType::kTrue : BoolType::kFalse);
      case Value::Kind::kLong:
        return Of(CedarType::Long());
      case Value::Kind::kString:
        return Of(CedarType::String());
      case Value::Kind::kEntity: {
        const EntityUid& uid = v.as_entity();
        if (uid.type == "Action") return LiteralAction(uid) ? Of(CedarType::Entity("Action")) : UnknownT();
        return schema_.HasEntityType(uid.type) ? Of(CedarType::Entity(uid.type)) : UnknownT();  // else reported by CheckNames
      }
      case Value::Kind::kSet: {
        if (v.as_set().empty()) {
          Report(at, "empty-set", "an empty set literal `[]` has no element type, so it cannot be checked (Cedar's validator refuses it); test `.isEmpty()` instead");
          return UnknownT();
        }
        if (depth > core::kPolicyAstDepthMax) return UnknownT();
        std::vector<Typed> elements;
        for (const Value& x : v.as_set()) elements.push_back(TypeOfValue(x, at, depth + 1));
        return SetOf(elements, at);
      }
      case Value::Kind::kRecord: {
        if (depth > core::kPolicyAstDepthMax) return UnknownT();
        std::vector<CedarAttribute> attrs;
        for (const auto& [k, x] : v.as_record()) attrs.push_back(CedarAttribute{k, TypeOfValue(x, at, depth + 1).type, true});
        return Of(CedarType::Record(std::move(attrs)));
      }
      default:
        return UnknownT();  // a kind of value this validator does not know
    }
  }

  Typed SetOf(const std::vector<Typed>& elements, const Expr& at) {
    if (elements.empty()) return Of(CedarType::Set(CedarType::Unknown()));
    CedarTypePtr element = elements.front().type;
    for (size_t i = 1; i < elements.size(); ++i) {
      CedarTypePtr next = Lub(element, elements[i].type);
      if (!next) {
        Report(at, "type-error", "the elements of a set must have the same type, but this set holds " + Article(*element) +
                                     " and " + Article(*elements[i].type));
        return UnknownT();
      }
      element = std::move(next);
    }
    return Of(CedarType::Set(std::move(element)));
  }

  std::optional<ActionRef> ActionOf(const Expr& e) const {
    if (e.kind == ExprKind::kVar && e.var == Var::kAction) return EnvAction();
    if (e.kind == ExprKind::kLiteral && e.value.is_entity()) return LiteralAction(e.value.as_entity());
    return std::nullopt;
  }

  static bool IsPrimitiveLiteral(const Expr& e) {
    return e.kind == ExprKind::kLiteral && (e.value.is_bool() || e.value.is_long() || e.value.is_string() || e.value.is_entity());
  }

  BoolType TypeOfEq(const Expr& e, const Caps& caps) {
    const Expr& x = *e.children[0];
    const Expr& y = *e.children[1];
    Typed a = Check(x, caps).t;
    Typed b = Check(y, caps).t;
    std::optional<ActionRef> ax = ActionOf(x);
    std::optional<ActionRef> ay = ActionOf(y);
    if (ax && ay) return ActionEq(*ax, *ay);
    if (IsPrimitiveLiteral(x) && IsPrimitiveLiteral(y)) return x.value == y.value ? BoolType::kTrue : BoolType::kFalse;
    if (IsUnknown(a) || IsUnknown(b)) return BoolType::kAny;
    if (Lub(a.type, b.type)) return BoolType::kAny;
    if (a.type->kind == Kind::kEntity && b.type->kind == Kind::kEntity) return BoolType::kFalse;
    Report(e, "type-error", Quote(x) + " is " + Article(*a.type) + " and " + Quote(y) + " is " + Article(*b.type) +
                                ": `" + std::string(e.kind == ExprKind::kEq ? "==" : "!=") +
                                "` compares values of the same type, so this is always " +
                                (e.kind == ExprKind::kEq ? "false" : "true"));
    return BoolType::kAny;
  }

  BoolType TypeOfIn(const Expr& e, const Caps& caps) {
    const Expr& x = *e.children[0];
    const Expr& y = *e.children[1];
    Typed a = Check(x, caps).t;
    Typed b = Check(y, caps).t;
    bool bad = false;
    if (!IsUnknown(a) && a.type->kind != Kind::kEntity) {
      Report(x, "type-error", Quote(x) + " is " + Article(*a.type) + ", but the left of `in` must be an entity");
      bad = true;
    }
    const bool rhs_ok = IsUnknown(b) || b.type->kind == Kind::kEntity ||
                        (b.type->kind == Kind::kSet &&
                         (b.type->element->kind == Kind::kEntity || b.type->element->kind == Kind::kUnknown));
    if (!rhs_ok) {
      Report(y, "type-error", Quote(y) + " is " + Article(*b.type) + ", but the right of `in` must be an entity or a set of entities");
      bad = true;
    }
    if (bad || IsUnknown(a) || IsUnknown(b)) return BoolType::kAny;
    if (std::optional<ActionRef> self = ActionOf(x); self && y.kind == ExprKind::kLiteral) {
      if (y.value.is_entity()) return ActionIn(*self, y.value.as_entity());
      if (y.value.is_set()) {
        BoolType out = BoolType::kFalse;
        for (const Value& v : y.value.as_set()) out = AnyOf(out, v.is_entity() ? ActionIn(*self, v.as_entity()) : BoolType::kAny);
        return out;
      }
    }
    const CedarType& target = b.type->kind == Kind::kSet ? *b.type->element : *b.type;
    if (target.kind == Kind::kUnknown) return BoolType::kAny;
    return schema_.MayBeIn(a.type->entity_type, target.entity_type) ? BoolType::kAny : BoolType::kFalse;
  }

  Typed CheckSetMethod(const Expr& e, const Caps& caps) {
    static const std::map<ExprKind, std::string_view> kNames = {{ExprKind::kContains, "contains"},
                                                                {ExprKind::kContainsAll, "containsAll"},
                                                                {ExprKind::kContainsAny, "containsAny"},
                                                                {ExprKind::kIsEmpty, "isEmpty"}};
    const std::string method(kNames.at(e.kind));
    const Expr& x = *e.children[0];
    Typed set = Check(x, caps).t;
    std::optional<Typed> arg;
    if (e.children.size() > 1) arg = Check(*e.children[1], caps).t;
    if (IsUnknown(set)) return BoolT(BoolType::kAny);
    if (set.type->kind != Kind::kSet) {
      std::string text = Quote(x) + " is " + Article(*set.type) + ", but `." + method + "()` is a method of sets";
      if (e.kind == ExprKind::kIsEmpty && set.type->kind == Kind::kString) text += " (test `== \"\"` for an empty string)";
      Report(x, "type-error", std::move(text));
      return BoolT(BoolType::kAny);
    }
    if (!arg || IsUnknown(*arg)) return BoolT(BoolType::kAny);
    const Expr& y = *e.children[1];
    if (e.kind == ExprKind::kContains) {
      if (!Lub(set.type->element, arg->type)) {
        Report(e, "type-error", "the elements of " + Quote(x) + " have type " + set.type->element->ToString() + ", but " + Quote(y) +
                                    " is " + Article(*arg->type) + ": `.contains()` is always false");
      }
      return BoolT(BoolType::kAny);
    }
    if (arg->type->kind != Kind::kSet) {
      Report(y, "type-error", Quote(y) + " is " + Article(*arg->type) + ", but `." + method + "()` takes a set");
    } else if (!Lub(set.type, arg->type)) {
      Report(e, "type-error", "the elements of " + Quote(x) + " have type " + set.type->element->ToString() + " and those of " +
                                  Quote(y) + " type " + arg->type->element->ToString() + ": they can never be equal");
    }
    return BoolT(BoolType::kAny);
  }

  // The record type of `t` for attribute access: itself, or an entity's attributes (none: no
  // entity of Mandate's schema has attributes).
  Typed TypeOfGetAttr(const Expr& e, const Caps& caps) {
    const Expr& x = *e.children[0];
    Typed t = Check(x, caps).t;
    if (IsUnknown(t)) return UnknownT();
    if (t.type->kind == Kind::kEntity) {
      Report(e, "unknown-attribute", Quote(x) + " (" + Article(*t.type) + ") has no attribute `" + e.name +
                                         "`: Mandate's entities carry no attributes");
      return UnknownT();
    }
    if (t.type->kind != Kind::kRecord) {
      Report(e, "type-error", Quote(x) + " is " + Article(*t.type) + ": only records and entities have attributes (`" + e.name + "`)");
      return UnknownT();
    }
    const CedarType& record = *t.type;
    if (const CedarAttribute* a = record.Find(e.name)) {
      if (!a->required && !caps.count(Capability{Key(x), e.name})) {
        std::string has = Key(x) + " has ";
        if (IsBareName(e.name)) {
          has += e.name;
        } else {
          core::AppendJsonString(e.name, &has);
        }
        Report(e, "unsafe-optional-attribute",
               Quote(e) + " is optional and may be absent (the call then fails to evaluate and is denied): test `" + has +
                   "` first, as in `" + has + " && ...`");
      }
      return Of(a->type);
    }
    if (record.open) return UnknownT();
    std::vector<std::string_view> names;
    for (const CedarAttribute& a : record.attributes) names.push_back(a.name);
    std::string text = Quote(x) + " has no attribute `" + e.name + "`";
    if (std::string near = ClosestName(e.name, names); !near.empty()) {
      text += "; did you mean `" + near + "`?";
    } else if (names.empty()) {
      text += " (it has no attributes)";
    } else if (names.size() <= 8) {
      text += " (it has: ";
      for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : "") + std::string(names[i]);
      text += ")";
    }
    Report(e, "unknown-attribute", std::move(text));
    return UnknownT();
  }

  TypeResult TypeOfHasAttr(const Expr& e, const Caps& caps) {
    const Expr& x = *e.children[0];
    Typed t = Check(x, caps).t;
    Capability cap{Key(x), e.name};
    if (IsUnknown(t)) return {BoolT(BoolType::kAny), {cap}};
    if (t.type->kind == Kind::kEntity) return {BoolT(BoolType::kFalse), {}};  // no attributes
    if (t.type->kind != Kind::kRecord) {
      Report(x, "type-error", Quote(x) + " is " + Article(*t.type) + ", but `has` tests records and entities");
      return {BoolT(BoolType::kAny), {}};
    }
    const CedarAttribute* a = t.type->Find(e.name);
    if (a == nullptr) {
      if (t.type->open) return {BoolT(BoolType::kAny), {cap}};
      return {BoolT(BoolType::kFalse), {}};
    }
    if (a->required || caps.count(cap)) return {BoolT(BoolType::kTrue), {}};
    return {BoolT(BoolType::kAny), {cap}};
  }

  TypeResult CheckAnd(const Expr& e, const Caps& caps) {
    TypeResult first = Check(*e.children[0], caps);
    BoolType acc = ExpectBool(first.t, *e.children[0], "an operand of `&&`");
    Caps acc_caps = IsUnknown(first.t) ? Caps{} : first.caps;
    for (size_t i = 1; i < e.children.size() && acc != BoolType::kFalse; ++i) {
      TypeResult r = Check(*e.children[i], Union(caps, acc_caps));
      BoolType b = ExpectBool(r.t, *e.children[i], "an operand of `&&`");
      if (b == BoolType::kFalse) {
        acc = BoolType::kFalse;
      } else {
        if (b == BoolType::kAny) acc = BoolType::kAny;
        acc_caps = Union(acc_caps, r.caps);
      }
    }
    if (acc == BoolType::kFalse) acc_caps.clear();
    return {BoolT(acc), std::move(acc_caps)};
  }

  TypeResult CheckOr(const Expr& e, const Caps& caps) {
    TypeResult first = Check(*e.children[0], caps);
    BoolType acc = ExpectBool(first.t, *e.children[0], "an operand of `||`");
    Caps acc_caps = first.caps;
    for (size_t i = 1; i < e.children.size() && acc != BoolType::kTrue; ++i) {
      TypeResult r = Check(*e.children[i], caps);
      BoolType b = ExpectBool(r.t, *e.children[i], "an operand of `||`");
      if (acc == BoolType::kFalse) {
        acc = b;
        acc_caps = r.caps;
      } else if (b == BoolType::kTrue) {
        acc = BoolType::kTrue;
      } else if (b == BoolType::kAny) {
        acc_caps = Intersection(acc_caps, r.caps);
      }
    }
    if (acc == BoolType::kTrue) acc_caps.clear();
    return {BoolT(acc), std::move(acc_caps)};
  }

  TypeResult CheckIf(const Expr& e, const Caps& caps) {
    TypeResult cond = Check(*e.children[0], caps);
    BoolType c = ExpectBool(cond.t, *e.children[0], "the condition of `if`");
    if (c == BoolType::kTrue) {
      TypeResult then = Check(*e.children[1], Union(caps, cond.caps));
      return {then.t, Union(cond.caps, then.caps)};
    }
    if (c == BoolType::kFalse) return Check(*e.children[2], caps);
    TypeResult then = Check(*e.children[1], Union(caps, cond.caps));
    TypeResult otherwise = Check(*e.children[2], caps);
    Caps out_caps = Intersection(Union(cond.caps, then.caps), otherwise.caps);
    CedarTypePtr t = Lub(then.t.type, otherwise.t.type);
    if (!t) {
      Report(e, "type-error", "the branches of `if` must have the same type, but `then` is " + Article(*then.t.type) +
                                  " and `else` is " + Article(*otherwise.t.type));
      return {UnknownT(), {}};
    }
    Typed out = Of(t);
    if (t->kind == Kind::kBool) out.b = then.t.b == otherwise.t.b ? then.t.b : BoolType::kAny;
    return {out, std::move(out_caps)};
  }

  TypeResult CheckIs(const Expr& e, const Caps& caps) {
    const Expr& x = *e.children[0];
    Typed t = Check(x, caps).t;
    BoolType is = BoolType::kAny;
    if (!IsUnknown(t)) {
      if (t.type->kind != Kind::kEntity) {
        Report(x, "type-error", Quote(x) + " is " + Article(*t.type) + ", but `is` tests entities");
      } else {
        is = t.type->entity_type == e.name ? BoolType::kTrue : BoolType::kFalse;
      }
    }
    if (e.children.size() < 2 || is == BoolType::kFalse) return {BoolT(is), {}};
    // `x is T in y` is `x is T && x in y`.
    return {BoolT(Combine(is, TypeOfInRight(*e.children[1], t, caps))), {}};
  }

  // `x in y` with x already typed as `a` (for `is ... in`).
  BoolType TypeOfInRight(const Expr& y, const Typed& a, const Caps& caps) {
    Typed b = Check(y, caps).t;
    if (IsUnknown(a) || IsUnknown(b)) return BoolType::kAny;
    if (a.type->kind != Kind::kEntity) return BoolType::kAny;  // reported by CheckIs
    if (b.type->kind == Kind::kEntity) return schema_.MayBeIn(a.type->entity_type, b.type->entity_type) ? BoolType::kAny : BoolType::kFalse;
    if (b.type->kind == Kind::kSet) {
      if (b.type->element->kind == Kind::kUnknown) return BoolType::kAny;
      if (b.type->element->kind == Kind::kEntity) {
        return schema_.MayBeIn(a.type->entity_type, b.type->element->entity_type) ? BoolType::kAny : BoolType::kFalse;
      }
    }
    Report(y, "type-error", Quote(y) + " is " + Article(*b.type) + ", but the right of `in` must be an entity or a set of entities");
    return BoolType::kAny;
  }

  const Schema& schema_;
  const Policy& policy_;
  size_t* steps_left_;
  const Env* env_ = nullptr;
  std::vector<RawFinding> env_findings_;
  std::map<std::tuple<uint32_t, uint32_t, int, std::string, std::string>, Aggregated> aggregated_;
  std::unordered_map<const Expr*, std::string> keys_;
};

// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions of
// adjacent characters ("tiem" -> "time") cost 1. Stops early once every path costs > cutoff.
size_t EditDistance(std::string_view a, std::string_view b, size_t cutoff) {
  std::vector<size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    size_t row_min = cur[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) cur[j] = std::min(cur[j], before[j - 2] + 1);
      row_min = std::min(row_min, cur[j]);
    }
    if (row_min > cutoff) return cutoff + 1;
    std::swap(before, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string ClosestName(std::string_view name, const std::vector<std::string_view>& candidates) {
  constexpr size_t kNameCharsMax = 256;  // longer names get no suggestion (the cost is quadratic)
  // One or two characters are too short to tell a typo from another name.
  if (name.size() < 3 || name.size() > kNameCharsMax) return "";
  const size_t allowed = std::clamp<size_t>(name.size() / 3, 1, 3);
  std::string best;
  size_t best_distance = allowed + 1;
  for (std::string_view c : candidates) {
    if (c.size() > kNameCharsMax || c == name) continue;
    if ((c.size() > name.size() ? c.size() - name.size() : name.size() - c.size()) > allowed) continue;
    size_t d = EditDistance(name, c, allowed);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(c);
    }
  }
  return best;
}

std::string ValidationFinding::ToString() const {
  return location.ToString() + (severity == Severity::kError ? ": error: [" : ": warning: [") + rule + "] " + policy_id +
         ": " + message;
}

std::vector<ValidationFinding> Validate(const PolicySet& set, const Schema& schema) {
  return Validate(set.policies(), schema);
}

std::vector<ValidationFinding> Validate(const std::vector<Policy>& policies, const Schema& schema, size_t steps_max) {
  std::vector<ValidationFinding> out;
  size_t steps_left = steps_max;
  const std::vector<Env> envs = Environments(schema);
  for (size_t i = 0; i < policies.size(); ++i) {
    PolicyChecker checker(schema, policies[i], &steps_left);
    std::vector<ValidationFinding> found = checker.Run(envs);
    if (checker.exhausted()) {
      ValidationFinding f;
      f.severity = Severity::kWarning;
      f.rule = "validation-incomplete";
      f.policy_id = policies[i].id;
      f.location = policies[i].location;
      f.message = "validation stopped after " + std::to_string(steps_max) +
                  " steps: this policy and the " + std::to_string(policies.size() - i - 1) +
                  " after it were not (fully) checked";
      out.insert(out.end(), found.begin(), found.end());
      out.push_back(std::move(f));
      break;
    }
    out.insert(out.end(), std::make_move_iterator(found.begin()), std::make_move_iterator(found.end()));
  }
  return out;
}

}  // namespace mandate::policy
