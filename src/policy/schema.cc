#include "mandate/policy/schema.h"

#include <algorithm>
#include <set>
#include <utility>

#include "mandate/core/limits.h"
#include "policy/lexer.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;

constexpr std::string_view kReservedTypes[] = {"Human", "Agent", "Group", "Upstream", "Action"};
constexpr std::string_view kClassActions[] = {"read", "write", "destructive"};
constexpr std::string_view kMandateGroup = "mandate";
constexpr std::string_view kDelegateAction = "mandate:delegate";

// "Name" or "Ns::Name" (any depth), each component an identifier.
bool IsTypeName(std::string_view s) {
  for (;;) {
    size_t colons = s.find("::");
    if (!IsBareName(s.substr(0, colons))) return false;
    if (colons == std::string_view::npos) return true;
    s.remove_prefix(colons + 2);
  }
}

std::string_view LastComponent(std::string_view type) {
  size_t colons = type.rfind("::");
  return colons == std::string_view::npos ? type : type.substr(colons + 2);
}

// The path of an attribute for notes: context.args.a, context.args["odd name"].
std::string AttributePath(const std::string& base, const std::string& name) {
  if (IsBareName(name)) return base + "." + name;
  std::string out = base + "[";
  core::AppendJsonString(name, &out);
  return out + "]";
}

// Notes about unvalidated parts, at most kPolicySchemaNotesMax (then a count of the rest).
class Notes {
 public:
  void Add(std::string note) {
    if (out_.size() < core::kPolicySchemaNotesMax) {
      out_.push_back(std::move(note));
    } else {
      ++dropped_;
    }
  }
  std::vector<std::string> Take() {
    if (dropped_ > 0) out_.push_back("... and " + std::to_string(dropped_) + " more such notes");
    return std::move(out_);
  }

 private:
  std::vector<std::string> out_;
  size_t dropped_ = 0;
};

// Maps one tool's inputSchema. Stops (exhausted) when the tool's or the schema's property budget
// runs out; the caller then leaves the whole args unknown.
class InputSchemaMapper {
 public:
  InputSchemaMapper(std::string tool, size_t* schema_attributes_left)
      : tool_(std::move(tool)), schema_left_(schema_attributes_left) {}

  bool exhausted() const { return exhausted_; }
  std::vector<std::string>& notes() { return notes_; }

