#include "server/policy_schema.h"

#include <functional>
#include <set>

namespace mandate::server {

policy::SchemaSource SchemaSourceFromConfig(const Config& config, const LiveToolLists* live) {
  policy::SchemaSource out;
  for (const auto& [name, uc] : config.upstreams) {
    policy::UpstreamSource u;
    u.name = name;
    u.resource_type = uc.resource_type;
    const core::Result<std::vector<adapters::mcp::ToolInfo>>* listed = nullptr;
    if (live != nullptr) {
      auto it = live->find(name);
      if (it != live->end()) listed = &it->second;
    }
    if (listed != nullptr && !listed->ok()) u.tools_error = "tools/list failed: " + listed->error().message;
    if (listed == nullptr || !listed->ok()) {
      for (const auto& [tool, tc] : uc.tools) {
        policy::ToolSource t;
        t.name = tool;
        t.action_class = tc.action_class;
        u.tools.push_back(std::move(t));
      }
      out.upstreams.push_back(std::move(u));
      continue;
    }
    u.tools_listed = true;
    std::set<std::string, std::less<>> seen;
    for (const adapters::mcp::ToolInfo& info : **listed) {
      policy::ToolSource t;
      t.name = info.name;
      auto configured = uc.tools.find(info.name);
      if (configured != uc.tools.end()) {
        t.action_class = configured->second.action_class;
      } else if (info.annotated_class) {
        t.action_class = *info.annotated_class;
      }  // else destructive, the default: fail closed
      if (const core::Json* schema = info.definition.Find("inputSchema")) t.input_schema = *schema;
      seen.insert(info.name);
      u.tools.push_back(std::move(t));
    }
    for (const auto& [tool, tc] : uc.tools) {
      if (seen.count(tool)) continue;
      u.notes.push_back("the config names tool \"" + tool + "\", which the upstream does not list (a typo in " +
                        "the config?): its arguments are not validated");
      policy::ToolSource t;
      t.name = tool;
      t.action_class = tc.action_class;
      u.tools.push_back(std::move(t));
    }
    out.upstreams.push_back(std::move(u));
  }
  return out;
}

}  // namespace mandate::server
