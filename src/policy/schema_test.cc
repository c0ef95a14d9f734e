#include "mandate/policy/schema.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mandate/core/limits.h"

namespace mandate::policy {
namespace {

using core::Json;

Json ParseJson(const std::string& text) {
  auto j = Json::Parse(text);
  EXPECT_TRUE(j.ok()) << j.error().message;
  return j.ok() ? *j : Json();
}

ToolSource Tool(std::string name, core::ActionClass cls, const std::string& input_schema) {
  ToolSource t;
  t.name = std::move(name);
  t.action_class = cls;
  if (!input_schema.empty()) t.input_schema = ParseJson(input_schema);
  return t;
}

Schema MustBuild(const SchemaSource& source) {
  auto s = Schema::Build(source);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? std::move(s).value() : Schema();
}

// The args type of `action` (for the tests of the inputSchema mapping).
CedarTypePtr ArgsOf(const Schema& s, const std::string& action) {
  const SchemaAction* a = s.FindAction(action);
  EXPECT_NE(a, nullptr) << action;
  if (a == nullptr) return CedarType::Unknown();
  return a->context->Find("args")->type;
}

CedarTypePtr ArgsForJson(Json input_schema, std::vector<std::string>* notes = nullptr) {
  SchemaSource src;
  ToolSource tool;
  tool.name = "t";
  tool.input_schema = std::move(input_schema);
  src.upstreams.push_back(UpstreamSource{"up", "", true, {tool}, "", {}});
  Schema s = MustBuild(src);
  if (notes != nullptr) *notes = s.notes();
  return ArgsOf(s, "up:t");
}

CedarTypePtr ArgsFor(const std::string& input_schema, std::vector<std::string>* notes = nullptr) {
  return ArgsForJson(input_schema.empty() ? Json() : ParseJson(input_schema), notes);
}

bool Mentions(const std::vector<std::string>& notes, const std::string& needle) {
  for (const auto& n : notes) {
    if (n.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(Schema, HoldsMandatesEntitiesActionsAndContext) {
  SchemaSource src;
  src.upstreams.push_back(UpstreamSource{"github", "Repo", true,
                                         {Tool("get_file", core::ActionClass::kRead, R"({"type":"object","properties":{}})"),
                                          Tool("delete_repo", core::ActionClass::kDestructive, R"({"type":"object","properties":{}})")},
                                         "",
                                         {}});
  Schema s = MustBuild(src);
  for (const char* t : {"Human", "Agent", "Group", "Upstream", "Repo"}) EXPECT_TRUE(s.HasEntityType(t)) << t;
  EXPECT_TRUE(s.MayBeIn("Human", "Group"));
  EXPECT_TRUE(s.MayBeIn("Repo", "Upstream"));
  EXPECT_FALSE(s.MayBeIn("Human", "Upstream"));
  for (const char* g : {"read", "write", "destructive", "mandate", "github"}) {
    ASSERT_NE(s.FindAction(g), nullptr) << g;
    EXPECT_FALSE(s.FindAction(g)->applies) << g;
  }
  const SchemaAction* del = s.FindAction("github:delete_repo");
  ASSERT_NE(del, nullptr);
  EXPECT_EQ(del->parents, (std::vector<std::string>{"github", "destructive"}));
  EXPECT_EQ(del->principal_types, (std::vector<std::string>{"Human", "Agent"}));
  EXPECT_EQ(del->resource_types, (std::vector<std::string>{"Upstream", "Repo"}));
  EXPECT_EQ(del->context->ToString(),
            "{args: {}, request: {method: String, path: String, protocol: String}, session: {depth: Long, human: Human, "
            "id: String, model: {name?: String, provider?: String, tier?: String}, task: String}, time: {hour_utc: Long, "
            "unix: Long, weekday: Long}}");
  const SchemaAction* delegate = s.FindAction("mandate:delegate");
  ASSERT_NE(delegate, nullptr);
  EXPECT_EQ(delegate->parents, (std::vector<std::string>{"mandate"}));
  EXPECT_EQ(delegate->resource_types, (std::vector<std::string>{"Agent"}));
  EXPECT_EQ(delegate->context->Find("request"), nullptr);
  EXPECT_EQ(s.tool_count(), 2u);
  EXPECT_TRUE(s.open_upstreams().empty());
}

TEST(Schema, MapsJsonSchemaTypesToCedarTypes) {
  CedarTypePtr args = ArgsFor(R"({"type":"object","properties":{
      "repo":{"type":"string"}, "count":{"type":"integer"}, "amount":{"type":"number"},
      "force":{"type":"boolean"}, "labels":{"type":"array","items":{"type":"string"}},
      "owner":{"type":"object","properties":{"login":{"type":"string"},"id":{"type":"integer"}},"required":["login"]},
      "kind":{"enum":["a","b"]}, "maybe":{"type":["string","null"]}},
    "required":["repo","amount","owner"]})");
  EXPECT_EQ(args->ToString(),
            "{amount: Long, count?: Long, force?: Bool, kind?: String, labels?: Set<String>, maybe?: String, "
            "owner: {id?: Long, login: String}, repo: String}");
  EXPECT_FALSE(args->open);
}

TEST(Schema, LeavesWhatCedarCannotTypeUnknownAndSaysSo) {
  std::vector<std::string> notes;
  CedarTypePtr args = ArgsFor(R"({"type":"object","properties":{
      "either":{"anyOf":[{"type":"string"},{"type":"integer"}]}, "ref":{"$ref":"#/defs/x"},
      "free":{"type":"object"}, "null":{"type":"null"}, "multi":{"type":["string","integer"]},
      "untyped":{}, "list":{"type":"array"}, "map":{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}}})",
                              &notes);
  EXPECT_EQ(args->ToString(),
            "{either?: unknown, free?: unknown, list?: Set<unknown>, map?: {a?: String, ...}, multi?: unknown, "
            "null?: unknown, ref?: unknown, untyped?: unknown}");
  EXPECT_TRUE(Mentions(notes, "up:t: context.args.either uses anyOf (not validated)"));
  EXPECT_TRUE(Mentions(notes, "context.args.free is an object without properties"));
  EXPECT_TRUE(Mentions(notes, "context.args.list[] has no single items schema"));
  // A tool without an inputSchema (known from the config only) has unknown args.
  EXPECT_EQ(ArgsFor("", &notes)->kind, CedarType::Kind::kUnknown);
  EXPECT_TRUE(Mentions(notes, "up:t: no inputSchema is known"));
  EXPECT_EQ(ArgsFor(R"({"type":"string"})", &notes)->kind, CedarType::Kind::kUnknown);
  EXPECT_TRUE(Mentions(notes, "up:t: the inputSchema is not an object"));
}