  // Invariant: recursion depth is bounded by kPolicySchemaTypeDepthMax (checked first).
  CedarTypePtr Map(const Json& schema, const std::string& path, size_t depth) {
    if (exhausted_) return CedarType::Unknown();
    if (depth > core::kPolicySchemaTypeDepthMax) {
      Note(path, "is nested deeper than " + std::to_string(core::kPolicySchemaTypeDepthMax) + " levels");
      return CedarType::Unknown();
    }
    if (!schema.is_object()) {
      Note(path, "has a schema that is not an object");
      return CedarType::Unknown();
    }
    for (const char* keyword : {"anyOf", "oneOf", "allOf", "not", "$ref", "if"}) {
      if (schema.Find(keyword) != nullptr) {
        Note(path, std::string("uses ") + keyword);
        return CedarType::Unknown();
      }
    }
    std::string type;
    const Json* t = schema.Find("type");
    if (t != nullptr && t->is_string()) {
      type = t->as_string();
    } else if (t != nullptr && t->is_array()) {
      std::vector<std::string> types;
      bool strings = true;
      for (const Json& e : t->as_array()) {
        if (!e.is_string()) {
          strings = false;
        } else if (e.as_string() != "null") {
          types.push_back(e.as_string());
        }
      }
      if (!strings || types.size() != 1) {
        Note(path, "may have several types (" + t->Dump() + ")");
        return CedarType::Unknown();
      }
      type = types.front();  // ["T", "null"]: a null argument is refused before policy
    } else if (t != nullptr) {
      Note(path, "has a \"type\" that is neither a string nor a list");
      return CedarType::Unknown();
    } else if (schema.Find("properties") != nullptr) {
      type = "object";
    } else if (const Json* e = schema.FindArray("enum"); e != nullptr && !e->as_array().empty() &&
                                                        std::all_of(e->as_array().begin(), e->as_array().end(),
                                                                    [](const Json& v) { return v.is_string(); })) {
      type = "string";
    } else {
      Note(path, "has no type");
      return CedarType::Unknown();
    }

    if (type == "string") return CedarType::String();
    if (type == "integer" || type == "number") return CedarType::Long();
    if (type == "boolean") return CedarType::Bool();
    if (type == "array") {
      const Json* items = schema.Find("items");
      if (items == nullptr || !items->is_object()) {
        Note(path + "[]", "has no single items schema");
        return CedarType::Set(CedarType::Unknown());
      }
      return CedarType::Set(Map(*items, path + "[]", depth + 1));
    }
    if (type == "object") {
      const Json* props = schema.FindObject("properties");
      if (props == nullptr) {
        Note(path, "is an object without properties");
        return CedarType::Unknown();
      }
      const Json* additional = schema.Find("additionalProperties");
      bool open = additional != nullptr && !(additional->is_bool() && !additional->as_bool());
      std::set<std::string, std::less<>> required;
      if (const Json* req = schema.FindArray("required")) {
        for (const Json& r : req->as_array()) {
          if (r.is_string()) required.insert(r.as_string());
        }
      }
      std::vector<CedarAttribute> attributes;
      for (const auto& [name, sub] : props->as_object()) {
        if (tool_left_ == 0 || *schema_left_ == 0) {
          exhausted_ = true;
          return CedarType::Unknown();
        }
        --tool_left_;
        --*schema_left_;
        if (name.size() > core::kPolicySchemaAttributeBytesMax) {
          notes_.push_back(tool_ + ": " + path + " has a property name longer than " +
                           std::to_string(core::kPolicySchemaAttributeBytesMax) +
                           " bytes: attributes it does not declare are not reported");
          open = true;
          continue;
        }
        CedarTypePtr attr = Map(sub, AttributePath(path, name), depth + 1);
        attributes.push_back(CedarAttribute{name, std::move(attr), required.count(name) > 0});
      }
      return CedarType::Record(std::move(attributes), open);
    }
    Note(path, "has type \"" + type + "\"");
    return CedarType::Unknown();
  }

 private:
  void Note(const std::string& path, const std::string& what) {
    notes_.push_back(tool_ + ": " + path + " " + what + " (not validated)");
  }

  std::string tool_;
  size_t* schema_left_;
  size_t tool_left_ = core::kPolicySchemaToolAttributesMax;
  bool exhausted_ = false;
  std::vector<std::string> notes_;
};

CedarTypePtr ArgsType(const Json& input_schema, const std::string& action_id, size_t* attributes_left,
                      Notes* notes) {
  InputSchemaMapper mapper(action_id, attributes_left);
  CedarTypePtr args = mapper.Map(input_schema, "context.args", 1);
  if (mapper.exhausted()) {
    notes->Add(action_id + ": the inputSchema declares more properties than Mandate validates (" +
               std::to_string(core::kPolicySchemaToolAttributesMax) + " per tool, " +
               std::to_string(core::kPolicySchemaAttributesMax) + " in all): context.args is not validated");
    return CedarType::Unknown();
  }
  for (std::string& n : mapper.notes()) notes->Add(std::move(n));
  return args;
}

core::Error Invalid(std::string message) { return MakeError(ErrorCode::kBadRequest, "schema: " + std::move(message)); }

// Required string member. Errors name `what`.
Result<std::string> StringMember(const Json& j, std::string_view key, const std::string& what) {
  const std::string* s = j.FindString(key);
  if (s == nullptr) return MakeError(ErrorCode::kBadRequest, what + ": \"" + std::string(key) + "\" must be a string");
  return *s;
}

