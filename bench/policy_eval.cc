// Cedar authorization: Mandate's engine against the Cedar reference implementation
// (@cedar-policy/cedar-wasm, pinned in tests/e2e/package.json), with the same policies, entities
// and requests, in the same run (docs/performance.md, "Policy evaluation against cedar-wasm").
//
//   mandate_policy_bench [--sizes 10,100,1000,10000] [--requests N] [--seconds S]
//                        [--peer-seconds S] [--node PATH] [--peer PATH] [--dir DIR] [--seed N]
//
// For each policy-set size it generates a workload shaped like an agent deployment (below), then
//   - Mandate "decide": policy::IsAuthorized over a prebuilt entity store;
//   - Mandate "store+decide": the entity store built from the request's entities, then
//     IsAuthorized: what a gateway does per call, and what the reference's API does per call;
//   - cedar-wasm (bench/policy_peer.mjs, one node process per size): the policy set preparsed
//     once (preparsePolicySet), one statefulIsAuthorized per decision, which converts that
//     request's entities and context and evaluates;
// each with a latency pass (every decision timed on its own: p50/p99) and a throughput pass
// (untimed decisions, one thread: decisions per second per core), each bounded by --seconds
// (--peer-seconds for the reference). Both sides' answers (decision, determining policies,
// number of errors) must agree on every request the reference answered (its whole first round,
// at least 32), else the run fails (exit 1) naming the first difference and keeping the files.
// Then verdicts against issue 3's targets: >= 10x the reference's throughput at every size
// (store+decide against the reference), p99 <= 10 us at 1,000 policies, and cost growing <= 2x
// from 100 to 10,000 policies (mean ns/decision of "decide").
//
// The workload. Policies of a deployment where most of them do not apply to a given call:
//   - a few generic policies (at most 6, scope on `is`, action groups or nothing: they apply to
//     many calls), e.g. forbid destructive actions on prod;
//   - per-group permits (at most 16): `principal in Group::"team-g"`, read actions;
//   - the rest agent-specific, four per agent: `principal == Agent::"agent-a"` with an upstream
//     permit, a per-tool permit with a `like` on a repo argument, a forbid of destructive
//     actions unless in dev, and a business-hours permit with an attribute of the agent.
// 8 upstreams of 12 tools each (classes read, write, destructive); 16 groups. A request is a
// random agent calling a random tool with random arguments (amount, env, repo), session
// (task, depth) and time; its entities: the agent (tier attribute, its group), the group, the
// action and its two parent actions, the upstream.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "mandate/core/json.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"

namespace {

namespace policy = mandate::policy;
using Clock = mandate::bench::Clock;
using mandate::bench::Grouped;
using mandate::bench::Percentile;
using mandate::bench::SecondsSince;
using mandate::bench::SplitMix64;
using mandate::core::Json;
using policy::EntityUid;
using policy::Value;

// Limits: every run is bounded in time and count, and so is what it keeps in memory.
constexpr int64_t kSizeMin = 1;
constexpr int64_t kSizeMax = 100'000;  // core::kPoliciesMax
constexpr size_t kSizeCountsMax = 8;
constexpr int64_t kRequestsMax = 100'000;
constexpr double kSecondsMax = 60;
constexpr size_t kLatencySamplesMax = 4'000'000;  // 8 bytes each
constexpr int kThroughputBatch = 64;              // decisions per clock read
constexpr size_t kPeerOutputBytesMax = 64 * 1024 * 1024;
// The reference answers at least this many requests (all of them when there are fewer; its
// latency pass answers as many as it decides in its first round, policy_peer.mjs).
constexpr size_t kAnswersCheckedMin = 32;

// The workload's shape (see the header comment).
constexpr int kUpstreams = 8;
constexpr int kToolsPerUpstream = 12;
constexpr int kGroups = 16;
constexpr int kGenericPoliciesMax = 6;
constexpr int kGroupPoliciesMax = kGroups;
constexpr int kPoliciesPerAgent = 4;
constexpr size_t kPoliciesPerFile = 2'000;

// The targets of issue 3.
constexpr double kRatioMin = 10;
constexpr double kP99MaxNanos = 10'000;
constexpr int64_t kP99AtPolicies = 1'000;
constexpr double kGrowthMax = 2;
constexpr int64_t kGrowthFrom = 100;
constexpr int64_t kGrowthTo = 10'000;

struct Options {
  std::vector<int64_t> sizes = {10, 100, 1'000, 10'000};
  int64_t requests = 512;
  double seconds = 1;
  double peer_seconds = 2;
  std::string node = "node";
  std::string peer = MANDATE_SOURCE_DIR "/bench/policy_peer.mjs";
  std::string dir;
  uint64_t seed = 1;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "mandate_policy_bench: %s\n", why.c_str());
  std::fprintf(stderr,
               "usage: mandate_policy_bench [--sizes 10,100,1000,10000] [--requests N]\n"
               "                            [--seconds S] [--peer-seconds S] [--node PATH]\n"
               "                            [--peer PATH] [--dir DIR] [--seed N]\n");
  std::exit(2);
}

