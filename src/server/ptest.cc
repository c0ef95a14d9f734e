#include "server/ptest.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <iomanip>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "mandate/core/action.h"
#include "mandate/core/clock.h"
#include "mandate/core/decision.h"
#include "mandate/core/error_code.h"
#include "mandate/core/limits.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/claims.h"
#include "mandate/policy/policy_set.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

// 2026-01-05T12:00:00Z, a Monday at noon: inside any business-hours rule unless a case says.
constexpr int64_t kDefaultTimeUnixSeconds = 1767614400;

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  core::Error Err(const YAML::Node& n, const std::string& what) const {
    const YAML::Mark m = n.Mark();
    std::string where = path_;
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    return MakeError(ErrorCode::kBadRequest, where + ": " + what);
  }

  core::Status Keys(const YAML::Node& map, std::initializer_list<std::string_view> allowed, const std::string& where) const {
    if (!map.IsMap()) return Err(map, where + " must be a mapping");
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        return Err(kv.first, "unknown key \"" + key + "\" in " + where + " (expected one of: " + list + ")");
      }
    }
    return core::OkStatus();
  }

  core::Result<std::string> String(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) return Err(n, what + " must be a string");
    return n.Scalar();
  }

  core::Result<std::vector<std::string>> Strings(const YAML::Node& n, const std::string& what) const {
    std::vector<std::string> out;
    if (!n || n.IsNull()) return out;
    if (!n.IsSequence()) return Err(n, what + " must be a list of strings");
    for (const auto& e : n) {
      MANDATE_ASSIGN_OR_RETURN(std::string s, String(e, what + " entries"));
      out.push_back(std::move(s));
    }
    return out;
  }

  // YAML to JSON for `args`: mappings become objects, sequences arrays; a plain scalar that
  // reads as an integer or a boolean becomes one, anything else a string.
  core::Result<Json> ToJson(const YAML::Node& n, size_t depth) const {
    if (depth > core::kJsonDepthMax) return Err(n, "args nest too deeply");
    if (!n || n.IsNull()) return Json();
    if (n.IsMap()) {
      Json o = Json::MakeObject();
      for (const auto& kv : n) {
        MANDATE_ASSIGN_OR_RETURN(Json v, ToJson(kv.second, depth + 1));
        o.Set(kv.first.Scalar(), std::move(v));
      }
      return o;
    }
    if (n.IsSequence()) {
      Json a = Json::MakeArray();
      for (const auto& e : n) {
        MANDATE_ASSIGN_OR_RETURN(Json v, ToJson(e, depth + 1));
        a.Push(std::move(v));
      }
      return a;
    }
    const std::string& s = n.Scalar();
    if (n.Tag() != "!") {  // not quoted
      if (s == "true") return Json(true);
      if (s == "false") return Json(false);
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end == s.c_str() + s.size() && errno == 0) return Json(static_cast<int64_t>(v));
    }
    return Json(s);
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

core::Result<int64_t> ParseTime(const Reader& r, const YAML::Node& n) {
  if (!n.IsScalar()) return r.Err(n, "time must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
  const std::string& s = n.Scalar();
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && end == s.c_str() + s.size() && v >= 0) return static_cast<int64_t>(v);
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail() || in.peek() != std::char_traits<char>::eof()) {
    return r.Err(n, "time must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ, got \"" + s + "\"");
  }
  return static_cast<int64_t>(timegm(&tm));
}

core::Result<core::EntityRef> ParseEntityRef(const Reader& r, const YAML::Node& n) {
  MANDATE_ASSIGN_OR_RETURN(std::string s, r.String(n, "resource"));
  const auto sep = s.find("::\"");
  if (sep == std::string::npos || sep == 0 || s.size() < sep + 4 || s.back() != '"') {
    return r.Err(n, "resource must be Type::\"id\", got \"" + s + "\"");
  }
  std::string id = s.substr(sep + 3, s.size() - sep - 4);
  if (id.find('"') != std::string::npos || id.find('\\') != std::string::npos) {
    return r.Err(n, "resource ids with quotes or backslashes are not supported in .ptest files");
  }
  return core::EntityRef{s.substr(0, sep), std::move(id)};
}

// The sorted, de-duplicated ids of every determining permit and forbid across principals.
std::vector<std::string> Determining(const core::Decision& d) {
  std::set<std::string> ids;
  for (const core::PrincipalCheck& c : d.checks) {
    ids.insert(c.permits.begin(), c.permits.end());
    ids.insert(c.forbids.begin(), c.forbids.end());
  }
  return {ids.begin(), ids.end()};
}

std::string JoinIds(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

}  // namespace

size_t PolicyTestReport::passed() const {
  return static_cast<size_t>(std::count_if(cases.begin(), cases.end(), [](const auto& c) { return c.passed; }));
}