// Optional string member (absent or null: empty).
Result<std::string> OptionalString(const Json& j, std::string_view key, const std::string& what) {
  const Json* v = j.Find(key);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_string()) return MakeError(ErrorCode::kBadRequest, what + ": \"" + std::string(key) + "\" must be a string or null");
  return v->as_string();
}

core::Status CheckName(const std::string& name, const std::string& what) {
  if (name.empty() || name.size() > core::kNameBytesMax) {
    return Invalid(what + " must be 1 to " + std::to_string(core::kNameBytesMax) + " bytes");
  }
  return core::OkStatus();
}

// `j` with every value deeper than `depth_left` levels replaced by null (which maps to unknown,
// as any type that deep does). Bounded by `depth_left`.
Json Prune(const Json& j, size_t depth_left) {
  if (depth_left == 0) return Json();
  if (j.is_object()) {
    Json out = Json::MakeObject();
    for (const auto& [k, v] : j.as_object()) out.Set(k, Prune(v, depth_left - 1));
    return out;
  }
  if (j.is_array()) {
    Json out = Json::MakeArray();
    for (const Json& v : j.as_array()) out.Push(Prune(v, depth_left - 1));
    return out;
  }
  return j;
}

}  // namespace

// ---- CedarType ---------------------------------------------------------------------------

const CedarAttribute* CedarType::Find(std::string_view name) const {
  auto it = std::lower_bound(attributes.begin(), attributes.end(), name,
                             [](const CedarAttribute& a, std::string_view n) { return a.name < n; });
  return it != attributes.end() && it->name == name ? &*it : nullptr;
}

std::string CedarType::ToString() const {
  switch (kind) {
    case Kind::kUnknown:
      return "unknown";
    case Kind::kBool:
      return "Bool";
    case Kind::kLong:
      return "Long";
    case Kind::kString:
      return "String";
    case Kind::kEntity:
      return entity_type;
    case Kind::kSet:
      return "Set<" + element->ToString() + ">";
    case Kind::kRecord: {
      std::string out = "{";
      for (size_t i = 0; i < attributes.size(); ++i) {
        if (i > 0) out += ", ";
        const CedarAttribute& a = attributes[i];
        if (IsBareName(a.name)) {
          out += a.name;
        } else {
          core::AppendJsonString(a.name, &out);
        }
        out += a.required ? ": " : "?: ";
        out += a.type->ToString();
      }
      if (open) out += attributes.empty() ? "..." : ", ...";
      return out + "}";
    }
  }
  return "unknown";
}

CedarTypePtr CedarType::Unknown() {
  static const CedarTypePtr t = std::make_shared<const CedarType>();
  return t;
}

CedarTypePtr CedarType::Bool() {
  static const CedarTypePtr t = [] {
    CedarType c;
    c.kind = Kind::kBool;
    return std::make_shared<const CedarType>(std::move(c));
  }();
  return t;
}

CedarTypePtr CedarType::Long() {
  static const CedarTypePtr t = [] {
    CedarType c;
    c.kind = Kind::kLong;
    return std::make_shared<const CedarType>(std::move(c));
  }();
  return t;
}

CedarTypePtr CedarType::String() {
  static const CedarTypePtr t = [] {
    CedarType c;
    c.kind = Kind::kString;
    return std::make_shared<const CedarType>(std::move(c));
  }();
  return t;
}

CedarTypePtr CedarType::Entity(std::string type) {
  CedarType c;
  c.kind = Kind::kEntity;
  c.entity_type = std::move(type);
  return std::make_shared<const CedarType>(std::move(c));
}

CedarTypePtr CedarType::Set(CedarTypePtr element) {
  CedarType c;
  c.kind = Kind::kSet;
  c.element = element ? std::move(element) : Unknown();
  return std::make_shared<const CedarType>(std::move(c));
}

