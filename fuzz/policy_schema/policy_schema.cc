// Fuzz target: policy::Schema::Build on an arbitrary tool inputSchema (untrusted: it comes from
// an upstream's tools/list), then policy::Validate of a Cedar policy text against that schema.
//
// Input: a JSON document (the inputSchema of tool "up:t"), optionally followed by a line "%%"
// and Cedar text; without it, a fixed set of policies that read context.args is validated.
// Input that is not JSON is used as Cedar text against an inputSchema of one string property.
//
// Invariants (a violation traps, so libFuzzer saves the input); hangs are caught by -timeout:
//   - Build never fails on an inputSchema (only names can make it fail, and they are fixed);
//   - the Cedar JSON of the schema, and the schema source with the inputSchema, serialize and
//     parse back (within kJsonDepthMax), and the parsed source builds the same Cedar JSON;
//   - notes are capped at kPolicySchemaNotesMax (+1 saying how many more);
//   - every finding names a policy of the set, a rule, a line >= 1, a non-empty message;
//     validation is deterministic.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/schema.h"
#include "mandate/policy/validator.h"

namespace {

using mandate::core::Json;
using mandate::policy::PolicySet;
using mandate::policy::Schema;
using mandate::policy::SchemaSource;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::string_view kDefaultPolicies = R"(
permit (principal, action == Action::"up:t", resource) when { context.args.a == "x" };
permit (principal, action == Action::"up:t", resource) when { context.args has a && context.args.a.b < 3 };
permit (principal, action in Action::"up", resource) when { context.args.list.contains(1) || context.args["k"] };
forbid (principal, action, resource) when { context has args && context.args has x && context.args.x.y.z like "*" };
permit (principal, action == Action::"other:tool", resource) when { context.args.anything };
)";

SchemaSource SourceWith(Json input_schema) {
  SchemaSource src;
  mandate::policy::UpstreamSource up;
  up.name = "up";
  up.resource_type = "Repo";
  up.tools_listed = true;
  mandate::policy::ToolSource tool;
  tool.name = "t";
  tool.input_schema = std::move(input_schema);
  up.tools.push_back(std::move(tool));
  src.upstreams.push_back(std::move(up));
  mandate::policy::UpstreamSource other;
  other.name = "other";
  src.upstreams.push_back(std::move(other));  // open: its tools are not known
  return src;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view json_text = input;
  std::string_view cedar_text = kDefaultPolicies;
  if (size_t sep = input.find("\n%%\n"); sep != std::string_view::npos) {
    json_text = input.substr(0, sep);
    cedar_text = input.substr(sep + 4);
  }
  auto parsed = Json::Parse(json_text);
  Json input_schema;
  if (parsed.ok()) {
    input_schema = *parsed;
  } else {
    input_schema = *Json::Parse(R"({"type":"object","properties":{"a":{"type":"string"}}})");
    cedar_text = input;
  }

  const SchemaSource source = SourceWith(input_schema);
  auto schema = Schema::Build(source);
  Check(schema.ok());
  Check(schema->notes().size() <= mandate::core::kPolicySchemaNotesMax + 1);

  const std::string cedar_json = schema->ToCedarJson().Dump();
  Check(Json::Parse(cedar_json).ok());
  Json answer = Json::MakeObject();
  answer.Set("source", source.ToJson());
  auto reparsed = Json::Parse(answer.Dump());
  Check(reparsed.ok());
  auto back = SchemaSource::FromJson(*reparsed->FindObject("source"));
  Check(back.ok());
  auto rebuilt = Schema::Build(*back);
  Check(rebuilt.ok() && rebuilt->ToCedarJson().Dump() == cedar_json);

  auto set = PolicySet::Parse(cedar_text, "fuzz.cedar");
  if (!set.ok()) return 0;
  auto findings = mandate::policy::Validate(*set, *schema);
  std::set<std::string> ids;
  for (const auto& p : set->policies()) ids.insert(p.id);
  for (const auto& f : findings) {
    Check(ids.count(f.policy_id) == 1);
    Check(!f.rule.empty() && !f.message.empty() && f.location.line >= 1);
  }
  auto again = mandate::policy::Validate(*set, *schema);
  Check(again.size() == findings.size());
  for (size_t i = 0; i < again.size(); ++i) Check(again[i].ToString() == findings[i].ToString());
  return 0;
}
