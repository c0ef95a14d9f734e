#include "policy/evaluator.h"

#include <array>
#include <span>
#include <utility>
#include <vector>

#include "mandate/core/check.h"
#include "mandate/core/limits.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;

std::string_view OpName(ExprKind k) {
  switch (k) {
    case ExprKind::kNot:
      return "'!'";
    case ExprKind::kNeg:
      return "'-'";
    case ExprKind::kAnd:
      return "'&&'";
    case ExprKind::kOr:
      return "'||'";
    case ExprKind::kIf:
      return "'if'";
    case ExprKind::kEq:
      return "'=='";
    case ExprKind::kNe:
      return "'!='";
    case ExprKind::kLt:
      return "'<'";
    case ExprKind::kLe:
      return "'<='";
    case ExprKind::kGt:
      return "'>'";
    case ExprKind::kGe:
      return "'>='";
    case ExprKind::kIn:
      return "'in'";
    case ExprKind::kAdd:
      return "'+'";
    case ExprKind::kSub:
      return "'-'";
    case ExprKind::kMul:
      return "'*'";
    case ExprKind::kContains:
      return "'contains'";
    case ExprKind::kContainsAll:
      return "'containsAll'";
    case ExprKind::kContainsAny:
      return "'containsAny'";
    case ExprKind::kIsEmpty:
      return "'isEmpty'";
    case ExprKind::kGetAttr:
      return "attribute access";
    case ExprKind::kHasAttr:
      return "'has'";
    case ExprKind::kLike:
      return "'like'";
    case ExprKind::kIs:
      return "'is'";
    case ExprKind::kGetTag:
      return "'getTag'";
    case ExprKind::kHasTag:
      return "'hasTag'";
    default:
      return "expression";
  }
}

}  // namespace

Evaluator::Evaluator(const Request& request, const Entities& entities)
    : request_(request),
      entities_(entities),
      principal_(Value::Entity(request.principal)),
      action_(Value::Entity(request.action)),
      resource_(Value::Entity(request.resource)) {}

core::Error Evaluator::ErrorAt(const Expr& e, const std::string& message) const {
  return MakeError(ErrorCode::kBadRequest, message + " at " + (file_ ? *file_ : std::string()) +
                                               ":" + std::to_string(e.line) + ":" +
                                               std::to_string(e.column));
}

core::Error Evaluator::TypeError(const Expr& e, std::string_view op, std::string_view expected,
                                 const Value& got) const {
  return ErrorAt(e, "type error: " + std::string(op) + " expects " + std::string(expected) +
                        ", got " + std::string(TypeName(got)));
}

core::Status Evaluator::Charge(size_t steps, const Expr& e) {
  steps_ += steps;
  if (steps_ > core::kPolicyEvalStepsMax) {
    return ErrorAt(e,
                   "evaluation exceeded " + std::to_string(core::kPolicyEvalStepsMax) + " steps");
  }
  return core::OkStatus();
}

Evaluator::Ancestors* Evaluator::CachedAncestors(const EntityUid& uid) {
  Ancestors* cache = nullptr;
  if (uid == request_.principal) {
    cache = &principal_ancestors_;
  } else if (uid == request_.action) {
    cache = &action_ancestors_;
  } else if (uid == request_.resource) {
    cache = &resource_ancestors_;
  } else {
    return nullptr;
  }
  if (!cache->computed) {
    cache->computed = true;
    cache->status = entities_.ForEachAncestor(uid, [cache](const EntityUid& a) {
      cache->list.push_back(&a);
      return true;
    });
  }
  return cache;
}

const std::vector<const EntityUid*>* Evaluator::RequestAncestors(Var v) {
  const EntityUid& uid = v == Var::kPrincipal ? request_.principal
                         : v == Var::kAction  ? request_.action
                                              : request_.resource;
  MANDATE_DCHECK(v != Var::kContext);
  Ancestors* cached = CachedAncestors(uid);
  return cached->status.ok() ? &cached->list : nullptr;
}

Result<bool> Evaluator::InEntity(const EntityUid& child, const EntityUid& parent) {
  if (child == parent) return true;
  if (Ancestors* cached = CachedAncestors(child)) {
    if (!cached->status.ok()) return cached->status.error();
    for (const EntityUid* a : cached->list) {
      if (*a == parent) return true;
    }
    return false;
  }
  return entities_.IsDescendantChecked(child, parent);
}

