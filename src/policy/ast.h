// The Cedar expression tree built by the parser and walked by the evaluator. Internal to the
// policy module: other modules see it only as the opaque mandate::policy::Expr of
// policy_set.h.
//
// Invariant: every node's `depth` is 1 + the largest depth of its children, and no tree is
// deeper than core::kPolicyAstDepthMax (the parser refuses deeper input), so every recursive
// walk of a tree is bounded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/policy/value.h"
#include "policy/extensions.h"

namespace mandate::policy {

enum class Var : uint8_t { kPrincipal, kAction, kResource, kContext };

std::string_view VarName(Var v);

enum class ExprKind : uint8_t {
  kLiteral,  // value
  kVar,      // var
  kSet,      // [children...]
  kRecord,   // {keys[i]: children[i]...}
  kNot,      // !children[0]
  kNeg,      // -children[0]
  kAnd,      // children[0] && children[1] && ... (n-ary, short-circuit)
  kOr,       // children[0] || children[1] || ... (n-ary, short-circuit)
  kIf,       // if children[0] then children[1] else children[2]
  kEq,       // binary: children[0] op children[1]
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kAdd,
  kSub,
  kMul,
  kContains,  // children[0].contains(children[1])
  kContainsAll,
  kContainsAny,
  kIsEmpty,  // children[0].isEmpty()
  kGetAttr,  // children[0].name
  kHasAttr,  // children[0] has name
  kLike,     // children[0] like pattern
  kIs,       // children[0] is name [in children[1]]
  kGetTag,   // children[0].getTag(children[1])
  kHasTag,   // children[0].hasTag(children[1])
  // A call of the extension function `function` (extensions.h; `name` is its Cedar name) with
  // the arguments children[0..n), a method's receiver first: ip("10.0.0.1") has one child,
  // ip(...).isInRange(r) two. The number of children may differ from the function's arity:
  // as in the reference, that is an evaluation error, not a parse error. A constructor applied
  // to a valid string literal is folded into a kLiteral by the parser.
  kExtensionCall,
};

// A `like` pattern: literal segments separated by wildcards, so segments.size() is the number
// of wildcards + 1. "a*b\*c" is {"a", "b*c"}.
struct Pattern {
  std::vector<std::string> segments;

  bool Matches(std::string_view s) const;
  std::string ToString() const;  // Cedar source form, with quotes
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Var var = Var::kPrincipal;
  uint32_t line = 0;
  uint32_t column = 0;
  uint32_t depth = 1;
  Value value;
  std::string name;
  Pattern pattern;
  std::vector<std::string> keys;
  ExtensionFunction function = ExtensionFunction::kIp;  // kExtensionCall only
  std::vector<std::unique_ptr<Expr>> children;
};

}  // namespace mandate::policy