double ParseNumber(const std::string& flag, const char* v, double lo, double hi) {
  return mandate::bench::ParseNumber(flag, v, lo, hi, Usage);
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--sizes") {
      o.sizes = mandate::bench::ParseList(a, v, kSizeMin, kSizeMax, kSizeCountsMax, Usage);
    } else if (a == "--requests") {
      o.requests = static_cast<int64_t>(ParseNumber(a, v, 1, kRequestsMax));
    } else if (a == "--seconds") {
      o.seconds = ParseNumber(a, v, 0.01, kSecondsMax);
    } else if (a == "--peer-seconds") {
      o.peer_seconds = ParseNumber(a, v, 0.01, kSecondsMax);
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(ParseNumber(a, v, 0, 4294967295.0));
    } else if (a == "--node" || a == "--peer" || a == "--dir") {
      if (v == nullptr) Usage(a + " needs a value");
      (a == "--node" ? o.node : a == "--peer" ? o.peer : o.dir) = v;
    } else {
      Usage("unknown argument " + a);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The workload

struct BenchEntity {
  EntityUid uid;
  Value attrs;
  std::vector<EntityUid> parents;
};

struct BenchRequest {
  policy::Request request;
  std::vector<BenchEntity> entities;
  policy::Entities store;  // the entities, prebuilt
};

struct Workload {
  std::vector<std::string> policies;  // Cedar text of each, with its @id("p<index>")
  int agents = 0;
  std::vector<BenchRequest> requests;
};

std::string Agent(int a) { return "agent-" + std::to_string(a); }
std::string Group(int g) { return "team-" + std::to_string(g); }
std::string Upstream(int u) { return "up-" + std::to_string(u); }
std::string Tool(int u, int t) { return Upstream(u) + ":tool-" + std::to_string(t); }
const char* ToolClass(int t) {
  static constexpr const char* kClasses[] = {"read", "write", "destructive"};
  return kClasses[t % 3];
}

std::string GenericPolicy(int k) {
  switch (k % kGenericPoliciesMax) {
    case 0:
      return "forbid (principal, action in Action::\"destructive\", resource)\n"
             "when { context.args has env && context.args.env == \"prod\" };";
    case 1:
      return "forbid (principal is Agent, action, resource) when { context.session.depth > 3 };";
    case 2:
      return "permit (principal, action in Action::\"read\", resource)\n"
             "when { context.session.task like \"T-*\" && context.args.amount < 100 };";
    case 3:
      return "forbid (principal, action, resource in Upstream::\"up-0\")\n"
             "when { context.time.hour_utc < 6 };";
    case 4:
      return "permit (principal is Agent, action in Action::\"write\", resource)\n"
             "when { principal.tier == 1 && context.args.amount < 50 };";
    default:
      return "forbid (principal, action, resource)\n"
             "when { context.args has repo && context.args.repo like \"*/secrets\" };";
  }
}

std::string AgentPolicy(int a, int variant, uint64_t r) {
  const int u = static_cast<int>(r % kUpstreams);
  const int t = static_cast<int>((r >> 8) % kToolsPerUpstream);
  const std::string agent = "Agent::\"" + Agent(a) + "\"";
  switch (variant) {
    case 0:
      return "permit (principal == " + agent + ", action in Action::\"" + Upstream(u) +
             "\", resource in Upstream::\"" + Upstream(u) + "\")\nwhen { context.args.amount <= " +
             std::to_string((r >> 16) % 2000) + " && context.session.task like \"T-*\" };";
    case 1:
      return "permit (principal == " + agent + ", action == Action::\"" + Tool(u, t) +
             "\", resource)\nwhen { context.args has repo && context.args.repo like \"org-" +
             std::to_string((r >> 16) % 4) + "/*\" };";
    case 2:
      return "forbid (principal == " + agent +
             ", action in Action::\"destructive\", resource)\n"
             "unless { context.args.env == \"dev\" };";
    default:
      return "permit (principal == " + agent +
             ", action in [Action::\"read\", Action::\"write\"], resource in Upstream::\"" +
             Upstream(u) +
             "\")\nwhen { context.time.hour_utc >= 8 && context.time.hour_utc < 18 && "
             "principal.tier <= 2 };";
  }
}

Workload Generate(int64_t size, int64_t request_count, uint64_t seed) {
  Workload w;
  uint64_t state = seed * 0x100000001B3ULL + static_cast<uint64_t>(size);
  auto next = [&state] { return SplitMix64(state++); };
  const int generic = static_cast<int>(std::min<int64_t>(kGenericPoliciesMax, size / 10));
  const int groups = static_cast<int>(std::min<int64_t>(kGroupPoliciesMax, size / 10));
  const int64_t per_agent = size - generic - groups;
  w.agents = static_cast<int>(std::max<int64_t>(1, per_agent / kPoliciesPerAgent));
  auto add = [&](const std::string& text) {
    w.policies.push_back("@id(\"p" + std::to_string(w.policies.size()) + "\")\n" + text + "\n");
  };
  for (int k = 0; k < generic; ++k) add(GenericPolicy(k));
  for (int g = 0; g < groups; ++g) {
    add("permit (principal in Group::\"" + Group(g) +
        "\", action in Action::\"read\", resource) when { context.session.depth <= 2 };");
  }
  for (int64_t k = 0; k < per_agent; ++k) {
    add(AgentPolicy(static_cast<int>(k % w.agents), static_cast<int>((k / w.agents) % 4), next()));
  }

  for (int64_t i = 0; i < request_count; ++i) {
    const uint64_t r = next();
    const int a = static_cast<int>(r % static_cast<uint64_t>(w.agents));
    const int g = a % kGroups;
    const int u = static_cast<int>((r >> 20) % kUpstreams);
    const int t = static_cast<int>((r >> 24) % kToolsPerUpstream);
    const uint64_t r2 = next();
    BenchRequest req;
    req.request.principal = {"Agent", Agent(a)};
    req.request.action = {"Action", Tool(u, t)};
    req.request.resource = {"Upstream", Upstream(u)};
    std::string repo = "org-" + std::to_string(r2 % 5) + "/" +
                       ((r2 >> 8) % 10 == 0 ? "secrets" : "repo-" + std::to_string((r2 >> 12) % 50));
    Value::RecordFields args = {
        {"amount", Value::Long(static_cast<int64_t>((r2 >> 20) % 2000))},
        {"env", Value::String((r2 >> 32) % 3 == 0 ? "prod" : "dev")},
        {"repo", Value::String(std::move(repo))},
    };
    Value::RecordFields session = {
        {"id", Value::String("ses_" + std::to_string(i))},
        {"task", Value::String((r2 >> 36) % 8 == 0 ? "ADHOC" : "T-" + std::to_string(i % 97))},
        {"depth", Value::Long(1 + static_cast<int64_t>((r2 >> 40) % 4))},
    };
    const int64_t hour = static_cast<int64_t>((r2 >> 44) % 24);
    Value::RecordFields time = {
        {"hour_utc", Value::Long(hour)},
        {"unix", Value::Long(1'767'000'000 + static_cast<int64_t>(i) * 37)},
        {"weekday", Value::Long(1 + static_cast<int64_t>((r2 >> 50) % 7))},
    };
    req.request.context = Value::Record({{"args", Value::Record(std::move(args))},
                                         {"session", Value::Record(std::move(session))},
                                         {"time", Value::Record(std::move(time))}});
    req.entities = {
        {req.request.principal, Value::Record({{"tier", Value::Long(1 + a % 3)}}),
         {{"Group", Group(g)}}},
        {{"Group", Group(g)}, Value(), {}},
        {req.request.action, Value(), {{"Action", Upstream(u)}, {"Action", ToolClass(t)}}},
        {{"Action", Upstream(u)}, Value(), {}},
        {{"Action", ToolClass(t)}, Value(), {}},
        {req.request.resource, Value(), {}},
    };
    for (const BenchEntity& e : req.entities) {
      mandate::core::Status s = req.store.Add(e.uid, e.attrs, e.parents);
      if (!s.ok()) {
        std::fprintf(stderr, "mandate_policy_bench: entity store: %s\n", s.error().message.c_str());
        std::exit(1);
      }
    }
    w.requests.push_back(std::move(req));
  }
  return w;
}

Json UidJson(const EntityUid& uid) {
  Json j = Json::MakeObject();
  j.Set("type", uid.type);
  j.Set("id", uid.id);
  return j;
}

// The policies in the peer's input format (policy_peer.mjs): {"p0": "<text>", ...}, so that the
// reference names each policy by the same id as its @id annotation gives it in Mandate.
std::string PoliciesJson(const Workload& w) {
  Json all = Json::MakeObject();
  for (size_t i = 0; i < w.policies.size(); ++i) all.Set("p" + std::to_string(i), w.policies[i]);
  return all.Dump();
}

// Mandate's policy set: the policies in files of kPoliciesPerFile each (a file is at most
// core::kPolicyFileBytesMax), merged as PolicySet::LoadDir does.
mandate::core::Result<policy::PolicySet> ParsePolicies(const Workload& w) {
  policy::PolicySet set;
  for (size_t first = 0; first < w.policies.size(); first += kPoliciesPerFile) {
    std::string text;
    for (size_t i = first; i < std::min(w.policies.size(), first + kPoliciesPerFile); ++i) {
      text += w.policies[i];
    }
    MANDATE_ASSIGN_OR_RETURN(policy::PolicySet file,
                             policy::PolicySet::Parse(text, "bench-" + std::to_string(first) + ".cedar"));
    MANDATE_RETURN_IF_ERROR(set.Merge(std::move(file)));
  }
  return set;
}

// The requests in the peer's input format (policy_peer.mjs).
std::string RequestsJson(const Workload& w) {
  Json all = Json::MakeArray();
  for (const BenchRequest& r : w.requests) {
    Json j = Json::MakeObject();
    j.Set("principal", UidJson(r.request.principal));
    j.Set("action", UidJson(r.request.action));
    j.Set("resource", UidJson(r.request.resource));
    j.Set("context", policy::ValueToJson(r.request.context));
    Json entities = Json::MakeArray();
    for (const BenchEntity& e : r.entities) {
      Json ej = Json::MakeObject();
      ej.Set("uid", UidJson(e.uid));
      ej.Set("attrs", policy::ValueToJson(e.attrs));
      Json parents = Json::MakeArray();
      for (const EntityUid& p : e.parents) parents.Push(UidJson(p));
      ej.Set("parents", std::move(parents));
      entities.Push(std::move(ej));
    }
    j.Set("entities", std::move(entities));
    all.Push(std::move(j));
  }
  return all.Dump();
}

// ---------------------------------------------------------------------------------------------
// Measuring

struct Answer {
  bool allow = false;
  std::vector<std::string> reasons;  // sorted
  size_t errors = 0;
};

struct SideResult {
  std::vector<Answer> answers;  // one per request
  double p50_nanos = NAN;
  double p99_nanos = NAN;
  size_t samples = 0;
  double decisions_per_second = NAN;
  double MeanNanos() const { return 1e9 / decisions_per_second; }
};

Answer ToAnswer(const policy::Response& r) {
  Answer a;
  a.allow = r.allow;
  a.reasons = r.allow ? r.permits : r.forbids;
  std::sort(a.reasons.begin(), a.reasons.end());
  a.errors = r.errors.size();
  return a;
}

// Decides request `r` the way `build_store` says: over its prebuilt store, or over a store built
// from its entities first. Returns whether it allowed (so the work cannot be optimized away).
policy::Response Decide(const policy::PolicySet& set, const BenchRequest& r, bool build_store) {
  if (!build_store) return policy::IsAuthorized(set, r.request, r.store);
  policy::Entities store;
  for (const BenchEntity& e : r.entities) {
    if (!store.Add(e.uid, e.attrs, e.parents).ok()) std::abort();  // the prebuilt store took them
  }
  return policy::IsAuthorized(set, r.request, store);
}

SideResult MeasureMandate(const policy::PolicySet& set, const Workload& w, bool build_store,
                          double seconds) {
  SideResult out;
  const size_t n = w.requests.size();
  std::vector<double> samples;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (size_t i = 0;; ++i) {
    const BenchRequest& r = w.requests[i % n];
    const Clock::time_point t0 = Clock::now();
    policy::Response response = Decide(set, r, build_store);
    const Clock::time_point t1 = Clock::now();
    if (samples.size() < kLatencySamplesMax) {
      samples.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    if (i < n) out.answers.push_back(ToAnswer(response));
    if (i + 1 >= n && t1 >= deadline) break;
  }
  std::sort(samples.begin(), samples.end());
  out.samples = samples.size();
  out.p50_nanos = Percentile(samples, 0.50);
  out.p99_nanos = Percentile(samples, 0.99);

  size_t count = 0;
  size_t allowed = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int k = 0; k < kThroughputBatch; ++k, ++count) {
      allowed += Decide(set, w.requests[count % n], build_store).allow ? 1 : 0;
    }
    elapsed = SecondsSince(start);
  }
  if (allowed > count) std::abort();  // keeps `allowed` live
  out.decisions_per_second = static_cast<double>(count) / elapsed;
  return out;
}

// Runs the peer on the files; fills `out` or returns the error.
std::string MeasurePeer(const Options& o, const std::string& policies_file,
                        const std::string& requests_file, SideResult* out,
                        std::string* version) {
  const std::string command = "'" + o.node + "' '" + o.peer + "' --policies '" + policies_file +
                              "' --requests '" + requests_file +
                              "' --seconds " + std::to_string(o.peer_seconds);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen(" + command + "): " + std::strerror(errno);
  std::string text;
  char buf[65536];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0 && text.size() < kPeerOutputBytesMax) {
    text.append(buf, got);
  }
  const int status = ::pclose(pipe);
  if (status != 0) return "the peer (" + command + ") failed with status " + std::to_string(status);
  auto parsed = Json::Parse(text, kPeerOutputBytesMax);
  if (!parsed.ok()) return "the peer's output: " + parsed.error().message;
  const Json& j = *parsed;
  *version = j.GetString("version");
  const Json* decisions = j.FindArray("decisions");
  const Json* latency = j.FindObject("latency_ns");
  const Json* throughput = j.FindObject("throughput");
  if (decisions == nullptr || latency == nullptr || throughput == nullptr) {
    return "the peer's output lacks decisions, latency_ns or throughput";
  }
  for (const Json& d : decisions->as_array()) {
    Answer a;
    const Json* allow = d.Find("allow");
    a.allow = allow != nullptr && allow->is_bool() && allow->as_bool();
    if (const Json* reasons = d.FindArray("reasons")) {
      for (const Json& id : reasons->as_array()) {
        if (id.is_string()) a.reasons.push_back(id.as_string());
      }
    }
    a.errors = static_cast<size_t>(d.GetInt("errors", 0));
    out->answers.push_back(std::move(a));
  }
  auto number = [](const Json* obj, std::string_view key) {
    const Json* v = obj->Find(key);
    return v != nullptr && v->is_number() ? v->as_double() : NAN;
  };
  out->p50_nanos = number(latency, "p50");
  out->p99_nanos = number(latency, "p99");
  out->samples = static_cast<size_t>(latency->GetInt("count", 0));
  out->decisions_per_second = number(throughput, "decisions") / number(throughput, "seconds");
  return {};
}

std::string Describe(const Answer& a) {
  std::string s = a.allow ? "allow" : "deny";
  s += " [";
  for (size_t i = 0; i < a.reasons.size(); ++i) s += (i ? ", " : "") + a.reasons[i];
  return s + "], " + std::to_string(a.errors) + " errors";
}

std::string Micros(double nanos) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", nanos / 1000);
  return buf;
}