CedarTypePtr CedarType::Record(std::vector<CedarAttribute> attributes, bool open) {
  std::stable_sort(attributes.begin(), attributes.end(),
                   [](const CedarAttribute& a, const CedarAttribute& b) { return a.name < b.name; });
  attributes.erase(std::unique(attributes.begin(), attributes.end(),
                               [](const CedarAttribute& a, const CedarAttribute& b) { return a.name == b.name; }),
                   attributes.end());
  CedarType c;
  c.kind = Kind::kRecord;
  c.attributes = std::move(attributes);
  c.open = open;
  return std::make_shared<const CedarType>(std::move(c));
}

Json CedarTypeToJson(const CedarType& type) {
  Json out = Json::MakeObject();
  switch (type.kind) {
    case CedarType::Kind::kUnknown:
      return Json();
    case CedarType::Kind::kBool:
      out.Set("type", "Boolean");
      return out;
    case CedarType::Kind::kLong:
      out.Set("type", "Long");
      return out;
    case CedarType::Kind::kString:
      out.Set("type", "String");
      return out;
    case CedarType::Kind::kEntity:
      out.Set("type", "Entity");
      out.Set("name", type.entity_type);
      return out;
    case CedarType::Kind::kSet: {
      Json element = CedarTypeToJson(*type.element);
      if (element.is_null()) return Json();
      out.Set("type", "Set");
      out.Set("element", std::move(element));
      return out;
    }
    case CedarType::Kind::kRecord: {
      Json attributes = Json::MakeObject();
      for (const CedarAttribute& a : type.attributes) {
        Json t = CedarTypeToJson(*a.type);
        if (t.is_null()) continue;  // unknown: Cedar has no type for it
        if (!a.required) t.Set("required", false);
        attributes.Set(a.name, std::move(t));
      }
      out.Set("type", "Record");
      out.Set("attributes", std::move(attributes));
      return out;
    }
  }
  return Json();
}

// ---- SchemaSource <-> JSON ---------------------------------------------------------------

Json SchemaSource::ToJson() const {
  Json ups = Json::MakeArray();
  for (const UpstreamSource& u : upstreams) {
    Json j = Json::MakeObject();
    j.Set("name", u.name);
    j.Set("resource_type", u.resource_type.empty() ? Json() : Json(u.resource_type));
    j.Set("tools_listed", u.tools_listed);
    j.Set("tools_error", u.tools_error.empty() ? Json() : Json(u.tools_error));
    j.Set("notes", Json::StringArray(u.notes));
    Json tools = Json::MakeArray();
    for (const ToolSource& t : u.tools) {
      Json tj = Json::MakeObject();
      tj.Set("name", t.name);
      tj.Set("class", std::string(core::ActionClassName(t.action_class)));
      tj.Set("input_schema", Prune(t.input_schema, core::kPolicySchemaInputJsonDepthMax));
      tools.Push(std::move(tj));
    }
    j.Set("tools", std::move(tools));
    ups.Push(std::move(j));
  }
  Json out = Json::MakeObject();
  out.Set("upstreams", std::move(ups));
  return out;
}

