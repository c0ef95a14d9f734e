// Fuzz target: policy::PolicySet::Parse (the Cedar lexer and parser) on arbitrary text, and,
// when it parses, policy::IsAuthorized (the evaluator, bounded by kPolicyEvalStepsMax steps per
// policy) for three fixed requests over a small fixed entity store shaped like the gateway's
// (DESIGN.md section 5: humans and agents in groups, actions under their upstream and class,
// typed resources under their upstream, a context with args/session/request/time), plus a
// parent cycle and principals missing from the store.
//
// Invariants (a violation traps, so libFuzzer saves the input); hangs are caught by -timeout:
//   - Parse refuses only with kBadRequest, kPayloadTooLarge or kConflict;
//   - a parsed set has unique ids, each found by Find; parsing is deterministic;
//   - merging a non-empty set with itself is refused (kConflict) and leaves it unchanged;
//   - a response is consistent: allowed => some permit and no forbid listed; denied => no
//     permit listed; listed ids are policies of the set with that effect; every error names
//     a policy of the set ("<id>: ..."); the same request answers the same way twice.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../policy_checks.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"

namespace {

using mandate::core::ErrorCode;
using mandate::fuzz::Check;
using mandate::fuzz::CheckResponse;
using mandate::fuzz::SameResponse;
using mandate::policy::Entities;
using mandate::policy::EntityUid;
using mandate::policy::PolicySet;
using mandate::policy::Request;
using mandate::policy::Response;
using mandate::policy::Value;

Value FromJson(std::string_view text) {
  auto j = mandate::core::Json::Parse(text);
  Check(j.ok());
  auto v = mandate::policy::ValueFromJson(*j);
  Check(v.ok());
  return *v;
}

struct Env {
  Entities entities;
  std::vector<Request> requests;

  Env() {
    auto add = [&](EntityUid uid, std::string_view attrs, std::vector<EntityUid> parents) {
      Check(entities.Add(std::move(uid), FromJson(attrs), std::move(parents)).ok());
    };
    add({"Human", "alice"},
        R"({"department": "finance", "level": 5, "tags": ["oncall", "eu"],
            "manager": {"__entity": {"type": "Human", "id": "carol"}}})",
        {{"Group", "finance"}, {"Group", "loop-a"}});
    add({"Human", "carol"}, R"({"department": "support", "level": 7})", {{"Group", "support"}});
    add({"Agent", "triage-bot"},
        R"({"owner": {"__entity": {"type": "Human", "id": "alice"}}, "tier": "frontier"})",
        {{"Group", "support-agents"}});
    add({"Group", "support-agents"}, "{}", {{"Group", "all-agents"}});
    add({"Group", "loop-a"}, "{}", {{"Group", "loop-b"}});  // a cycle: a walk must end
    add({"Group", "loop-b"}, "{}", {{"Group", "loop-a"}});
    add({"Action", "jira:transition_issue"}, "{}", {{"Action", "jira"}, {"Action", "write"}});
    add({"Action", "stripe:create_refund"}, "{}",
        {{"Action", "stripe"}, {"Action", "destructive"}});
    add({"Upstream", "jira"}, R"({"env": "prod"})", {});
    add({"Repo", "acme/api"}, R"({"private": true, "stars": 12})", {{"Upstream", "github"}});

    const Value context = FromJson(R"({
      "args": {"amount_cents": 42000, "env": "prod", "issue": "SUP-123", "labels": ["a", "b"],
               "nested": {"deep": {"n": -9223372036854775807}}, "flag": true},
      "session": {"id": "ses_root", "task": "SUP-123", "depth": 1,
                  "model": {"provider": "anthropic", "name": "claude-opus-4-5",
                            "tier": "frontier"},
                  "human": {"__entity": {"type": "Human", "id": "alice"}}},
      "request": {"protocol": "mcp", "method": "tools/call", "path": "/mcp/jira"},
      "time": {"unix": 1767000000, "hour_utc": 9, "weekday": 1}})");
    requests.push_back(Request{{"Human", "alice"},
                               {"Action", "jira:transition_issue"},
                               {"Upstream", "jira"},
                               context});
    requests.push_back(Request{{"Agent", "triage-bot"},
                               {"Action", "stripe:create_refund"},
                               {"Repo", "acme/api"},
                               context});
    // Nothing of this one is in the store; the context is empty.
    requests.push_back(
        Request{{"Agent", "ghost"}, {"Action", "unknown"}, {"Group", "loop-a"}, Value()});
  }
};

const Env& GetEnv() {
  static const Env* env = new Env();  // never destroyed: the fuzzer may exit at any point
  return *env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Env& env = GetEnv();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = PolicySet::Parse(text, "fuzz.cedar");
  if (!parsed.ok()) {
    const ErrorCode code = parsed.error().code;
    Check(code == ErrorCode::kBadRequest || code == ErrorCode::kPayloadTooLarge ||
          code == ErrorCode::kConflict);
    return 0;
  }
  const PolicySet& set = *parsed;

  std::set<std::string> ids;
  for (const auto& p : set.policies()) {
    Check(ids.insert(p.id).second);
    Check(set.Find(p.id) == &p);
  }
  auto again = PolicySet::Parse(text, "fuzz.cedar");
  Check(again.ok() && again->size() == set.size());
  if (!set.empty()) {
    PolicySet merged = *again;
    auto merge = merged.Merge(*again);
    Check(!merge.ok() && merge.error().code == ErrorCode::kConflict);
    Check(merged.size() == set.size());
  }

  for (const Request& request : env.requests) {
    Response r = mandate::policy::IsAuthorized(set, request, env.entities);
    CheckResponse(set, r);
    Response r2 = mandate::policy::IsAuthorized(set, request, env.entities);
    Check(SameResponse(r, r2));
  }
  return 0;
}