struct Row {
  int64_t size = 0;
  int agents = 0;
  size_t allowed = 0;
  size_t checked = 0;  // requests whose answers were compared
  SideResult decide;
  SideResult store_decide;
  SideResult peer;
  double Ratio() const { return store_decide.decisions_per_second / peer.decisions_per_second; }
};

int Run(const Options& o) {
  std::string dir = o.dir;
  bool remove_dir = false;
  if (dir.empty()) {
    char tmpl[] = "/tmp/mandate-policy-bench.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "mandate_policy_bench: mkdtemp: %s\n", std::strerror(errno));
      return 1;
    }
    dir = tmpl;
    remove_dir = true;
  }
  std::printf("== Cedar authorization: Mandate vs cedar-wasm; %zu requests per size, one thread per side,\n"
              "   Mandate %.1f s and cedar-wasm %.1f s per pass (latency pass, then throughput pass)\n",
              static_cast<size_t>(o.requests), o.seconds, o.peer_seconds);
  std::fflush(stdout);
  std::vector<Row> rows;
  std::string peer_version;
  int failed = 0;
  for (int64_t size : o.sizes) {
    Workload w = Generate(size, o.requests, o.seed);
    const std::string policies_file = dir + "/policies-" + std::to_string(size) + ".json";
    const std::string requests_file = dir + "/requests-" + std::to_string(size) + ".json";
    std::ofstream(policies_file) << PoliciesJson(w);
    std::ofstream(requests_file) << RequestsJson(w);
    auto set = ParsePolicies(w);
    if (!set.ok()) {
      std::fprintf(stderr, "mandate_policy_bench: %s\n", set.error().message.c_str());
      return 1;
    }
    Row row;
    row.size = size;
    row.agents = w.agents;
    row.decide = MeasureMandate(*set, w, /*build_store=*/false, o.seconds);
    row.store_decide = MeasureMandate(*set, w, /*build_store=*/true, o.seconds);
    std::string err = MeasurePeer(o, policies_file, requests_file, &row.peer, &peer_version);
    if (!err.empty()) {
      std::fprintf(stderr, "mandate_policy_bench: %s\n", err.c_str());
      return 1;
    }
    if (row.peer.answers.size() < std::min<size_t>(w.requests.size(), kAnswersCheckedMin) ||
        row.peer.answers.size() > w.requests.size()) {
      std::fprintf(stderr, "mandate_policy_bench: the peer answered %zu of %zu requests\n",
                   row.peer.answers.size(), w.requests.size());
      return 1;
    }
    row.checked = row.peer.answers.size();
    for (size_t i = 0; i < w.requests.size(); ++i) {
      row.allowed += row.decide.answers[i].allow ? 1 : 0;
    }
    for (size_t i = 0; i < row.checked; ++i) {
      const Answer& m = row.decide.answers[i];
      const Answer& p = row.peer.answers[i];
      if (m.allow != p.allow || m.reasons != p.reasons || m.errors != p.errors) {
        std::fprintf(stderr,
                     "mandate_policy_bench: DISAGREEMENT at %lld policies, request %zu "
                     "(files in %s): Mandate %s; cedar-wasm %s\n",
                     static_cast<long long>(size), i, dir.c_str(), Describe(m).c_str(),
                     Describe(p).c_str());
        failed = 1;
        remove_dir = false;
        break;
      }
    }
    std::printf("   %6lld policies: Mandate %s/s, store+decide %s/s, cedar-wasm %s/s (%.1fx)\n",
                static_cast<long long>(size), Grouped(row.decide.decisions_per_second).c_str(),
                Grouped(row.store_decide.decisions_per_second).c_str(),
                Grouped(row.peer.decisions_per_second).c_str(), row.Ratio());
    std::fflush(stdout);
    rows.push_back(std::move(row));
  }

  std::printf("\n== Cedar authorization (cedar-wasm %s; %ld CPUs, load average %s)\n",
              peer_version.c_str(), ::sysconf(_SC_NPROCESSORS_ONLN),
              [] {
                std::ifstream f("/proc/loadavg");
                std::string a, b, c;
                f >> a >> b >> c;
                return a + " " + b + " " + c;
              }().c_str());
  std::printf("   %8s %7s %6s | %17s %11s | %17s %11s | %17s %9s | %7s\n", "policies", "agents",
              "allow", "decide p50/p99 us", "dec/s", "store+dec p50/p99", "dec/s",
              "cedar-wasm p50/p99", "dec/s", "ratio");
  for (const Row& r : rows) {
    std::printf("   %8lld %7d %5.0f%% | %8s/%-8s %11s | %8s/%-8s %11s | %8s/%-8s %9s | %6.1fx\n",
                static_cast<long long>(r.size), r.agents,
                100.0 * static_cast<double>(r.allowed) / static_cast<double>(o.requests),
                Micros(r.decide.p50_nanos).c_str(), Micros(r.decide.p99_nanos).c_str(),
                Grouped(r.decide.decisions_per_second).c_str(),
                Micros(r.store_decide.p50_nanos).c_str(), Micros(r.store_decide.p99_nanos).c_str(),
                Grouped(r.store_decide.decisions_per_second).c_str(),
                Micros(r.peer.p50_nanos).c_str(), Micros(r.peer.p99_nanos).c_str(),
                Grouped(r.peer.decisions_per_second).c_str(), r.Ratio());
  }
  std::printf("   (ratio = Mandate store+decide / cedar-wasm decisions per second, one core each;\n"
              "   allow = Mandate's share of allowed requests; the answers of both sides agreed, decision and\n"
              "   determining policies, on the first");
  for (const Row& r : rows) std::printf(" %zu", r.checked);
  std::printf(" requests)\n");

  // Verdicts.
  double worst_ratio = INFINITY;
  for (const Row& r : rows) worst_ratio = std::min(worst_ratio, r.Ratio());
  std::printf("verdict: throughput >= %.0fx cedar-wasm at every size: worst %.1fx: %s\n", kRatioMin,
              worst_ratio, worst_ratio >= kRatioMin ? "MET" : "MISSED");
  const Row* at_p99 = nullptr;
  const Row* from = nullptr;
  const Row* to = nullptr;
  for (const Row& r : rows) {
    if (r.size == kP99AtPolicies) at_p99 = &r;
    if (r.size == kGrowthFrom) from = &r;
    if (r.size == kGrowthTo) to = &r;
  }
  if (at_p99 != nullptr) {
    const double p99 = std::max(at_p99->decide.p99_nanos, at_p99->store_decide.p99_nanos);
    std::printf("verdict: p99 <= %.0f us at %lld policies: %s us: %s\n", kP99MaxNanos / 1000,
                static_cast<long long>(kP99AtPolicies), Micros(p99).c_str(),
                p99 <= kP99MaxNanos ? "MET" : "MISSED");
  }
  if (from != nullptr && to != nullptr) {
    const double growth = to->decide.MeanNanos() / from->decide.MeanNanos();
    std::printf("verdict: cost growth from %lld to %lld policies <= %.0fx: %.2fx (%.0f -> %.0f ns "
                "per decision): %s\n",
                static_cast<long long>(kGrowthFrom), static_cast<long long>(kGrowthTo), kGrowthMax,
                growth, from->decide.MeanNanos(), to->decide.MeanNanos(),
                growth <= kGrowthMax ? "MET" : "MISSED");
  }
  if (remove_dir) std::filesystem::remove_all(dir);
  return failed;
}

}  // namespace

int main(int argc, char** argv) { return Run(ParseOptions(argc, argv)); }