Result<SchemaSource> SchemaSource::FromJson(const Json& json) {
  const Json* ups = json.FindArray("upstreams");
  if (ups == nullptr) return MakeError(ErrorCode::kBadRequest, "schema source: \"upstreams\" must be an array");
  if (ups->as_array().size() > core::kUpstreamsMax) {
    return MakeError(ErrorCode::kBadRequest, "schema source: more than " + std::to_string(core::kUpstreamsMax) + " upstreams");
  }
  SchemaSource out;
  for (const Json& uj : ups->as_array()) {
    if (!uj.is_object()) return MakeError(ErrorCode::kBadRequest, "schema source: an upstream must be an object");
    UpstreamSource u;
    MANDATE_ASSIGN_OR_RETURN(u.name, StringMember(uj, "name", "schema source: upstream"));
    const std::string what = "schema source: upstream \"" + u.name.substr(0, core::kNameBytesMax) + "\"";
    MANDATE_ASSIGN_OR_RETURN(u.resource_type, OptionalString(uj, "resource_type", what));
    MANDATE_ASSIGN_OR_RETURN(u.tools_error, OptionalString(uj, "tools_error", what));
    const Json* listed = uj.Find("tools_listed");
    if (listed == nullptr || !listed->is_bool()) return MakeError(ErrorCode::kBadRequest, what + ": \"tools_listed\" must be a boolean");
    u.tools_listed = listed->as_bool();
    if (const Json* notes = uj.Find("notes"); notes != nullptr && !notes->is_null()) {
      if (!notes->is_array()) return MakeError(ErrorCode::kBadRequest, what + ": \"notes\" must be an array of strings");
      for (const Json& n : notes->as_array()) {
        if (!n.is_string()) return MakeError(ErrorCode::kBadRequest, what + ": \"notes\" must be an array of strings");
        if (u.notes.size() < core::kPolicySchemaNotesMax) u.notes.push_back(n.as_string());
      }
    }
    const Json* tools = uj.FindArray("tools");
    if (tools == nullptr) return MakeError(ErrorCode::kBadRequest, what + ": \"tools\" must be an array");
    if (tools->as_array().size() > core::kToolsPerUpstreamMax) {
      return MakeError(ErrorCode::kBadRequest, what + ": more than " + std::to_string(core::kToolsPerUpstreamMax) + " tools");
    }
    for (const Json& tj : tools->as_array()) {
      if (!tj.is_object()) return MakeError(ErrorCode::kBadRequest, what + ": a tool must be an object");
      ToolSource t;
      MANDATE_ASSIGN_OR_RETURN(t.name, StringMember(tj, "name", what + ": tool"));
      MANDATE_ASSIGN_OR_RETURN(std::string cls, StringMember(tj, "class", what + ": tool"));
      auto parsed = core::ActionClassFromName(cls);
      if (!parsed) return MakeError(ErrorCode::kBadRequest, what + ": tool class must be read, write or destructive");
      t.action_class = *parsed;
      if (const Json* s = tj.Find("input_schema")) t.input_schema = *s;
      u.tools.push_back(std::move(t));
    }
    out.upstreams.push_back(std::move(u));
  }
  return out;
}

// ---- Schema ------------------------------------------------------------------------------

