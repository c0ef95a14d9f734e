#include "policy/scope_index.h"

#include <algorithm>

#include "mandate/core/check.h"
#include "mandate/core/limits.h"

namespace mandate::policy {
namespace {

using Op = ScopeConstraint::Op;

bool NamesEntities(const ScopeConstraint& c) {
  return c.op == Op::kEq || c.op == Op::kIn || c.op == Op::kIsIn;
}

}  // namespace

ScopeIndex::ScopeIndex(const std::vector<Policy>& policies) {
  MANDATE_CHECK(policies.size() <= core::kPoliciesMax);
  for (uint32_t i = 0; i < policies.size(); ++i) {
    const Policy& p = policies[i];
    if (NamesEntities(p.principal)) {
      // principal == E and principal in E name one entity.
      principal_.by_entity[p.principal.entities.front()].push_back(i);
    } else if (NamesEntities(p.resource)) {
      resource_.by_entity[p.resource.entities.front()].push_back(i);
    } else if (NamesEntities(p.action)) {
      // `action in []` is filed nowhere: no request satisfies it.
      for (const EntityUid& e : p.action.entities) action_.by_entity[e].push_back(i);
      if (p.action.entities.size() > 1) multi_keyed_ = true;
    } else if (p.principal.op == Op::kIs) {
      principal_.by_type[p.principal.entity_type].push_back(i);
    } else if (p.resource.op == Op::kIs) {
      resource_.by_type[p.resource.entity_type].push_back(i);
    } else if (p.action.op == Op::kIs) {
      action_.by_type[p.action.entity_type].push_back(i);
    } else {
      unconstrained_.push_back(i);
    }
  }
}

void ScopeIndex::Slot::Collect(RequestEntity e, std::vector<uint32_t>* out) const {
  auto append = [out](const std::vector<uint32_t>& list) {
    out->insert(out->end(), list.begin(), list.end());
  };
  if (!by_entity.empty()) {
    if (auto it = by_entity.find(*e.uid); it != by_entity.end()) append(it->second);
    for (const EntityUid* a : *e.ancestors) {
      if (auto it = by_entity.find(*a); it != by_entity.end()) append(it->second);
    }
  }
  if (!by_type.empty()) {
    if (auto it = by_type.find(e.uid->type); it != by_type.end()) append(it->second);
  }
}

void ScopeIndex::Candidates(RequestEntity principal, RequestEntity action,
                            RequestEntity resource, std::vector<uint32_t>* out) const {
  out->assign(unconstrained_.begin(), unconstrained_.end());
  principal_.Collect(principal, out);
  action_.Collect(action, out);
  resource_.Collect(resource, out);
  // Set order: the response lists policies (and errors) in the order of the set.
  std::sort(out->begin(), out->end());
  if (multi_keyed_) out->erase(std::unique(out->begin(), out->end()), out->end());
}

}  // namespace mandate::policy