Result<bool> Evaluator::InValue(const Expr& e, const EntityUid& child, const Value& rhs) {
  if (rhs.is_entity()) {
    Result<bool> r = InEntity(child, rhs.as_entity());
    if (!r.ok()) return ErrorAt(e, r.error().message);
    return r;
  }
  if (!rhs.is_set()) return TypeError(e, "'in'", "an entity or a set of entities", rhs);
  MANDATE_RETURN_IF_ERROR(Charge(rhs.as_set().size(), e));
  // Like the reference, every element must be an entity, even after a match.
  for (const Value& v : rhs.as_set()) {
    if (!v.is_entity()) return TypeError(e, "'in'", "a set of entities", v);
  }
  for (const Value& v : rhs.as_set()) {
    Result<bool> r = InEntity(child, v.as_entity());
    if (!r.ok()) return ErrorAt(e, r.error().message);
    if (*r) return true;
  }
  return false;
}

Result<bool> Evaluator::MatchScope(const ScopeConstraint& c, const EntityUid& uid) {
  switch (c.op) {
    case ScopeConstraint::Op::kAny:
      return true;
    case ScopeConstraint::Op::kEq:
      return uid == c.entities.front();
    case ScopeConstraint::Op::kIs:
    case ScopeConstraint::Op::kIsIn:
      if (uid.type != c.entity_type) return false;
      if (c.op == ScopeConstraint::Op::kIs) return true;
      [[fallthrough]];
    case ScopeConstraint::Op::kIn:
      for (const EntityUid& target : c.entities) {
        MANDATE_ASSIGN_OR_RETURN(bool in, InEntity(uid, target));
        if (in) return true;
      }
      return false;
  }
  return false;
}

Result<bool> Evaluator::Satisfied(const Policy& policy) {
  steps_ = 0;
  file_ = &policy.location.file;
  MANDATE_ASSIGN_OR_RETURN(bool principal_ok, MatchScope(policy.principal, request_.principal));
  if (!principal_ok) return false;
  MANDATE_ASSIGN_OR_RETURN(bool action_ok, MatchScope(policy.action, request_.action));
  if (!action_ok) return false;
  MANDATE_ASSIGN_OR_RETURN(bool resource_ok, MatchScope(policy.resource, request_.resource));
  if (!resource_ok) return false;
  for (const Condition& c : policy.conditions) {
    MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*c.expr));
    if (!v.get().is_bool()) {
      return TypeError(*c.expr, c.is_when ? "'when'" : "'unless'", "a bool", v.get());
    }
    if (v.get().as_bool() != c.is_when) return false;
  }
  return true;
}

Result<Value> Evaluator::Evaluate(const Expr& expr, const std::string& file) {
  steps_ = 0;
  file_ = &file;
  MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(expr));
  return std::move(v).Take();
}