Result<Schema> Schema::Build(const SchemaSource& source) {
  if (source.upstreams.size() > core::kUpstreamsMax) {
    return Invalid("more than " + std::to_string(core::kUpstreamsMax) + " upstreams");
  }
  Schema s;
  Notes notes;
  auto add_entity_type = [&](std::string name, std::vector<std::string> member_of) {
    s.entity_types_.emplace(name, SchemaEntityType{name, std::move(member_of)});
  };
  add_entity_type("Human", {"Group"});
  add_entity_type("Agent", {"Group"});
  add_entity_type("Group", {});
  add_entity_type("Upstream", {});
  auto add_group = [&](std::string id, std::vector<std::string> parents = {}) {
    SchemaAction a;
    a.id = id;
    a.parents = std::move(parents);
    s.actions_.emplace(std::move(id), std::move(a));
  };
  for (std::string_view cls : kClassActions) add_group(std::string(cls));
  add_group(std::string(kMandateGroup));

  // The parts of every context (pipeline.cc: SessionValue, ModelValue, TimeValue). A session
  // without a model has an empty model record, so its members are optional.
  const CedarTypePtr model = CedarType::Record({{"provider", CedarType::String(), false},
                                                {"name", CedarType::String(), false},
                                                {"tier", CedarType::String(), false}});
  const CedarTypePtr session = CedarType::Record({{"id", CedarType::String(), true},
                                                  {"task", CedarType::String(), true},
                                                  {"depth", CedarType::Long(), true},
                                                  {"model", model, true},
                                                  {"human", CedarType::Entity("Human"), true}});
  const CedarTypePtr request = CedarType::Record({{"protocol", CedarType::String(), true},
                                                  {"method", CedarType::String(), true},
                                                  {"path", CedarType::String(), true}});
  const CedarTypePtr time = CedarType::Record({{"unix", CedarType::Long(), true},
                                               {"hour_utc", CedarType::Long(), true},
                                               {"weekday", CedarType::Long(), true}});
  auto tool_context = [&](CedarTypePtr args) {
    return CedarType::Record({{"args", std::move(args), true},
                              {"session", session, true},
                              {"request", request, true},
                              {"time", time, true}});
  };

  {  // Delegation (pipeline.cc: DecideDelegation): the caller delegates to Agent::"<child>".
    SchemaAction d;
    d.id = std::string(kDelegateAction);
    d.parents = {std::string(kMandateGroup)};
    d.applies = true;
    d.principal_types = {"Human", "Agent"};
    d.resource_types = {"Agent"};
    d.context = CedarType::Record({{"args", CedarType::Record({}), true}, {"session", session, true}, {"time", time, true}});
    s.actions_.emplace(d.id, std::move(d));
  }

  size_t attributes_left = core::kPolicySchemaAttributesMax;
  std::set<std::string, std::less<>> upstream_names;
  for (const UpstreamSource& u : source.upstreams) {
    MANDATE_RETURN_IF_ERROR(CheckName(u.name, "an upstream name"));
    const std::string quoted = "upstream \"" + u.name + "\"";
    if (u.name.find(':') != std::string::npos) return Invalid(quoted + ": the name must not contain ':'");
    if (std::find(std::begin(kClassActions), std::end(kClassActions), u.name) != std::end(kClassActions) ||
        u.name == kMandateGroup) {
      return Invalid(quoted + ": the name is reserved for Mandate's own actions");
    }
    if (!upstream_names.insert(u.name).second) return Invalid(quoted + " is listed twice");
    std::vector<std::string> resource_types = {"Upstream"};
    if (!u.resource_type.empty()) {
      if (!IsTypeName(u.resource_type)) {
        return Invalid(quoted + ": resource type \"" + u.resource_type + "\" is not a Cedar type name");
      }
      const std::string_view last = LastComponent(u.resource_type);
      if (std::find(std::begin(kReservedTypes), std::end(kReservedTypes), last) != std::end(kReservedTypes)) {
        return Invalid(quoted + ": resource type \"" + u.resource_type + "\" uses the name " + std::string(last) +
                       ", which Mandate reserves");
      }
      add_entity_type(u.resource_type, {"Upstream"});
      resource_types.push_back(u.resource_type);
    }
    if (u.tools.size() > core::kToolsPerUpstreamMax) {
      return Invalid(quoted + ": more than " + std::to_string(core::kToolsPerUpstreamMax) + " tools");
    }
    add_group(u.name);
    if (!u.tools_error.empty()) notes.Add("upstream " + u.name + ": " + u.tools_error);
    for (const std::string& n : u.notes) notes.Add("upstream " + u.name + ": " + n);
    if (!u.tools_listed) {
      notes.Add("upstream " + u.name +
                ": its tool list is not known (only the tools the config names): any action " + u.name +
                ":<tool> is accepted, and the arguments of tools without an inputSchema are not validated");
      SchemaAction open;
      open.id = u.name + ":*";
      open.parents = {u.name};
      open.applies = true;
      open.class_unknown = true;
      open.principal_types = {"Human", "Agent"};
      open.resource_types = resource_types;
      open.context = tool_context(CedarType::Unknown());
      s.open_upstreams_.emplace(u.name, std::move(open));
    }
    for (const ToolSource& t : u.tools) {
      MANDATE_RETURN_IF_ERROR(CheckName(t.name, quoted + ": a tool name"));
      SchemaAction a;
      a.id = u.name + ":" + t.name;
      if (s.actions_.count(a.id)) return Invalid(quoted + ": tool \"" + t.name + "\" is listed twice");
      a.parents = {u.name, std::string(core::ActionClassName(t.action_class))};
      a.applies = true;
      a.principal_types = {"Human", "Agent"};
      a.resource_types = resource_types;
      CedarTypePtr args;
      if (t.input_schema.is_null()) {
        // An open upstream's note already says that its configured tools have unknown args.
        if (u.tools_listed) notes.Add(a.id + ": no inputSchema is known: context.args is not validated");
        args = CedarType::Unknown();
      } else {
        args = ArgsType(t.input_schema, a.id, &attributes_left, &notes);
        if (args->kind != CedarType::Kind::kRecord && args->kind != CedarType::Kind::kUnknown) {
          notes.Add(a.id + ": the inputSchema is not an object: context.args is not validated");
          args = CedarType::Unknown();
        }
      }
      a.context = tool_context(std::move(args));
      s.actions_.emplace(a.id, std::move(a));
      ++s.tool_count_;
    }
  }
  s.notes_ = notes.Take();
  return s;
}

