// PolicySet: Cedar policies parsed from *.cedar files (DESIGN.md section 5; the supported
// Cedar language is listed in docs/policy.md).
//
// Parsing happens once, at load; evaluation (authorize.h) walks the stored AST and never
// re-parses. A PolicySet is a value: once built (Parse/LoadDir/Merge) it is only read, and any
// number of threads may evaluate the same PolicySet concurrently. The condition ASTs are
// shared, immutable, between copies.
//
// Policy ids: the @id("...") annotation when present, else "<file>:<index>", where <file> is
// the file's name without directory and <index> the 0-based position of the policy in its
// file, e.g. "mandate.cedar:0". Ids are unique within a set.
//
// Parse errors read "<file>:<line>:<column>: <what was expected>, found '<token>'", e.g.
//   policies/a.cedar:3:14: expected ')' after scope, found 'when'
// Lines and columns are 1-based; columns count Unicode characters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

// A condition's expression tree. Its definition is internal to the policy module
// (src/policy/ast.h); other modules only hold it through Condition.
struct Expr;
// The policies indexed by scope (internal: src/policy/scope_index.h), built with the set.
class ScopeIndex;

struct SourceLocation {
  std::string file;  // as given to Parse, or "<dir>/<name>" for LoadDir
  uint32_t line = 0;
  uint32_t column = 0;
  std::string ToString() const;  // "file:line:column"
};

// One of the three scope constraints of a policy head.
struct ScopeConstraint {
  enum class Op : uint8_t {
    kAny,   // principal
    kEq,    // principal == E                  entities = {E}
    kIn,    // principal in E / action in [E...] entities = {E...} (may be empty for action)
    kIs,    // principal is T                  entity_type = T
    kIsIn,  // principal is T in E             entity_type = T, entities = {E}
  };
  Op op = Op::kAny;
  std::string entity_type;
  std::vector<EntityUid> entities;
  SourceLocation location;                      // of the keyword principal/action/resource
  std::vector<SourceLocation> entity_locations;  // where each of `entities` is written
};

struct Condition {
  bool is_when = true;  // false for `unless`
  std::shared_ptr<const Expr> expr;
  SourceLocation location;  // of the `when` / `unless` keyword
};

struct Policy {
  std::string id;
  bool is_forbid = false;
  // Every annotation, e.g. {"id": "triage-read", "approval": "finance-approvers"}. An
  // annotation written without a value (`@flag`) has the empty string.
  std::map<std::string, std::string, std::less<>> annotations;
  ScopeConstraint principal;
  ScopeConstraint action;
  ScopeConstraint resource;
  std::vector<Condition> conditions;  // in source order
  SourceLocation location;            // of the policy's first token
  size_t index_in_file = 0;

  // The annotation's value, or nullptr when the policy has no such annotation.
  const std::string* FindAnnotation(std::string_view key) const;
};

class PolicySet {
 public:
  PolicySet() = default;

  // Parses one file's text; `filename` names it in errors and in generated ids (its directory
  // part is dropped for ids). Errors: kPayloadTooLarge when the text exceeds
  // core::kPolicyFileBytesMax or holds more than core::kPoliciesMax policies; kBadRequest for
  // any syntax error (message as described above), for invalid UTF-8, for expressions nested
  // deeper than core::kPolicyAstDepthMax, for unsupported Cedar features (templates; see
  // docs/policy.md), for an unknown function or method or one called in the wrong style
  // (`lessThan(a, b)`, `x.ip()`); kConflict when two policies of the file share an id. An
  // extension constructor on an invalid literal (ip("10.0.0.256")) parses, as in Cedar: its
  // policy errors when evaluated. Constructors on valid literals are evaluated here, once.
  static core::Result<PolicySet> Parse(std::string_view text, std::string_view filename);

  // Loads every regular file named *.cedar directly in `dir`, in byte order of file name, and
  // merges them. Errors: kNotFound when `dir` cannot be listed or holds no *.cedar file;
  // kPayloadTooLarge when a file exceeds core::kPolicyFileBytesMax or there are more than
  // core::kPolicyFilesMax files; kInternal when a file cannot be read; any error of Parse or
  // Merge. Nothing is returned on error: a set is loaded whole or not at all.
  static core::Result<PolicySet> LoadDir(const std::string& dir);

  // Adds the policies of `other` after this set's. Errors: kConflict when an id occurs in both
  // sets; kPayloadTooLarge when the result would exceed core::kPoliciesMax policies. On error
  // this set is unchanged.
  core::Status Merge(PolicySet other);

  // For a set from LoadDir: hex SHA-256 over each file's name, length and bytes, in load order
  // (the same files give the same digest); empty otherwise.
  const std::string& source_sha256() const { return source_sha256_; }

  size_t size() const { return policies_.size(); }
  bool empty() const { return policies_.empty(); }
  const std::vector<Policy>& policies() const { return policies_; }
  // The policy with this id, or nullptr.
  const Policy* Find(std::string_view id) const;
  // The scope index of the policies (internal to the policy module), built whenever the set
  // changes; nullptr for an empty set.
  const ScopeIndex* scope_index() const { return scope_index_.get(); }

 private:
  // Parse, with `display_name` naming the file in errors and `id_file` in generated ids.
  static core::Result<PolicySet> ParseNamed(std::string_view text, std::string_view display_name,
                                            std::string_view id_file);

  // Merge without rebuilding the scope index (LoadDir builds it once, after its last file).
  core::Status Append(PolicySet other);
  void BuildScopeIndex();

  std::vector<Policy> policies_;
  std::string source_sha256_;
  std::map<std::string, size_t, std::less<>> index_;  // id -> position in policies_
  // Shared, immutable, between copies of the set. Invariant: indexes policies_ as they are.
  std::shared_ptr<const ScopeIndex> scope_index_;
};

}  // namespace mandate::policy
