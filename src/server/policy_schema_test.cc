#include "server/policy_schema.h"

#include <gtest/gtest.h>

#include <string>

namespace mandate::server {
namespace {

Config ParseOrDie(const std::string& yaml) {
  auto c = ParseConfig(yaml, "/tmp/mandate.yaml");
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? *c : Config();
}

adapters::mcp::ToolInfo Info(std::string name, std::optional<core::ActionClass> annotated, const std::string& input_schema) {
  adapters::mcp::ToolInfo t;
  t.name = name;
  core::Json def = core::Json::MakeObject();
  def.Set("name", name);
  auto schema = core::Json::Parse(input_schema);
  EXPECT_TRUE(schema.ok());
  def.Set("inputSchema", *schema);
  t.definition = std::move(def);
  t.annotated_class = annotated;
  return t;
}

constexpr const char* kYaml = R"(
upstreams:
  github:
    kind: mcp
    url: "http://127.0.0.1:9001/mcp"
    resource: 'Repo::"{args.owner}/{args.repo}"'
    tools: { merge_pull_request: { class: destructive }, get_file: { class: read }, gone: { class: write } }
  jira:
    kind: mcp
    command: [jira-mcp]
    tools: { delete_issue: { class: destructive } }
)";

TEST(PolicySchemaSource, FromTheConfigAloneEveryUpstreamIsOpen) {
  policy::SchemaSource src = SchemaSourceFromConfig(ParseOrDie(kYaml), nullptr);
  ASSERT_EQ(src.upstreams.size(), 2u);
  const policy::UpstreamSource& gh = src.upstreams[0];
  EXPECT_EQ(gh.name, "github");
  EXPECT_EQ(gh.resource_type, "Repo");
  EXPECT_FALSE(gh.tools_listed);
  ASSERT_EQ(gh.tools.size(), 3u);
  EXPECT_TRUE(gh.tools[0].input_schema.is_null());
  auto schema = policy::Schema::Build(src);
  ASSERT_TRUE(schema.ok()) << schema.error().message;
  EXPECT_NE(schema->OpenUpstreamOf("github:anything"), nullptr);
  EXPECT_EQ(schema->FindAction("jira:delete_issue")->parents, (std::vector<std::string>{"jira", "destructive"}));
}

TEST(PolicySchemaSource, JoinsTheLiveToolListsWithTheConfiguredClasses) {
  LiveToolLists live;
  live.emplace("github", std::vector<adapters::mcp::ToolInfo>{
                             Info("get_file", core::ActionClass::kWrite, R"({"type":"object","properties":{"path":{"type":"string"}}})"),
                             Info("list_issues", core::ActionClass::kRead, R"({"type":"object","properties":{}})"),
                             Info("merge_pull_request", core::ActionClass::kRead, R"({"type":"object","properties":{}})"),
                             Info("unannotated", std::nullopt, R"({"type":"object","properties":{}})")});
  live.emplace("jira", core::MakeError(core::ErrorCode::kUpstreamUnavailable, "upstream jira: restarting in 100 ms"));
  policy::SchemaSource src = SchemaSourceFromConfig(ParseOrDie(kYaml), &live);
  const policy::UpstreamSource& gh = src.upstreams[0];
  EXPECT_TRUE(gh.tools_listed);
  std::map<std::string, core::ActionClass> classes;
  for (const auto& t : gh.tools) classes[t.name] = t.action_class;
  // The config wins over annotations; annotations over the default; the default is destructive.
  EXPECT_EQ(classes.at("get_file"), core::ActionClass::kRead);
  EXPECT_EQ(classes.at("merge_pull_request"), core::ActionClass::kDestructive);
  EXPECT_EQ(classes.at("list_issues"), core::ActionClass::kRead);
  EXPECT_EQ(classes.at("unannotated"), core::ActionClass::kDestructive);
  // A configured tool the upstream does not list is kept, with a note.
  EXPECT_EQ(classes.count("gone"), 1u);
  ASSERT_EQ(gh.notes.size(), 1u);
  EXPECT_NE(gh.notes[0].find("\"gone\""), std::string::npos);
  // jira's list failed: config only, open, and why.
  const policy::UpstreamSource& jira = src.upstreams[1];
  EXPECT_FALSE(jira.tools_listed);
  EXPECT_NE(jira.tools_error.find("restarting"), std::string::npos);

  auto schema = policy::Schema::Build(src);
  ASSERT_TRUE(schema.ok()) << schema.error().message;
  EXPECT_EQ(schema->FindAction("github:get_file")->context->Find("args")->type->ToString(), "{path?: String}");
  EXPECT_EQ(schema->OpenUpstreamOf("github:other"), nullptr);
  EXPECT_NE(schema->OpenUpstreamOf("jira:other"), nullptr);
}

}  // namespace
}  // namespace mandate::server