// Invariant: recursion depth is bounded by the AST depth (ast.h), at most
// core::kPolicyAstDepthMax.
Result<Evaluator::Ref> Evaluator::Eval(const Expr& e) {
  MANDATE_RETURN_IF_ERROR(Charge(1, e));
  switch (e.kind) {
    case ExprKind::kLiteral:
      return Ref::Borrow(e.value);
    case ExprKind::kVar:
      switch (e.var) {
        case Var::kPrincipal:
          return Ref::Borrow(principal_);
        case Var::kAction:
          return Ref::Borrow(action_);
        case Var::kResource:
          return Ref::Borrow(resource_);
        case Var::kContext:
          return Ref::Borrow(request_.context);
      }
      return ErrorAt(e, "unknown variable");
    case ExprKind::kSet: {
      std::vector<Value> elements;
      elements.reserve(e.children.size());
      for (const auto& c : e.children) {
        MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*c));
        elements.push_back(std::move(v).Take());
      }
      return Ref::Own(Value::Set(std::move(elements)));
    }
    case ExprKind::kRecord: {
      Value::RecordFields fields;
      for (size_t i = 0; i < e.children.size(); ++i) {
        MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[i]));
        fields.emplace(e.keys[i], std::move(v).Take());
      }
      return Ref::Own(Value::Record(std::move(fields)));
    }
    case ExprKind::kNot: {
      MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[0]));
      if (!v.get().is_bool()) return TypeError(e, OpName(e.kind), "a bool", v.get());
      return Ref::Own(Value::Bool(!v.get().as_bool()));
    }
    case ExprKind::kNeg: {
      MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[0]));
      if (!v.get().is_long()) return TypeError(e, OpName(e.kind), "a long", v.get());
      if (v.get().as_long() == INT64_MIN) return ErrorAt(e, "integer overflow in '-'");
      return Ref::Own(Value::Long(-v.get().as_long()));
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {
      // Short-circuit: the first false (&&) or true (||) operand decides; operands after it are
      // not evaluated, so they cannot error. Every evaluated operand must be a bool.
      const bool decisive = e.kind == ExprKind::kOr;
      for (const auto& c : e.children) {
        MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*c));
        if (!v.get().is_bool()) return TypeError(e, OpName(e.kind), "bool operands", v.get());
        if (v.get().as_bool() == decisive) return Ref::Own(Value::Bool(decisive));
      }
      return Ref::Own(Value::Bool(!decisive));
    }
    case ExprKind::kIf: {
      MANDATE_ASSIGN_OR_RETURN(Ref cond, Eval(*e.children[0]));
      if (!cond.get().is_bool()) return TypeError(e, "'if'", "a bool condition", cond.get());
      return Eval(*e.children[cond.get().as_bool() ? 1 : 2]);
    }
    case ExprKind::kGetAttr:
    case ExprKind::kHasAttr:
      return EvalAttr(e);
    case ExprKind::kLike: {
      MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[0]));
      if (!v.get().is_string()) return TypeError(e, "'like'", "a string", v.get());
      return Ref::Own(Value::Bool(e.pattern.Matches(v.get().as_string())));
    }
    case ExprKind::kIs: {
      MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[0]));
      if (!v.get().is_entity()) return TypeError(e, "'is'", "an entity", v.get());
      if (v.get().as_entity().type != e.name) return Ref::Own(Value::Bool(false));
      if (e.children.size() == 1) return Ref::Own(Value::Bool(true));
      MANDATE_ASSIGN_OR_RETURN(Ref rhs, Eval(*e.children[1]));
      MANDATE_ASSIGN_OR_RETURN(bool in, InValue(e, v.get().as_entity(), rhs.get()));
      return Ref::Own(Value::Bool(in));
    }
    case ExprKind::kIsEmpty: {
      MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[0]));
      if (!v.get().is_set()) return TypeError(e, "'isEmpty'", "a set", v.get());
      return Ref::Own(Value::Bool(v.get().as_set().empty()));
    }
    case ExprKind::kExtensionCall: {
      // Every argument is evaluated before the call checks their number and types, as in the
      // reference. No function takes more than kExtensionArityMax, so only that many are kept
      // (a call with more is an error once they are all evaluated).
      std::array<Ref, kExtensionArityMax> args;
      std::array<const Value*, kExtensionArityMax> values{};
      for (size_t i = 0; i < e.children.size(); ++i) {
        MANDATE_ASSIGN_OR_RETURN(Ref v, Eval(*e.children[i]));
        if (i < args.size()) args[i] = std::move(v);
      }
      if (e.children.size() > args.size()) {
        return ErrorAt(e, WrongArgumentCount(e.function, e.children.size()).message);
      }
      for (size_t i = 0; i < e.children.size(); ++i) values[i] = &args[i].get();
      Result<Value> r =
          CallExtensionFunction(e.function, std::span(values.data(), e.children.size()));
      if (!r.ok()) return ErrorAt(e, r.error().message);
      return Ref::Own(std::move(*r));
    }
    default:
      return EvalBinary(e);
  }
}