bool Schema::MayBeIn(std::string_view type, std::string_view ancestor) const {
  // Breadth-first over memberOf; the set of types bounds the walk.
  std::vector<std::string_view> frontier{type};
  std::set<std::string_view> seen{type};
  while (!frontier.empty()) {
    std::string_view t = frontier.back();
    frontier.pop_back();
    if (t == ancestor) return true;
    auto it = entity_types_.find(t);
    if (it == entity_types_.end()) continue;
    for (const std::string& parent : it->second.member_of) {
      if (seen.insert(parent).second) frontier.push_back(parent);
    }
  }
  return false;
}

const SchemaAction* Schema::FindAction(std::string_view id) const {
  auto it = actions_.find(id);
  return it == actions_.end() ? nullptr : &it->second;
}

const SchemaAction* Schema::OpenUpstreamOf(std::string_view id) const {
  size_t colon = id.find(':');
  if (colon == std::string_view::npos || colon + 1 == id.size() || actions_.count(id)) return nullptr;
  auto it = open_upstreams_.find(id.substr(0, colon));
  return it == open_upstreams_.end() ? nullptr : &it->second;
}

Json Schema::ToCedarJson() const {
  // namespace -> {"entityTypes", "actions"}; the empty namespace holds Mandate's own types and
  // every action; a namespaced resource type goes into its namespace (where unqualified names
  // such as Upstream resolve to the empty namespace, Cedar's rule, as no shadowing type exists:
  // Build refuses resource types named like Mandate's).
  std::map<std::string, std::pair<Json, Json>> namespaces;
  namespaces[""] = {Json::MakeObject(), Json::MakeObject()};
  for (const auto& [name, et] : entity_types_) {
    size_t colons = name.rfind("::");
    std::string ns = colons == std::string::npos ? "" : name.substr(0, colons);
    std::string base = colons == std::string::npos ? name : name.substr(colons + 2);
    auto& [types, actions] = namespaces[ns];
    if (types.is_null()) types = Json::MakeObject();
    if (actions.is_null()) actions = Json::MakeObject();
    Json j = Json::MakeObject();
    if (!et.member_of.empty()) j.Set("memberOfTypes", Json::StringArray(et.member_of));
    types.Set(base, std::move(j));
  }
  Json& actions = namespaces[""].second;
  for (const auto& [id, a] : actions_) {
    Json j = Json::MakeObject();
    if (!a.parents.empty()) {
      Json parents = Json::MakeArray();
      for (const std::string& p : a.parents) {
        Json ref = Json::MakeObject();
        ref.Set("id", p);
        parents.Push(std::move(ref));
      }
      j.Set("memberOf", std::move(parents));
    }
    if (a.applies) {
      Json applies = Json::MakeObject();
      applies.Set("principalTypes", Json::StringArray(a.principal_types));
      applies.Set("resourceTypes", Json::StringArray(a.resource_types));
      applies.Set("context", CedarTypeToJson(*a.context));
      j.Set("appliesTo", std::move(applies));
    }
    actions.Set(id, std::move(j));
  }
  Json out = Json::MakeObject();
  for (auto& [ns, parts] : namespaces) {
    Json j = Json::MakeObject();
    j.Set("entityTypes", std::move(parts.first));
    j.Set("actions", std::move(parts.second));
    out.Set(ns, std::move(j));
  }
  return out;
}

}  // namespace mandate::policy