TEST(Schema, BoundsHostileInputSchemas) {
  // Nested far deeper than the limit: typed down to the limit, unknown below.
  // (Built in memory: as text it would be deeper than a JSON document may be.)
  Json deep = ParseJson(R"({"type":"string"})");
  for (int i = 0; i < 60; ++i) {
    Json props = Json::MakeObject();
    props.Set("a", std::move(deep));
    deep = Json::MakeObject();
    deep.Set("type", "object");
    deep.Set("properties", std::move(props));
  }
  std::vector<std::string> notes;
  CedarTypePtr args = ArgsForJson(deep, &notes);
  size_t depth = 0;
  for (CedarTypePtr t = args; t->kind == CedarType::Kind::kRecord; t = t->Find("a")->type) ++depth;
  EXPECT_EQ(depth, core::kPolicySchemaTypeDepthMax);
  EXPECT_TRUE(Mentions(notes, "is nested deeper than"));
  {
    // Its source and its Cedar JSON stay parseable (the CLI reads both from the admin API), and
    // the source maps to the same type.
    SchemaSource src;
    ToolSource tool;
    tool.name = "t";
    tool.input_schema = deep;
    src.upstreams.push_back(UpstreamSource{"up", "", true, {tool}, "", {}});
    Json answer = Json::MakeObject();
    answer.Set("source", src.ToJson());
    answer.Set("schema", MustBuild(src).ToCedarJson());
    auto parsed = Json::Parse(answer.Dump());
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    auto back = SchemaSource::FromJson(*parsed->FindObject("source"));
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(ArgsOf(MustBuild(*back), "up:t")->ToString(), args->ToString());
  }

  // More properties than one tool may declare: the whole args are unknown.
  Json props = Json::MakeObject();
  for (size_t i = 0; i <= core::kPolicySchemaToolAttributesMax; ++i) props.Set("p" + std::to_string(i), ParseJson(R"({"type":"string"})"));
  Json wide = Json::MakeObject();
  wide.Set("type", "object");
  wide.Set("properties", std::move(props));
  EXPECT_EQ(ArgsForJson(std::move(wide), &notes)->kind, CedarType::Kind::kUnknown);
  EXPECT_TRUE(Mentions(notes, "declares more properties than Mandate validates"));

  // An absurdly long property name: kept out, and the record is open (no false typo reports).
  std::string longname(core::kPolicySchemaAttributeBytesMax + 1, 'x');
  args = ArgsFor(R"({"type":"object","properties":{")" + longname + R"(":{"type":"string"},"b":{"type":"string"}}})", &notes);
  EXPECT_TRUE(args->open);
  EXPECT_EQ(args->attributes.size(), 1u);

  // Notes are capped, however many unmappable properties there are.
  Json many = Json::MakeObject();
  for (size_t i = 0; i < 3 * core::kPolicySchemaNotesMax; ++i) many.Set("n" + std::to_string(i), ParseJson(R"({"type":"null"})"));
  Json obj = Json::MakeObject();
  obj.Set("type", "object");
  obj.Set("properties", std::move(many));
  ArgsForJson(std::move(obj), &notes);
  EXPECT_EQ(notes.size(), core::kPolicySchemaNotesMax + 1);
  EXPECT_NE(notes.back().find("more such notes"), std::string::npos);
}

