#include "server/audit_replay.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

namespace mandate::server {
namespace {

using core::Json;

constexpr size_t kArgsSummaryBytes = 120;   // a call's arguments in the timeline
constexpr size_t kValueSummaryBytes = 160;  // any other structured member

// `s` cut to `n` bytes (at a UTF-8 character boundary) with "..." when cut.
std::string Cut(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t at = n - 3;
  while (at > 0 && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return s.substr(0, at) + "...";
}

std::string Join(const Json* arr, const char* sep = ", ") {
  std::string out;
  if (arr == nullptr || !arr->is_array()) return out;
  for (const Json& e : arr->as_array()) {
    if (!out.empty()) out += sep;
    out += e.is_string() ? e.as_string() : e.Dump();
  }
  return out;
}

std::string Latency(int64_t micros) {
  char buf[32];
  if (micros < 1000) {
    std::snprintf(buf, sizeof buf, "%lld us", static_cast<long long>(micros));
  } else if (micros < 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(micros) / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(micros) / 1e6);
  }
  return buf;
}

std::string UnixSecondsTime(int64_t seconds) {
  return FormatAuditTime(seconds * 1000000).substr(0, 19) + "Z";
}

// The members of a record but the log's own ("seq", "ts", "prev"), its type and run, as "k=v"
// (structured values as JSON, cut short).
std::string OtherMembers(const Json& rec) {
  std::string out;
  for (const auto& [key, value] : rec.as_object()) {
    if (key == "seq" || key == "ts" || key == "prev" || key == "type" || key == "run") continue;
    if (value.is_null()) continue;
    if (!out.empty()) out += ", ";
    out +=
        key + "=" + (value.is_string() ? value.as_string() : Cut(value.Dump(), kValueSummaryBytes));
  }
  return out;
}

// "permitted by a, b; forbidden by c" from a decision's checks.
std::string Policies(const Json& decision) {
  std::vector<std::string> permits, forbids;
  auto add = [](std::vector<std::string>* to, const Json* arr) {
    if (arr == nullptr || !arr->is_array()) return;
    for (const Json& p : arr->as_array()) {
      if (p.is_string() && std::find(to->begin(), to->end(), p.as_string()) == to->end())
        to->push_back(p.as_string());
    }
  };
  if (const Json* checks = decision.FindArray("checks")) {
    for (const Json& c : checks->as_array()) {
      add(&permits, c.FindArray("permits"));
      add(&forbids, c.FindArray("forbids"));
    }
  }
  std::string out;
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!forbids.empty()) out += "forbidden by " + list(forbids);
  if (!permits.empty())
    out += std::string(out.empty() ? "" : "; ") + "permitted by " + list(permits);
  return out;
}

std::string Who(const Json& rec) {
  std::string who = rec.GetString("agent");
  const Json* chain = rec.FindArray("chain");
  if (chain != nullptr && chain->as_array().size() > 1)
    who += " (chain " + Join(chain, " > ") + ")";
  const std::string human = rec.GetString("human");
  if (!human.empty()) who += " for " + human;
  return who;
}

// The entry for one record: its lines, the first at the record's time.
std::vector<std::string> Entry(const Json& rec) {
  const std::string type = rec.GetString("type");
  const std::string sid = rec.GetString("sid");
  std::vector<std::string> lines;
  if (type == "session.started" || type == "session.delegated") {
    std::string l = "session " + sid +
                    (type == "session.started"
                         ? " started: " + Who(rec)
                         : " delegated by " + rec.GetString("parent_sid") + " to " + Who(rec));
    if (!rec.GetString("task").empty()) l += ", task " + rec.GetString("task");
    if (const Json* scope = rec.FindArray("scope")) l += ", scope " + Join(scope, " ");
    if (const Json* m = rec.FindObject("model")) {
      l += ", model " + m->GetString("provider") + "/" + m->GetString("name");
      if (!m->GetString("tier").empty()) l += "@" + m->GetString("tier");
    }
    if (const Json* exp = rec.Find("expires_at"); exp != nullptr && exp->is_int()) {
      l += ", expires " + UnixSecondsTime(exp->as_int());
    }
    lines.push_back(l);
  } else if (type == "session.refreshed") {
    std::string l = "session " + sid + " refreshed its token";
    if (const Json* scope = rec.FindArray("scope")) l += ", scope " + Join(scope, " ");
    if (const Json* exp = rec.Find("expires_at"); exp != nullptr && exp->is_int()) {
      l += ", expires " + UnixSecondsTime(exp->as_int());
    }
    lines.push_back(l);
  } else if (type == "session.delegation_refused") {
    lines.push_back("delegation from " + rec.GetString("parent_sid", "?") + " to " +
                    rec.GetString("audience", "?") + " REFUSED: " + rec.GetString("error") + ": " +
                    rec.GetString("reason"));
  } else if (type == "call.decided") {
    std::string l = "call " + rec.GetString("decision_id") + ": " + Who(rec) + " asked " +
                    rec.GetString("action");
    if (const Json* args = rec.Find("args"); args != nullptr && !args->is_null())
      l += " " + Cut(args->Dump(), kArgsSummaryBytes);
    lines.push_back(l);
    if (const Json* d = rec.FindObject("decision")) {
      std::string why = "decided: " + d->GetString("decision");
      if (const std::string* code = d->FindString("code")) why += " (" + *code + ")";
      if (!d->GetString("reason").empty()) why += ": " + d->GetString("reason");
      const std::string policies = Policies(*d);
      if (!policies.empty()) why += "; " + policies;
      lines.push_back(why);
      for (const char* k : {"approval", "budgets", "plan_step"}) {
        const Json* v = d->Find(k);
        if (v == nullptr || v->is_null() || (v->is_array() && v->as_array().empty()) ||
            (v->is_object() && v->as_object().empty())) {
          continue;
        }
        lines.push_back(std::string(k) + ": " +
                        (v->is_string() ? v->as_string() : Cut(v->Dump(), kValueSummaryBytes)));
      }
    }
  } else if (type == "call.completed") {
    std::string l = "call " + rec.GetString("decision_id") + " " + rec.GetString("action") + ": " +
                    rec.GetString("status");
    if (const Json* lat = rec.Find("latency_micros"); lat != nullptr && lat->is_int())
      l += " in " + Latency(lat->as_int());
    if (!rec.GetString("error").empty()) l += ", error " + rec.GetString("error");
    if (!rec.GetString("message").empty()) l += ": " + rec.GetString("message");
    lines.push_back(l);
    if (const Json* fx = rec.Find("side_effects"); fx != nullptr && !fx->is_null()) {
      if (fx->is_array()) {
        for (const Json& e : fx->as_array())
          lines.push_back("side effect: " +
                          (e.is_string() ? e.as_string() : Cut(e.Dump(), kValueSummaryBytes)));
      } else {
        lines.push_back("side effects: " + Cut(fx->Dump(), kValueSummaryBytes));
      }
    }
  } else if (type == "call.cancelled") {
    std::string l =
        "call " + rec.GetString("decision_id") + " " + rec.GetString("action") + ": CANCELLED";
    if (const Json* f = rec.Find("in_flight"); f != nullptr && f->is_bool() && f->as_bool())
      l += " in flight";
    if (const Json* lat = rec.Find("latency_micros"); lat != nullptr && lat->is_int())
      l += " after " + Latency(lat->as_int());
    if (!rec.GetString("reason").empty()) l += ": " + rec.GetString("reason");
    lines.push_back(l);
  } else if (type == "session.revoked") {
    std::string l = "REVOKED " + rec.GetString("kind") + " " + rec.GetString("subject");
    if (!rec.GetString("reason").empty()) l += ": " + rec.GetString("reason");
    if (const Json* s = rec.FindArray("sessions"); s != nullptr && !s->as_array().empty())
      l += "; sessions " + Join(s);
    lines.push_back(l);
  } else {
    // approval.*, plan.*, budget.* and whatever later versions add: every member said.
    const std::string rest = OtherMembers(rec);
    lines.push_back(type + (rest.empty() ? "" : ": " + rest));
  }
  return lines;
}

}  // namespace

