// The Cedar schema of Mandate's requests (docs/policy.md, "Schema and validation"): the entity
// types, the actions with their groups, and the context of each action, with context.args typed
// from each MCP tool's inputSchema.
//
// Input is a neutral description (SchemaSource): upstreams, their tools with class and
// inputSchema, their typed-resource type. It knows nothing of the config or of MCP; the server
// fills it from both (src/server/policy_schema.h). Output is a Schema, which the validator
// (validator.h) checks policies against, and which prints as a Cedar JSON schema
// (https://docs.cedarpolicy.com/schema/json-schema.html) that the Cedar reference accepts.
//
// What the schema holds, mirroring what src/gateway/pipeline.cc builds for each call:
//   entity types  Human, Agent (both memberOf Group), Group, Upstream, and each upstream's
//                 typed-resource type (memberOf Upstream); none has attributes;
//   actions       the groups read, write, destructive, one per upstream, and mandate (all
//                 without appliesTo); "<upstream>:<tool>" memberOf "<upstream>" and its class,
//                 principals Human and Agent, resources Upstream (and the typed-resource type);
//                 mandate:delegate memberOf mandate, principals Human and Agent, resource Agent;
//   context       {args, session: {id, task, depth, model: {provider?, name?, tier?}, human},
//                 request: {protocol, method, path}, time: {unix, hour_utc, weekday}} for tools;
//                 {args: {}, session, time} for mandate:delegate.
//
// inputSchema (JSON Schema) -> Cedar: string -> String; integer and number -> Long (Cedar has
// no floating point, and a call whose arguments hold a non-integer number is refused before
// any policy sees it, so every evaluated value is a Long); boolean -> Bool; array with items
// -> Set of the items' type; object with properties -> Record, its attributes required when
// listed in "required", closed unless additionalProperties is present and not false; a type
// list ["T", "null"] -> T (a null argument is refused too). Anything else (null, anyOf,
// oneOf, allOf, not, $ref, an object without properties, an array without items, a type
// list of several types, no type) is *unknown*: policies may use it freely and nothing about
// it is validated. Unknown parts are left out of the Cedar JSON (Cedar has no "any" type), and
// each is listed in notes().
//
// A tool without an inputSchema (known only from the config) has unknown args. An upstream
// whose tool list is not known whole (tools_listed false: the server could not be asked) is
// open: an action "<upstream>:<anything>" is accepted, with unknown class and args.
//
// Limits (core/limits.h): a type nested deeper than kPolicySchemaTypeDepthMax is unknown; a
// tool whose inputSchema has more than kPolicySchemaToolAttributesMax properties, or any tool
// once the schema holds kPolicySchemaAttributesMax, has unknown args; a property name longer
// than kPolicySchemaAttributeBytesMax makes its record open. Each such case is a note, never an
// error: an upstream cannot make the schema fail to build.
//
// Thread safety: a Schema is an immutable value once built; any number of threads may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/action.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::policy {

// ---- The neutral description (input) -----------------------------------------------------

struct ToolSource {
  std::string name;  // the action is Action::"<upstream>:<name>"
  core::ActionClass action_class = core::ActionClass::kDestructive;
  // The tool's inputSchema (a JSON Schema object); null when unknown.
  core::Json input_schema;
};

struct UpstreamSource {
  std::string name;
  std::string resource_type;  // "Repo", "Acme::Repo"; empty: resources are Upstream only
  // True when `tools` is the upstream's whole tool list (its tools/list); false when the
  // upstream may have other tools (only those named in the config are listed).
  bool tools_listed = false;
  std::vector<ToolSource> tools;
  std::string tools_error;  // why the list is not known, when it was asked for and failed
  // Remarks of whoever filled this in (e.g. a configured tool the upstream does not list);
  // they become notes of the schema.
  std::vector<std::string> notes;
};

struct SchemaSource {
  std::vector<UpstreamSource> upstreams;

  // {"upstreams": [{"name", "resource_type" (string or null), "tools_listed", "tools_error"
  // (string or null), "notes": [string], "tools": [{"name", "class", "input_schema" (object or
  // null)}]}]}. Each input_schema is cut at core::kPolicySchemaInputJsonDepthMax levels (deeper
  // values become null), which changes nothing Build reads and keeps the JSON parseable.
  core::Json ToJson() const;
  // The inverse of ToJson. Errors (kBadRequest): a member missing or of the wrong type, an
  // unknown class, more than core::kUpstreamsMax upstreams or core::kToolsPerUpstreamMax tools
  // in one upstream, a name longer than core::kNameBytesMax.
  static core::Result<SchemaSource> FromJson(const core::Json& json);
};

// ---- Types -------------------------------------------------------------------------------

struct CedarType;
using CedarTypePtr = std::shared_ptr<const CedarType>;

struct CedarAttribute {
  std::string name;
  CedarTypePtr type;  // never null
  bool required = true;
};