Json PolicyTestReport::ToJson() const {
  Json j = Json::MakeObject();
  j.Set("file", file);
  j.Set("passed", static_cast<int64_t>(passed()));
  j.Set("failed", static_cast<int64_t>(failed()));
  Json arr = Json::MakeArray();
  for (const auto& c : cases) {
    Json cj = Json::MakeObject();
    cj.Set("name", c.name);
    cj.Set("passed", c.passed);
    if (!c.passed) cj.Set("failure", c.failure);
    cj.Set("decision", c.decision);
    arr.Push(std::move(cj));
  }
  j.Set("cases", std::move(arr));
  return j;
}

core::Result<PolicyTestReport> RunPolicyTestFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return MakeError(ErrorCode::kNotFound, path + ": no such file");
  if (std::filesystem::file_size(path, ec) > core::kConfigBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge, path + ": larger than " + std::to_string(core::kConfigBytesMax) + " bytes");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return MakeError(ErrorCode::kNotFound, path + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return RunPolicyTests(ss.str(), path);
}

core::Result<PolicyTestReport> RunPolicyTests(const std::string& text, const std::string& path) {
  if (text.size() > core::kConfigBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge, path + ": larger than " + std::to_string(core::kConfigBytesMax) + " bytes");
  }
  Reader r(path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return MakeError(ErrorCode::kBadRequest, path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                                 std::to_string(e.mark.column + 1) + ": invalid YAML: " + e.msg);
  }
  MANDATE_RETURN_IF_ERROR(r.Keys(root, {"policies", "policies_dir", "humans", "agents", "cases"}, "the top level"));

  // Policies: inline or from a directory, exactly one.
  policy::PolicySet set;
  const YAML::Node inline_policies = root["policies"];
  const YAML::Node dir_node = root["policies_dir"];
  if (static_cast<bool>(inline_policies) == static_cast<bool>(dir_node)) {
    return r.Err(root, "give exactly one of policies (inline Cedar) and policies_dir");
  }
  if (inline_policies) {
    MANDATE_ASSIGN_OR_RETURN(std::string cedar, r.String(inline_policies, "policies"));
    auto parsed = policy::PolicySet::Parse(cedar, path + " (policies)");
    if (!parsed.ok()) return MakeError(ErrorCode::kBadRequest, parsed.error().message);
    set = std::move(parsed).value();
  } else {
    MANDATE_ASSIGN_OR_RETURN(std::string dir, r.String(dir_node, "policies_dir"));
    std::filesystem::path p(dir);
    if (p.is_relative()) p = std::filesystem::path(path).parent_path() / p;
    std::error_code ec;
    if (!std::filesystem::is_directory(p, ec)) return MakeError(ErrorCode::kNotFound, path + ": policies_dir " + p.string() + " is not a directory");
    auto loaded = policy::PolicySet::LoadDir(p.string());
    if (!loaded.ok()) return MakeError(loaded.error().code, loaded.error().message);
    set = std::move(loaded).value();
  }

  gateway::Directory directory;
  for (const char* kind : {"humans", "agents"}) {
    const YAML::Node m = root[kind];
    if (!m || m.IsNull()) continue;
    if (!m.IsMap()) return r.Err(m, std::string(kind) + " must map names to lists of groups");
    for (const auto& kv : m) {
      MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> groups, r.Strings(kv.second, std::string(kind) + "." + kv.first.Scalar()));
      if (std::string_view(kind) == "humans") directory.PutHuman(kv.first.Scalar(), std::move(groups));
      else directory.PutAgent(kv.first.Scalar(), "", std::move(groups));
    }
  }

  gateway::PolicyHolder holder;
  holder.Set(std::make_shared<const policy::PolicySet>(std::move(set)));

  const YAML::Node cases = root["cases"];
  if (!cases || !cases.IsSequence() || cases.size() == 0) return r.Err(root, "cases must be a non-empty list");
  if (cases.size() > core::kPolicyTestCasesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge, path + ": more than " + std::to_string(core::kPolicyTestCasesMax) + " cases");
  }

  PolicyTestReport report;
  report.file = path;
  for (const YAML::Node& c : cases) {
    MANDATE_RETURN_IF_ERROR(r.Keys(c, {"name", "for", "agent", "chain", "action", "class", "resource", "args", "scope",
                                       "task", "time", "expect", "code", "determining"},
                                   "a case"));
    for (const char* required : {"name", "for", "action", "expect"}) {
      if (!c[required]) return r.Err(c, std::string("a case needs \"") + required + "\"");
    }
    PolicyTestCaseResult result;
    MANDATE_ASSIGN_OR_RETURN(result.name, r.String(c["name"], "name"));
    const std::string label = "case \"" + result.name + "\": ";

    std::vector<std::string> chain;
    if (c["chain"] && c["agent"]) return r.Err(c, label + "give agent or chain, not both");
    if (c["chain"]) {
      MANDATE_ASSIGN_OR_RETURN(chain, r.Strings(c["chain"], "chain"));
      std::reverse(chain.begin(), chain.end());  // the pipeline's order: first agent first
    } else if (c["agent"]) {
      MANDATE_ASSIGN_OR_RETURN(std::string a, r.String(c["agent"], "agent"));
      chain.push_back(std::move(a));
    }
    if (chain.empty() || chain.size() > core::kActorChainEntriesMax + 1) {
      return r.Err(c, label + "needs an agent, or a chain of 1 to " + std::to_string(core::kActorChainEntriesMax + 1) + " agents");
    }

    MANDATE_ASSIGN_OR_RETURN(std::string action_id, r.String(c["action"], "action"));
    const auto colon = action_id.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == action_id.size()) {
      return r.Err(c["action"], label + "action must be <upstream>:<tool>");
    }
    core::Action action;
    action.protocol = "mcp";
    action.upstream = action_id.substr(0, colon);
    action.name = action_id.substr(colon + 1);
    action.method = "tools/call";
    action.path = "/mcp/" + action.upstream;
    action.resource = core::EntityRef{"Upstream", action.upstream};
    action.args = Json::MakeObject();
    if (c["class"]) {
      MANDATE_ASSIGN_OR_RETURN(std::string cls, r.String(c["class"], "class"));
      auto parsed = core::ActionClassFromName(cls);
      if (!parsed) return r.Err(c["class"], label + "class must be read, write or destructive");
      action.cls = *parsed;
    }
    if (c["resource"]) {
      MANDATE_ASSIGN_OR_RETURN(action.resource, ParseEntityRef(r, c["resource"]));
    }
    if (c["args"]) {
      MANDATE_ASSIGN_OR_RETURN(action.args, r.ToJson(c["args"], 0));
      if (!action.args.is_object()) return r.Err(c["args"], label + "args must be a mapping");
    }

    auto claims = std::make_shared<identity::Claims>();
    MANDATE_ASSIGN_OR_RETURN(claims->sub, r.String(c["for"], "for"));
    claims->client_id = chain.back();
    claims->sid = "ptest";
    if (c["task"]) {
      MANDATE_ASSIGN_OR_RETURN(claims->task, r.String(c["task"], "task"));
    }
    if (c["scope"]) {
      MANDATE_ASSIGN_OR_RETURN(claims->scope, r.Strings(c["scope"], "scope"));
    }
    if (claims->scope.empty()) claims->scope.push_back("*");

    int64_t now = kDefaultTimeUnixSeconds;
    if (c["time"]) {
      MANDATE_ASSIGN_OR_RETURN(now, ParseTime(r, c["time"]));
    }

    MANDATE_ASSIGN_OR_RETURN(std::string expect, r.String(c["expect"], "expect"));
    if (expect != "allow" && expect != "deny" && expect != "approval_required") {
      return r.Err(c["expect"], label + "expect must be allow, deny or approval_required");
    }

    core::FakeClock clock;
    clock.SetUnixSeconds(now);
    gateway::PipelineDeps deps;
    deps.clock = &clock;
    deps.policies = &holder;
    deps.directory = &directory;
    gateway::Pipeline pipeline(deps);  // Decide touches only the clock, policies and directory
    gateway::Caller caller;
    caller.claims = std::move(claims);
    caller.chain = std::move(chain);
    core::Decision d = pipeline.Decide(caller, action);
    result.decision = d.ToJson();
    result.decision.Erase("id");  // random per run; not part of what a case checks

    std::vector<std::string> problems;
    const std::string got = std::string(core::DecisionKindName(d.kind));
    if (got != expect) problems.push_back("expected " + expect + ", got " + got + " (" + d.reason + ")");
    if (c["code"]) {
      MANDATE_ASSIGN_OR_RETURN(std::string code, r.String(c["code"], "code"));
      const std::string got_code = d.allowed() ? "" : std::string(core::PublicCode(d.code));
      if (code != got_code) problems.push_back("expected code " + code + ", got " + (got_code.empty() ? "none" : got_code));
    }
    if (c["determining"]) {
      MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> want, r.Strings(c["determining"], "determining"));
      std::sort(want.begin(), want.end());
      want.erase(std::unique(want.begin(), want.end()), want.end());
      std::vector<std::string> have = Determining(d);
      if (want != have) problems.push_back("expected determining policies " + JoinIds(want) + ", got " + JoinIds(have));
    }
    result.passed = problems.empty();
    for (const auto& p : problems) result.failure += (result.failure.empty() ? "" : "; ") + p;
    report.cases.push_back(std::move(result));
  }
  return report;
}

}  // namespace mandate::server