std::string FormatAuditTime(int64_t unix_micros) {
  const int64_t seconds =
      unix_micros >= 0 ? unix_micros / 1000000 : (unix_micros - 999999) / 1000000;
  const int64_t millis = (unix_micros - seconds * 1000000) / 1000;
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_micros);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char ms[8];
  std::snprintf(ms, sizeof ms, "%03d", static_cast<int>(millis % 1000));
  return std::string(buf) + "." + ms + "Z";
}

std::string FormatAuditLine(const Json& rec) {
  std::string line = "#" + std::to_string(rec.GetInt("seq", -1));
  if (const Json* ts = rec.Find("ts"); ts != nullptr && ts->is_int())
    line += " " + FormatAuditTime(ts->as_int());
  line += " " + rec.GetString("type");
  const std::string type = rec.GetString("type");
  if (const Json* d = rec.FindObject("decision")) {
    line += " " + rec.GetString("action") + " -> " + d->GetString("decision");
    if (!d->GetString("code").empty()) line += " (" + d->GetString("code") + ")";
    line += " agent=" + rec.GetString("agent") + " human=" + rec.GetString("human");
  } else if (type == "call.completed") {
    line += " " + rec.GetString("action") + " status=" + rec.GetString("status") +
            " latency_us=" + std::to_string(rec.GetInt("latency_micros", 0));
  } else if (type == "call.cancelled") {
    line += " " + rec.GetString("action") + " agent=" + rec.GetString("agent") +
            " reason=" + rec.GetString("reason");
  } else if (!rec.GetString("sid").empty()) {
    line += " sid=" + rec.GetString("sid") + " agent=" + rec.GetString("agent") +
            " human=" + rec.GetString("human");
  } else if (!rec.GetString("subject").empty()) {
    line += " " + rec.GetString("kind") + " " + rec.GetString("subject");
  } else if (type == "policy.loaded") {
    line += " sha256=" + rec.GetString("sha256").substr(0, 12) +
            " policies=" + std::to_string(rec.GetInt("policies", 0));
  } else if (type == "policy.rejected") {
    line += " " + rec.GetString("error");
  }
  return line;
}