struct CedarType {
  enum class Kind : uint8_t { kUnknown, kBool, kLong, kString, kEntity, kSet, kRecord };
  Kind kind = Kind::kUnknown;
  std::string entity_type;                 // kEntity
  CedarTypePtr element;                    // kSet; never null
  std::vector<CedarAttribute> attributes;  // kRecord: sorted by name, names unique
  bool open = false;                       // kRecord: attributes not listed may exist (unknown)

  // The attribute `name` of a record, or nullptr.
  const CedarAttribute* Find(std::string_view name) const;
  // Cedar's notation: Bool, Long, String, Human, Set<Long>, {a: Long, b?: String}; "unknown".
  std::string ToString() const;

  static CedarTypePtr Unknown();
  static CedarTypePtr Bool();
  static CedarTypePtr Long();
  static CedarTypePtr String();
  static CedarTypePtr Entity(std::string type);
  static CedarTypePtr Set(CedarTypePtr element);
  // Sorts `attributes` by name; on a duplicate name the first is kept.
  static CedarTypePtr Record(std::vector<CedarAttribute> attributes, bool open = false);
};

// ---- The schema --------------------------------------------------------------------------

struct SchemaEntityType {
  std::string name;                    // "Human", "Acme::Repo"
  std::vector<std::string> member_of;  // entity types its entities may be members of
};

struct SchemaAction {
  std::string id;                    // "jira:get_issue", "read", "mandate:delegate"
  std::vector<std::string> parents;  // ids of the actions (groups) it is a member of
  // False for action groups (read, write, destructive, <upstream>, mandate): no request is
  // ever made with them. The members below are set only when true.
  bool applies = false;
  std::vector<std::string> principal_types;
  std::vector<std::string> resource_types;
  CedarTypePtr context;  // a record
  // For the stand-in of an open upstream's unlisted tools: the class is not known, so whether
  // it is in read, write or destructive is not known either (parents holds the upstream only).
  bool class_unknown = false;
};

class Schema {
 public:
  // Builds the schema. Errors (kBadRequest): an upstream name that is empty, longer than
  // core::kNameBytesMax, holds ':', repeats, or is reserved (read, write, destructive,
  // mandate); a tool name that is empty, too long or repeats within its upstream; a resource
  // type that is not a Cedar type name (Name or Ns::Name) or whose last component is one of
  // Mandate's own types (Human, Agent, Group, Upstream, Action: inside a namespace of the
  // Cedar JSON it would shadow Mandate's type); more than core::kUpstreamsMax upstreams or
  // core::kToolsPerUpstreamMax tools in one. A hostile inputSchema is never an error (see the
  // file comment): its unvalidated parts are notes.
  static core::Result<Schema> Build(const SchemaSource& source);

  // The schema in Cedar's JSON format: {"": {"entityTypes", "actions"}} plus one namespace per
  // namespace of a typed-resource type. Unknown attributes are left out; an open upstream
  // contributes the tools it lists only. Deterministic (members sorted).
  core::Json ToCedarJson() const;

  const std::map<std::string, SchemaEntityType, std::less<>>& entity_types() const { return entity_types_; }
  const std::map<std::string, SchemaAction, std::less<>>& actions() const { return actions_; }
  // Open upstreams (tools_listed false) -> the stand-in action of their unlisted tools (id
  // "<upstream>:*", class_unknown, args unknown).
  const std::map<std::string, SchemaAction, std::less<>>& open_upstreams() const { return open_upstreams_; }

  bool HasEntityType(std::string_view type) const { return entity_types_.count(type) > 0; }
  // Whether an entity of type `type` may be `in` an entity of type `ancestor` (the same type, or
  // through memberOf, transitively).
  bool MayBeIn(std::string_view type, std::string_view ancestor) const;
  // The declared action `id`, or nullptr.
  const SchemaAction* FindAction(std::string_view id) const;
  // For an action id that is not declared but names "<open upstream>:<tool>": that upstream's
  // stand-in action; else nullptr.
  const SchemaAction* OpenUpstreamOf(std::string_view id) const;

  // What is not validated and why, one sentence each, at most core::kPolicySchemaNotesMax (the
  // last then says how many more there were).
  const std::vector<std::string>& notes() const { return notes_; }
  size_t tool_count() const { return tool_count_; }

 private:
  std::map<std::string, SchemaEntityType, std::less<>> entity_types_;
  std::map<std::string, SchemaAction, std::less<>> actions_;
  std::map<std::string, SchemaAction, std::less<>> open_upstreams_;
  std::vector<std::string> notes_;
  size_t tool_count_ = 0;
};

// A Cedar type as Cedar's JSON schema writes it ({"type": "Long"}, ...), or null when the type
// is unknown (so the attribute holding it is left out).
core::Json CedarTypeToJson(const CedarType& type);

}  // namespace mandate::policy
