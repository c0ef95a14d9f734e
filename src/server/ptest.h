// Policy tests as data: golden cases in `.ptest` files (docs/policy.md, "Policy tests"), run by
// `mandate policy test FILE...` and by `make test` over tests/policy/*.ptest.
//
// A .ptest file is YAML: the policies (inline text, or a directory of *.cedar files relative
// to the file), the humans and agents with their groups, and cases. Each case is decided by
// the gateway's own Pipeline::Decide (the same entities, context and intersection rule as a
// real call, with the case's clock), so a passing case says what the gateway will do.
//
//   policies: |                        # or: policies_dir: ../../examples/policies
//     @id("reads") permit (principal, action in Action::"read", resource);
//   humans: { alice: [eng] }           # name -> groups
//   agents: { bot: [] }
//   cases:
//     - name: the bot may read for alice
//       for: alice
//       agent: bot                     # or chain: [orchestrator, worker] (outermost first)
//       action: github:get_issue       # <upstream>:<tool>
//       class: read                    # read | write | destructive (default destructive)
//       resource: Repo::"acme/docs"    # default Upstream::"<upstream>"
//       args: { repo: docs }           # default {}
//       scope: ["github:*"]            # default ["*"]
//       task: t-1                      # default ""
//       time: 2026-11-23T10:00:00Z     # or Unix seconds; default 2026-01-05T12:00:00Z
//       expect: allow                  # allow | deny | approval_required
//       code: policy_denied            # optional: the refusal's code
//       determining: [reads]           # optional: exactly these policy ids determined it
//
// Thread safety: RunPolicyTests is a pure function of its input.
#pragma once

#include <string>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::server {

struct PolicyTestCaseResult {
  std::string name;
  bool passed = false;
  std::string failure;     // what differed, readable; empty when passed
  core::Json decision;     // the decision record (Decision::ToJson)
};

struct PolicyTestReport {
  std::string file;
  std::vector<PolicyTestCaseResult> cases;
  size_t passed() const;
  size_t failed() const { return cases.size() - passed(); }
  core::Json ToJson() const;
};

// Runs the cases of one .ptest file. A failing case is a successful run with the failure in
// the report. Errors (the file cannot be run at all), each naming file:line:column where it
// applies: kNotFound (file or policies_dir missing), kBadRequest (invalid YAML, unknown key,
// wrong type, a case without name/for/agent/action/expect, a bad action id, class, resource,
// time or expectation; a Cedar parse error in the policies), kPayloadTooLarge (file over
// kConfigBytesMax, more than kPolicyTestCasesMax cases).
core::Result<PolicyTestReport> RunPolicyTestFile(const std::string& path);

// The same, from text; `path` names it in errors and anchors policies_dir.
core::Result<PolicyTestReport> RunPolicyTests(const std::string& text, const std::string& path);

}  // namespace mandate::server
