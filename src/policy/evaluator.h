// The Cedar evaluator: decides whether one policy is satisfied by one request, with the error
// semantics of the Cedar reference (a type error, a missing attribute, an unknown entity, an
// overflow... is an error, and the caller skips the policy).
//
// An Evaluator serves one request: it caches the ancestors of the request's principal, action
// and resource across policies. It is not thread-safe itself; use one per request. It only
// reads the Request, Entities and policies, which must outlive it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/policy/authorize.h"
#include "policy/ast.h"

namespace mandate::policy {

class Evaluator {
 public:
  Evaluator(const Request& request, const Entities& entities);
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Whether `policy`'s scope matches and all its conditions hold. Error (kBadRequest): why
  // the policy could not be evaluated, ending with " at <file>:<line>:<column>" when an
  // expression is at fault. At most core::kPolicyEvalStepsMax steps are spent per call.
  core::Result<bool> Satisfied(const Policy& policy);

  // Evaluates one expression (`file` names its source in errors). Same errors and step bound.
  core::Result<Value> Evaluate(const Expr& expr, const std::string& file);

  // The transitive ancestors of the request's principal, action or resource (`v`; not
  // kContext), computed once per Evaluator and shared with scope matching; nullptr when the walk
  // failed (more than core::kEntityAncestorsMax ancestors). Valid as long as the Evaluator.
  const std::vector<const EntityUid*>* RequestAncestors(Var v);

 private:
  // The result of evaluating a node: borrowed from something that outlives the evaluation
  // (the AST, the request, the entity store) or owned. Borrowing keeps attribute reads and
  // literals free of copies.
  class Ref {
   public:
    static Ref Borrow(const Value& v) {
      Ref r;
      r.ptr_ = &v;
      return r;
    }
    static Ref Own(Value v) {
      Ref r;
      r.owned_ = std::move(v);
      return r;
    }
    const Value& get() const { return ptr_ != nullptr ? *ptr_ : owned_; }
    bool borrowed() const { return ptr_ != nullptr; }
    Value Take() && { return ptr_ != nullptr ? *ptr_ : std::move(owned_); }

   private:
    const Value* ptr_ = nullptr;
    Value owned_;
  };

  // The transitive ancestors of one of the request's entities, computed on first use.
  struct Ancestors {
    bool computed = false;
    core::Status status;
    std::vector<const EntityUid*> list;
  };

  core::Result<Ref> Eval(const Expr& e);
  core::Result<Ref> EvalBinary(const Expr& e);
  core::Result<Ref> EvalAttr(const Expr& e);

  // Cedar `child in parent` for two entities: equal, or parent is an ancestor of child.
  core::Result<bool> InEntity(const EntityUid& child, const EntityUid& parent);
  // `child in rhs` where rhs is an entity or a set of entities (else a type error at `e`).
  core::Result<bool> InValue(const Expr& e, const EntityUid& child, const Value& rhs);
  core::Result<bool> MatchScope(const ScopeConstraint& c, const EntityUid& uid);
  Ancestors* CachedAncestors(const EntityUid& uid);

  core::Status Charge(size_t steps, const Expr& e);
  core::Error ErrorAt(const Expr& e, const std::string& message) const;
  core::Error TypeError(const Expr& e, std::string_view op, std::string_view expected,
                        const Value& got) const;

  const Request& request_;
  const Entities& entities_;
  Value principal_;
  Value action_;
  Value resource_;
  Ancestors principal_ancestors_;
  Ancestors action_ancestors_;
  Ancestors resource_ancestors_;
  const std::string* file_ = nullptr;
  size_t steps_ = 0;
};

}  // namespace mandate::policy
