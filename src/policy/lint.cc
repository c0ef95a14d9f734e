#include "mandate/policy/lint.h"

#include <functional>

#include "policy/ast.h"

namespace mandate::policy {
namespace {

bool IsAny(const ScopeConstraint& c) { return c.op == ScopeConstraint::Op::kAny; }

bool SameConstraint(const ScopeConstraint& a, const ScopeConstraint& b) {
  return a.op == b.op && a.entity_type == b.entity_type && a.entities == b.entities;
}

// Whether a forbid's constraint matches at least everything the permit's does.
bool Covers(const ScopeConstraint& forbid, const ScopeConstraint& permit) {
  return IsAny(forbid) || SameConstraint(forbid, permit);
}

void VisitLiterals(const Expr& e, const std::function<void(const EntityUid&, uint32_t, uint32_t)>& fn) {
  if (e.kind == ExprKind::kLiteral) {
    if (e.value.is_entity()) fn(e.value.as_entity(), e.line, e.column);
    // A set literal of constants is folded into one value: visit its elements too.
    if (e.value.is_set()) {
      for (const Value& v : e.value.as_set()) {
        if (v.is_entity()) fn(v.as_entity(), e.line, e.column);
      }
    }
  }
  for (const auto& c : e.children) VisitLiterals(*c, fn);
}

}  // namespace

std::string LintWarning::ToString() const {
  return location.ToString() + ": warning: [" + rule + "] " + policy_id + ": " + message;
}

std::vector<LintWarning> Lint(const PolicySet& set, const LintContext& ctx) {
  std::vector<LintWarning> out;
  const auto& policies = set.policies();
  auto warn = [&](const Policy& p, std::string rule, std::string message, const SourceLocation* at = nullptr) {
    out.push_back(LintWarning{std::move(rule), p.id, at ? *at : p.location, std::move(message)});
  };

  for (const Policy& p : policies) {
    if (!p.is_forbid) {
      if (IsAny(p.principal) && IsAny(p.action) && IsAny(p.resource) && p.conditions.empty()) {
        warn(p, "allow-all", "permits every action on every resource to every principal");
      }
      for (const Policy& f : policies) {
        if (!f.is_forbid || !f.conditions.empty()) continue;
        if (Covers(f.principal, p.principal) && Covers(f.action, p.action) && Covers(f.resource, p.resource)) {
          warn(p, "unreachable-permit",
               "can never allow: forbid " + f.id + " (" + f.location.ToString() +
                   ") applies without condition to everything this permit matches");
          break;
        }
      }
      if (p.FindAnnotation("approval") == nullptr) {
        bool destructive = IsAny(p.action);
        std::string why = "it matches any action";
        for (const EntityUid& a : p.action.entities) {
          if (destructive) break;
          if (a.type != "Action") continue;
          if (a.id == "destructive") {
            destructive = true;
            why = "it matches Action::\"destructive\"";
          } else if (auto it = ctx.tool_classes.find(a.id);
                     it != ctx.tool_classes.end() && it->second == core::ActionClass::kDestructive) {
            destructive = true;
            why = a.ToString() + " is configured destructive";
          } else if (ctx.upstreams.count(a.id) && p.action.op == ScopeConstraint::Op::kIn) {
            for (const auto& [tool, cls] : ctx.tool_classes) {
              if (cls == core::ActionClass::kDestructive && tool.rfind(a.id + ":", 0) == 0) {
                destructive = true;
                why = "it matches every tool of upstream " + a.id + ", and " + tool + " is configured destructive";
                break;
              }
            }
          }
        }
        if (destructive) {
          warn(p, "destructive-without-approval",
               "may permit destructive actions without @approval (" + why +
                   "); add @approval(\"<group>\"), or narrow the action");
        }
      }
    }

    // Names: every entity literal of the scope and of the conditions.
    std::set<std::string> reported;
    auto check_name = [&](const EntityUid& uid, const SourceLocation& at) {
      std::string problem;
      if (uid.type == "Human" && ctx.humans && !ctx.humans->count(uid.id)) {
        problem = "no human named \"" + uid.id + "\" is registered";
      } else if (uid.type == "Agent" && ctx.agents && !ctx.agents->count(uid.id)) {
        problem = "no agent named \"" + uid.id + "\" is registered";
      } else if (uid.type == "Group" && ctx.groups && !ctx.groups->count(uid.id)) {
        problem = "no registered human or agent is in group \"" + uid.id + "\"";
      }
      if (!problem.empty() && reported.insert(uid.ToString()).second) warn(p, "unknown-name", problem, &at);
    };
    for (const ScopeConstraint* c : {&p.principal, &p.action, &p.resource}) {
      for (size_t i = 0; i < c->entities.size(); ++i) {
        check_name(c->entities[i], i < c->entity_locations.size() ? c->entity_locations[i] : p.location);
      }
    }
    for (const Condition& c : p.conditions) {
      if (!c.expr) continue;
      VisitLiterals(*c.expr, [&](const EntityUid& uid, uint32_t line, uint32_t column) {
        check_name(uid, SourceLocation{c.location.file, line, column});
      });
    }
  }
  return out;
}

}  // namespace mandate::policy
