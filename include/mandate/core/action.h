// Action and Outcome: the protocol-independent description of one governed call, and what
// became of it. Adapters translate their protocol to an Action and an Outcome back; everything
// between (the pipeline in src/gateway/) sees only these types (DESIGN.md section 3).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mandate/core/error_code.h"
#include "mandate/core/json.h"

namespace mandate::core {

// What a call does to the world. Unknown defaults to kDestructive (fail closed).
enum class ActionClass : uint8_t { kRead, kWrite, kDestructive };

std::string_view ActionClassName(ActionClass c);  // "read" | "write" | "destructive"
std::optional<ActionClass> ActionClassFromName(std::string_view name);

// A Cedar-style entity reference, e.g. {type "Upstream", id "jira"} for Upstream::"jira".
struct EntityRef {
  std::string type;
  std::string id;
  // Cedar literal form: Type::"id" with the id escaped.
  std::string ToString() const;
  bool operator==(const EntityRef&) const = default;
};

struct Action {
  std::string protocol;  // "mcp" | "http" | "llm"
  std::string upstream;  // configured upstream name
  std::string name;      // tool, route or model name
  ActionClass cls = ActionClass::kDestructive;
  Json args;             // the call's arguments (a JSON object; empty object if none)
  EntityRef resource;    // typed resource if configured, else Upstream::"<upstream>"
  std::string method;    // request info for context.request
  std::string path;

  // "<upstream>:<name>", the action id used by scopes and policies.
  std::string Id() const { return upstream + ":" + name; }
};

// What became of a forwarded call.
struct Outcome {
  bool ok = false;             // the upstream answered (even if the tool reported an error)
  bool tool_error = false;     // the upstream answered with a tool-level error (MCP isError)
  ErrorCode error = ErrorCode::kInternal;  // when !ok
  std::string message;         // when !ok
  Json result;                 // the upstream's result, secrets already scrubbed
  int64_t latency_micros = 0;
};

}  // namespace mandate::core