std::string FormatReplayTimeline(const std::string& run, const std::vector<Json>& records,
                                 bool truncated) {
  std::string out;
  if (records.empty()) return "run " + run + ": no records\n";
  // Depth of each session: 0 for the root, the delegation's depth for a child.
  std::map<std::string, int64_t> depth;
  const Json* root = nullptr;
  int64_t start = records.front().GetInt("ts", 0);
  int64_t end = start;
  size_t calls = 0, sessions = 0;
  for (const Json& r : records) {
    const std::string type = r.GetString("type");
    const std::string sid = r.GetString("sid");
    if (type == "session.started") {
      depth[sid] = 0;
      if (root == nullptr) root = &r;
      ++sessions;
    } else if (type == "session.delegated") {
      int64_t d = r.GetInt("depth", -1);
      if (d < 0)
        d = depth.count(r.GetString("parent_sid")) ? depth[r.GetString("parent_sid")] + 1 : 1;
      depth[sid] = d;
      ++sessions;
    } else if (type == "call.decided") {
      ++calls;
    }
    start = std::min(start, r.GetInt("ts", start));
    end = std::max(end, r.GetInt("ts", end));
  }
  out += "run " + run;
  if (root != nullptr) {
    out += ": " + Who(*root);
    if (!root->GetString("task").empty()) out += ", task " + root->GetString("task");
  }
  char span[32];
  std::snprintf(span, sizeof span, "%.3f s", static_cast<double>(end - start) / 1e6);
  out += "\n  started " + FormatAuditTime(start) + "; " + std::to_string(sessions) +
         " session(s), " + std::to_string(calls) + " call(s), " + std::to_string(records.size()) +
         " records over " + span + "\n";
  for (const Json& r : records) {
    const std::string sid = r.GetString("sid");
    int64_t d = 0;
    if (auto it = depth.find(sid); it != depth.end()) d = it->second;
    const std::string indent(static_cast<size_t>(std::clamp<int64_t>(d, 0, 32)) * 2, ' ');
    char when[32];
    std::snprintf(when, sizeof when, "+%.3fs",
                  static_cast<double>(r.GetInt("ts", start) - start) / 1e6);
    std::string prefix = std::string(when);
    if (prefix.size() < 10) prefix.insert(0, 10 - prefix.size(), ' ');
    prefix += "  #" + std::to_string(r.GetInt("seq", -1));
    if (prefix.size() < 20) prefix.append(20 - prefix.size(), ' ');
    const std::vector<std::string> lines = Entry(r);
    for (size_t i = 0; i < lines.size(); ++i) {
      out += (i == 0 ? prefix : std::string(prefix.size(), ' ')) + " " + indent +
             (i == 0 ? "" : "  ") + lines[i] + "\n";
    }
  }
  if (truncated) out += "(truncated: the run has more records than one replay reads)\n";
  return out;
}

}  // namespace mandate::server