TEST(Schema, AnUpstreamWithoutItsToolListIsOpen) {
  SchemaSource src;
  src.upstreams.push_back(UpstreamSource{"jira", "", false, {Tool("delete_issue", core::ActionClass::kDestructive, "")}, "connection refused", {}});
  Schema s = MustBuild(src);
  ASSERT_NE(s.FindAction("jira:delete_issue"), nullptr);
  EXPECT_EQ(s.OpenUpstreamOf("jira:delete_issue"), nullptr);  // declared
  const SchemaAction* open = s.OpenUpstreamOf("jira:anything");
  ASSERT_NE(open, nullptr);
  EXPECT_TRUE(open->class_unknown);
  EXPECT_EQ(open->context->Find("args")->type->kind, CedarType::Kind::kUnknown);
  EXPECT_EQ(s.OpenUpstreamOf("github:x"), nullptr);
  EXPECT_TRUE(Mentions(s.notes(), "upstream jira: connection refused"));
  EXPECT_TRUE(Mentions(s.notes(), "any action jira:<tool> is accepted"));
}

TEST(Schema, PrintsCedarJsonSchema) {
  SchemaSource src;
  src.upstreams.push_back(UpstreamSource{"gh", "Acme::Repo", true,
                                         {Tool("get", core::ActionClass::kRead,
                                               R"({"type":"object","properties":{"n":{"type":"integer"},"x":{"anyOf":[]}},"required":[]})")},
                                         "",
                                         {}});
  Json j = MustBuild(src).ToCedarJson();
  const Json* root = j.FindObject("");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->FindObject("entityTypes")->Find("Human")->Dump(), R"({"memberOfTypes":["Group"]})");
  EXPECT_EQ(j.FindObject("Acme")->FindObject("entityTypes")->Find("Repo")->Dump(), R"({"memberOfTypes":["Upstream"]})");
  const Json* get = root->FindObject("actions")->FindObject("gh:get");
  ASSERT_NE(get, nullptr);
  EXPECT_EQ(get->Find("memberOf")->Dump(), R"([{"id":"gh"},{"id":"read"}])");
  const Json* applies = get->FindObject("appliesTo");
  EXPECT_EQ(applies->Find("resourceTypes")->Dump(), R"(["Upstream","Acme::Repo"])");
  // Optional attributes say so; unknown ones are left out.
  EXPECT_EQ(applies->FindObject("context")->FindObject("attributes")->Find("args")->Dump(),
            R"({"type":"Record","attributes":{"n":{"type":"Long","required":false}}})");
  EXPECT_EQ(root->FindObject("actions")->Find("read")->Dump(), "{}");
  // Deterministic.
  EXPECT_EQ(j.Dump(), MustBuild(src).ToCedarJson().Dump());
}

TEST(Schema, RefusesInvalidSources) {
  auto fails = [](SchemaSource src, const std::string& needle) {
    auto s = Schema::Build(src);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
  };
  auto up = [](std::string name, std::string resource = "") { return UpstreamSource{std::move(name), std::move(resource), true, {}, "", {}}; };
  fails(SchemaSource{{up("read")}}, "reserved");
  fails(SchemaSource{{up("mandate")}}, "reserved");
  fails(SchemaSource{{up("a:b")}}, "must not contain ':'");
  fails(SchemaSource{{up("")}}, "upstream name must be 1 to");
  fails(SchemaSource{{up("gh"), up("gh")}}, "listed twice");
  fails(SchemaSource{{up("gh", "Repo::")}}, "not a Cedar type name");
  fails(SchemaSource{{up("gh", "Acme::Upstream")}}, "which Mandate reserves");
  UpstreamSource dup = up("gh");
  dup.tools = {Tool("t", core::ActionClass::kRead, ""), Tool("t", core::ActionClass::kRead, "")};
  fails(SchemaSource{{dup}}, "tool \"t\" is listed twice");
}

TEST(SchemaSource, RoundTripsThroughJsonAndRefusesMalformedJson) {
  SchemaSource src;
  src.upstreams.push_back(UpstreamSource{"gh", "Repo", false, {Tool("get", core::ActionClass::kWrite, R"({"type":"object"})")}, "down", {"a note"}});
  auto back = SchemaSource::FromJson(src.ToJson());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->ToJson().Dump(), src.ToJson().Dump());

  for (const char* bad : {R"({})", R"({"upstreams":[{"name":"x","tools":[]}]})",
                          R"({"upstreams":[{"name":"x","tools_listed":true,"tools":[{"name":"t","class":"delete"}]}]})",
                          R"({"upstreams":[{"name":1,"tools_listed":true,"tools":[]}]})"}) {
    EXPECT_FALSE(SchemaSource::FromJson(ParseJson(bad)).ok()) << bad;
  }
}

}  // namespace
}  // namespace mandate::policy
