// Fuzz target: the Cedar evaluator on untrusted requests. The gateway turns a call's JSON
// arguments into context.args (policy::ValueFromJson) and evaluates every policy on them, so the
// request side is what an agent controls. Input:
//   [<Cedar policy text> "\n%%\n"] <request JSON>
// where the request JSON is
//   {"principal": {"type": T, "id": I}, "action": {...}, "resource": {...}, "context": <any>,
//    "entities": [{"uid": {...}, "attrs": <any>, "parents": [{...}...]}...]}
// (every member optional; entities the store refuses are left out). Without the "%%" line the
// policies are a fixed set exercising every kind of expression and scope (kFixedPolicies).
//
// Invariants (a violation traps, so libFuzzer saves the input); hangs are caught by -timeout:
//   - ValueFromJson accepts or refuses with kBadRequest, never anything else; an accepted value
//     round-trips through ValueToJson to an equal value;
//   - a context that is not a record denies with one error and nothing evaluated; otherwise
//     the response is consistent (fuzz/policy_checks.h) and deterministic;
//   - the scope index is exact (src/policy/scope_index.h): the answer of IsAuthorized equals the
//     answer of AuthorizeEveryPolicy (every policy evaluated in order), decision, determining
//     policies and errors alike.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../policy_checks.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"
#include "policy/scope_index.h"

namespace {

using mandate::core::ErrorCode;
using mandate::core::Json;
using mandate::fuzz::Check;
using mandate::fuzz::CheckResponse;
using mandate::fuzz::SameResponse;
using mandate::policy::Entities;
using mandate::policy::EntityUid;
using mandate::policy::PolicySet;
using mandate::policy::Request;
using mandate::policy::Response;
using mandate::policy::Value;

constexpr std::string_view kSeparator = "\n%%\n";

constexpr std::string_view kFixedPolicies = R"(
@id("read") permit (principal, action in Action::"read", resource);
@id("agent") permit (principal == Agent::"bot", action in [Action::"jira", Action::"github"],
                     resource in Upstream::"jira")
  when { context.args.amount_cents <= 50000 && context.args.issue like "SUP-*" };
@id("group") permit (principal in Group::"eng", action, resource is Repo in Upstream::"github")
  when { resource.private == false || principal.level >= 5 };
@id("typed") permit (principal is Human, action == Action::"jira:get", resource)
  when { context.args.labels.containsAny(["a", "b"]) && !context.args.labels.isEmpty() };
@id("arith") permit (principal, action, resource)
  when { context.args.n * 2 + 1 > context.args.m - 3 && -context.args.n < 0 };
@id("cond") forbid (principal, action in Action::"destructive", resource)
  when { if context has args && context.args has env then context.args.env == "prod" else true };
@id("ents") forbid (principal, action, resource)
  unless { context.session.human in principal || principal.manager in Group::"all" };
@id("recs") permit (principal is Agent in Group::"all", action, resource)
  when { context.args == {"a": 1, "b": [true]} || context.args.nested.deep has n };
@id("sets") permit (principal, action, resource == Doc::"d")
  when { [principal, resource].contains(principal) && context.args.labels.containsAll([]) };
)";

EntityUid UidOr(const Json* j, EntityUid fallback) {
  if (j == nullptr || !j->is_object()) return fallback;
  const std::string* type = j->FindString("type");
  const std::string* id = j->FindString("id");
  if (type == nullptr || id == nullptr) return fallback;
  return {*type, *id};
}

// ValueFromJson's contract, checked on every value the input carries.
bool ToValue(const Json& j, Value* out) {
  auto v = mandate::policy::ValueFromJson(j);
  if (!v.ok()) {
    Check(v.error().code == ErrorCode::kBadRequest);
    return false;
  }
  auto back = mandate::policy::ValueFromJson(mandate::policy::ValueToJson(*v));
  Check(back.ok() && *back == *v);
  *out = std::move(*v);
  return true;
}

const PolicySet& FixedPolicies() {
  static const PolicySet* set = [] {
    auto parsed = PolicySet::Parse(kFixedPolicies, "fixed.cedar");
    Check(parsed.ok());
    return new PolicySet(std::move(*parsed));  // never destroyed: the fuzzer may exit anywhere
  }();
  return *set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const PolicySet* set = &FixedPolicies();
  PolicySet parsed;
  if (size_t sep = input.find(kSeparator); sep != std::string_view::npos) {
    auto p = PolicySet::Parse(input.substr(0, sep), "fuzz.cedar");
    if (!p.ok()) return 0;  // the parser has its own target (policy_parse)
    parsed = std::move(*p);
    set = &parsed;
    input.remove_prefix(sep + kSeparator.size());
  }
  auto json = Json::Parse(input);
  if (!json.ok() || !json->is_object()) return 0;  // the JSON parser has its own target

  Request request;
  request.principal = UidOr(json->Find("principal"), {"Agent", "bot"});
  request.action = UidOr(json->Find("action"), {"Action", "jira:get"});
  request.resource = UidOr(json->Find("resource"), {"Upstream", "jira"});
  if (const Json* context = json->Find("context")) {
    if (!ToValue(*context, &request.context)) return 0;
  }
  Entities entities;
  if (const Json* list = json->FindArray("entities")) {
    for (const Json& e : list->as_array()) {
      if (!e.is_object()) continue;
      Value attrs;
      if (const Json* a = e.Find("attrs"); a != nullptr && !ToValue(*a, &attrs)) continue;
      std::vector<EntityUid> parents;
      if (const Json* ps = e.FindArray("parents")) {
        for (const Json& p : ps->as_array()) parents.push_back(UidOr(&p, {"Group", "all"}));
      }
      // Refusals (a duplicate uid, attrs not a record, too many parents) leave the store as
      // it was: nothing to check but that they do not crash.
      (void)entities.Add(UidOr(e.Find("uid"), {"Group", "eng"}), std::move(attrs),
                         std::move(parents));
    }
  }

  Response r = mandate::policy::IsAuthorized(*set, request, entities);
  if (!request.context.is_record()) {
    // authorize.h: a context that is not a record denies with one error, no policy evaluated.
    Check(!r.allow && r.permits.empty() && r.forbids.empty() && r.errors.size() == 1);
    return 0;
  }
  CheckResponse(*set, r);
  Check(SameResponse(r, mandate::policy::IsAuthorized(*set, request, entities)));
  Check(SameResponse(r, mandate::policy::AuthorizeEveryPolicy(*set, request, entities)));
  return 0;
}