Result<Evaluator::Ref> Evaluator::EvalBinary(const Expr& e) {
  MANDATE_ASSIGN_OR_RETURN(Ref lhs, Eval(*e.children[0]));
  MANDATE_ASSIGN_OR_RETURN(Ref rhs, Eval(*e.children[1]));
  const Value& a = lhs.get();
  const Value& b = rhs.get();
  switch (e.kind) {
    case ExprKind::kEq:
      return Ref::Own(Value::Bool(a == b));
    case ExprKind::kNe:
      return Ref::Own(Value::Bool(a != b));
    case ExprKind::kLt:
    case ExprKind::kLe:
    case ExprKind::kGt:
    case ExprKind::kGe: {
      // Longs, or two datetimes, or two durations (the extension types the reference lets
      // these operators compare); anything else is a type error.
      auto ordered = [](const Value& v) {
        return v.is_long() || v.is_extension(ExtensionType::kDatetime) ||
               v.is_extension(ExtensionType::kDuration);
      };
      if (!ordered(a)) {
        return TypeError(e, OpName(e.kind), "long, datetime or duration operands", a);
      }
      if (a.kind() != b.kind() ||
          (a.is_extension() && !b.is_extension(a.as_extension().type))) {
        return TypeError(e, OpName(e.kind), "operands of type " + std::string(TypeName(a)), b);
      }
      int64_t x = a.is_long() ? a.as_long() : a.as_extension().number;
      int64_t y = b.is_long() ? b.as_long() : b.as_extension().number;
      bool r = e.kind == ExprKind::kLt   ? x < y
               : e.kind == ExprKind::kLe ? x <= y
               : e.kind == ExprKind::kGt ? x > y
                                         : x >= y;
      return Ref::Own(Value::Bool(r));
    }
    case ExprKind::kAdd:
    case ExprKind::kSub:
    case ExprKind::kMul: {
      if (!a.is_long()) return TypeError(e, OpName(e.kind), "long operands", a);
      if (!b.is_long()) return TypeError(e, OpName(e.kind), "long operands", b);
      int64_t r;
      bool overflow =
          e.kind == ExprKind::kAdd   ? __builtin_add_overflow(a.as_long(), b.as_long(), &r)
          : e.kind == ExprKind::kSub ? __builtin_sub_overflow(a.as_long(), b.as_long(), &r)
                                     : __builtin_mul_overflow(a.as_long(), b.as_long(), &r);
      if (overflow) return ErrorAt(e, "integer overflow in " + std::string(OpName(e.kind)));
      return Ref::Own(Value::Long(r));
    }
    case ExprKind::kIn: {
      if (!a.is_entity()) return TypeError(e, "'in'", "an entity on its left", a);
      MANDATE_ASSIGN_OR_RETURN(bool in, InValue(e, a.as_entity(), b));
      return Ref::Own(Value::Bool(in));
    }
    case ExprKind::kContains: {
      if (!a.is_set()) return TypeError(e, "'contains'", "a set", a);
      return Ref::Own(Value::Bool(a.SetContains(b)));
    }
    case ExprKind::kContainsAll:
    case ExprKind::kContainsAny: {
      if (!a.is_set()) return TypeError(e, OpName(e.kind), "a set", a);
      if (!b.is_set()) return TypeError(e, OpName(e.kind), "a set argument", b);
      MANDATE_RETURN_IF_ERROR(Charge(b.as_set().size(), e));
      const bool all = e.kind == ExprKind::kContainsAll;
      for (const Value& v : b.as_set()) {
        if (a.SetContains(v) != all) return Ref::Own(Value::Bool(!all));
      }
      return Ref::Own(Value::Bool(all));
    }
    case ExprKind::kGetTag:
    case ExprKind::kHasTag: {
      if (!a.is_entity()) return TypeError(e, OpName(e.kind), "an entity", a);
      if (!b.is_string()) return TypeError(e, OpName(e.kind), "a string tag", b);
      const Value* tags = entities_.Tags(a.as_entity());
      if (tags == nullptr) {
        // As for attributes: hasTag of an entity not in the store is false, getTag an error.
        if (e.kind == ExprKind::kHasTag) return Ref::Own(Value::Bool(false));
        return ErrorAt(e, "entity " + a.as_entity().ToString() + " does not exist");
      }
      const Value* tag = tags->FindAttr(b.as_string());
      if (e.kind == ExprKind::kHasTag) return Ref::Own(Value::Bool(tag != nullptr));
      if (tag == nullptr) {
        return ErrorAt(e, "entity " + a.as_entity().ToString() + " does not have the tag '" +
                              b.as_string() + "'");
      }
      // Tags live in the store, which outlives the evaluation.
      return Ref::Borrow(*tag);
    }
    default:
      return ErrorAt(e, "unsupported expression");
  }
}

Result<Evaluator::Ref> Evaluator::EvalAttr(const Expr& e) {
  MANDATE_ASSIGN_OR_RETURN(Ref target, Eval(*e.children[0]));
  const Value& v = target.get();
  const bool has = e.kind == ExprKind::kHasAttr;
  const Value* record = nullptr;
  if (v.is_record()) {
    record = &v;
  } else if (v.is_entity()) {
    record = entities_.Attrs(v.as_entity());
    if (record == nullptr) {
      // Cedar: `has` on an unknown entity is false; reading its attribute is an error.
      if (has) return Ref::Own(Value::Bool(false));
      return ErrorAt(e, "entity " + v.as_entity().ToString() + " does not exist");
    }
  } else {
    return TypeError(e, OpName(e.kind), "an entity or a record", v);
  }
  const Value* attr = record->FindAttr(e.name);
  if (has) return Ref::Own(Value::Bool(attr != nullptr));
  if (attr == nullptr) {
    std::string what = v.is_entity() ? "entity " + v.as_entity().ToString() : "record";
    return ErrorAt(e, what + " does not have the attribute '" + e.name + "'");
  }
  // Entity attributes live in the store; a borrowed record lives at least as long as we do.
  // Only a record we own (built by this evaluation) must be copied out of.
  if (v.is_entity() || target.borrowed()) return Ref::Borrow(*attr);
  return Ref::Own(*attr);
}

}  // namespace mandate::policy
