#include "server/audit_export.h"

#include <algorithm>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"

namespace mandate::server {
namespace {

using core::Json;

// Members a span event leaves out: the log's own, and bulky ones the span already carries.
bool SkippedInEvents(const std::string& key) {
  return key == "seq" || key == "ts" || key == "prev" || key == "type" || key == "run" ||
         key == "args" || key == "decision";
}

Json Str(const std::string& s) {
  Json v = Json::MakeObject();
  v.Set("stringValue", s);
  return v;
}

// OTLP/JSON: int64 values are decimal strings.
Json Int(int64_t i) {
  Json v = Json::MakeObject();
  v.Set("intValue", std::to_string(i));
  return v;
}

Json Bool(bool b) {
  Json v = Json::MakeObject();
  v.Set("boolValue", b);
  return v;
}

Json StrArray(const std::vector<std::string>& items) {
  Json values = Json::MakeArray();
  for (const auto& s : items) values.Push(Str(s));
  Json arr = Json::MakeObject();
  arr.Set("values", std::move(values));
  Json v = Json::MakeObject();
  v.Set("arrayValue", std::move(arr));
  return v;
}

// An audit member as an OTLP AnyValue: strings, integers and booleans as themselves, arrays
// of strings as arrays, anything else as its JSON text.
Json AnyValue(const Json& j) {
  if (j.is_string()) return Str(j.as_string());
  if (j.is_int()) return Int(j.as_int());
  if (j.is_bool()) return Bool(j.as_bool());
  if (j.is_array()) {
    std::vector<std::string> items;
    for (const Json& e : j.as_array()) {
      if (!e.is_string()) return Str(j.Dump());
      items.push_back(e.as_string());
    }
    return StrArray(items);
  }
  return Str(j.Dump());
}

std::vector<std::string> Strings(const Json* arr) {
  std::vector<std::string> out;
  if (arr == nullptr || !arr->is_array()) return out;
  for (const Json& e : arr->as_array()) {
    if (e.is_string()) out.push_back(e.as_string());
  }
  return out;
}

uint64_t Nanos(const Json& record) {
  const int64_t ts = record.GetInt("ts", 0);
  return ts > 0 ? static_cast<uint64_t>(ts) * 1000 : 0;
}

}  // namespace

std::string OtlpId(const std::string& text, size_t bytes) {
  core::Sha256Digest d = core::Sha256(text);
  bytes = std::min(bytes, d.size());
  // All zeros is OTLP's "invalid id"; SHA-256 practically never yields it, but never emit it.
  if (std::all_of(d.begin(), d.begin() + static_cast<ptrdiff_t>(bytes),
                  [](uint8_t b) { return b == 0; })) {
    d[bytes - 1] = 1;
  }
  return core::HexEncode(std::string_view(reinterpret_cast<const char*>(d.data()), bytes));
}

void OtlpTraceBuilder::SetAttribute(Span* span, const std::string& key, Json any_value) {
  for (auto& [k, v] : span->attributes) {
    if (k == key) {
      v = std::move(any_value);
      return;
    }
  }
  span->attributes.emplace_back(key, std::move(any_value));
}

void OtlpTraceBuilder::AddEvent(Span* span, const Json& record, uint64_t at_nanos) {
  Json attrs = Json::MakeArray();
  for (const auto& [key, value] : record.as_object()) {
    if (SkippedInEvents(key) || value.is_null()) continue;
    Json kv = Json::MakeObject();
    kv.Set("key", "mandate." + key);
    kv.Set("value", AnyValue(value));
    attrs.Push(std::move(kv));
  }
  Json e = Json::MakeObject();
  e.Set("timeUnixNano", std::to_string(at_nanos));
  e.Set("name", record.GetString("type", "audit.record"));
  if (!attrs.as_array().empty()) e.Set("attributes", std::move(attrs));
  span->events.Push(std::move(e));
  span->end_nanos = std::max(span->end_nanos, at_nanos);
}

OtlpTraceBuilder::Span* OtlpTraceBuilder::SessionSpan(const Json& record, const std::string& run,
                                                      const std::string& sid, uint64_t at_nanos) {
  auto it = sessions_.find(sid);
  if (it != sessions_.end()) return &spans_[it->second];
  // First seen: normally its session.started / session.delegated record; otherwise (a
  // filtered or truncated export) the first record that names it.
  Span s;
  s.trace_id = OtlpId(run, 16);
  s.span_id = OtlpId(sid, 8);
  s.kind = 1;  // SPAN_KIND_INTERNAL
  s.start_nanos = at_nanos;
  s.end_nanos = at_nanos;
  s.root_session = sid == run;
  s.parent_sid = record.GetString("parent_sid");
  if (s.parent_sid.empty() && !s.root_session) s.parent_sid = run;  // best known ancestor
  if (!s.parent_sid.empty()) s.parent_span_id = OtlpId(s.parent_sid, 8);
  const std::string agent = record.GetString("agent");
  s.name = "session " + (agent.empty() ? sid : agent);
  SetAttribute(&s, "mandate.run", Str(run));
  SetAttribute(&s, "mandate.sid", Str(sid));
  if (!s.parent_sid.empty()) SetAttribute(&s, "mandate.parent_sid", Str(s.parent_sid));
  for (const char* key : {"agent", "human", "task"}) {
    if (const std::string* v = record.FindString(key))
      SetAttribute(&s, std::string("mandate.") + key, Str(*v));
  }
  sessions_.emplace(sid, spans_.size());
  spans_.push_back(std::move(s));
  return &spans_.back();
}

OtlpTraceBuilder::Span* OtlpTraceBuilder::CallSpan(const Json& record, const std::string& run,
                                                   const std::string& decision_id,
                                                   uint64_t at_nanos) {
  auto it = calls_.find(decision_id);
  if (it != calls_.end()) return &spans_[it->second];
  Span s;
  s.trace_id = OtlpId(run, 16);
  s.span_id = OtlpId(decision_id, 8);
  const std::string sid = record.GetString("sid");
  if (!sid.empty()) s.parent_span_id = OtlpId(sid, 8);
  s.kind = 2;  // SPAN_KIND_SERVER: the gateway serving the agent's call
  s.start_nanos = at_nanos;
  s.end_nanos = at_nanos;
  const std::string action = record.GetString("action");
  s.name = "call " + (action.empty() ? decision_id : action);
  SetAttribute(&s, "mandate.run", Str(run));
  SetAttribute(&s, "mandate.decision_id", Str(decision_id));
  for (const char* key : {"sid", "agent", "human", "task", "action", "protocol", "resource"}) {
    if (const std::string* v = record.FindString(key))
      SetAttribute(&s, std::string("mandate.") + key, Str(*v));
  }
  if (const Json* chain = record.FindArray("chain"))
    SetAttribute(&s, "mandate.chain", StrArray(Strings(chain)));
  calls_.emplace(decision_id, spans_.size());
  spans_.push_back(std::move(s));
  return &spans_.back();
}

void OtlpTraceBuilder::Add(const Json& record) {
  if (!record.is_object()) return;
  const std::string* run_p = record.FindString("run");
  if (run_p == nullptr || run_p->empty()) return;
  const std::string run = *run_p;
  const std::string type = record.GetString("type");
  const std::string sid = record.GetString("sid");
  const std::string decision_id = record.GetString("decision_id");
  const uint64_t at = Nanos(record);

  Span* session = nullptr;
  if (!sid.empty()) {
    session = SessionSpan(record, run, sid, at);
    if (type == "session.started" || type == "session.delegated") {
      // Its own opening record: the authoritative start and attributes.
      session->start_nanos = std::min(session->start_nanos, at);
      if (const Json* depth = record.Find("depth"); depth != nullptr && depth->is_int()) {
        SetAttribute(session, "mandate.depth", Int(depth->as_int()));
      } else if (type == "session.started") {
        SetAttribute(session, "mandate.depth", Int(0));
      }
      if (const Json* chain = record.FindArray("chain"))
        SetAttribute(session, "mandate.chain", StrArray(Strings(chain)));
      if (const Json* scope = record.FindArray("scope"))
        SetAttribute(session, "mandate.scope", StrArray(Strings(scope)));
    }
    session->end_nanos = std::max(session->end_nanos, at);
  }

  if (type == "call.decided" || type == "call.completed" || type == "call.cancelled") {
    if (decision_id.empty()) {
      if (session != nullptr) AddEvent(session, record, at);
      return;
    }
    uint64_t start = at;
    if (type != "call.decided") {
      // Without its call.decided (not read), the call began latency_micros earlier.
      const int64_t latency = record.GetInt("latency_micros", 0);
      if (latency > 0 && static_cast<uint64_t>(latency) * 1000 < at)
        start = at - static_cast<uint64_t>(latency) * 1000;
    }
    Span* call = CallSpan(record, run, decision_id, start);
    if (type == "call.decided") {
      if (const Json* d = record.FindObject("decision")) {
        const std::string decision = d->GetString("decision");
        SetAttribute(call, "mandate.decision", Str(decision));
        if (const std::string* code = d->FindString("code"))
          SetAttribute(call, "mandate.decision_code", Str(*code));
        if (const std::string* reason = d->FindString("reason"))
          SetAttribute(call, "mandate.reason", Str(*reason));
        std::vector<std::string> policies;
        if (const Json* checks = d->FindArray("checks")) {
          for (const Json& c : checks->as_array()) {
            for (const char* k : {"forbids", "permits"}) {
              for (auto& p : Strings(c.FindArray(k))) {
                if (std::find(policies.begin(), policies.end(), p) == policies.end())
                  policies.push_back(p);
              }
            }
          }
        }
        if (!policies.empty()) SetAttribute(call, "mandate.policies", StrArray(policies));
        if (decision != "allow") {
          call->status_code = 2;
          call->status_message = d->GetString("code", decision) + ": " + d->GetString("reason");
        }
      }
      if (const std::string* h = record.FindString("args_hash"))
        SetAttribute(call, "mandate.args_hash", Str(*h));
    } else if (type == "call.completed") {
      const std::string status = record.GetString("status");
      SetAttribute(call, "mandate.status", Str(status));
      if (const Json* l = record.Find("latency_micros"); l != nullptr && l->is_int()) {
        SetAttribute(call, "mandate.latency_micros", Int(l->as_int()));
      }
      if (const std::string* h = record.FindString("result_hash"))
        SetAttribute(call, "mandate.result_hash", Str(*h));
      if (const std::string* e = record.FindString("error"))
        SetAttribute(call, "mandate.error", Str(*e));
      if (const Json* fx = record.Find("side_effects"); fx != nullptr && !fx->is_null()) {
        SetAttribute(call, "mandate.side_effects", AnyValue(*fx));
      }
      if (status == "ok") {
        call->status_code = 1;
        call->status_message.clear();
      } else {
        call->status_code = 2;
        call->status_message =
            status + (record.FindString("message") ? ": " + record.GetString("message") : "");
      }
    } else {  // call.cancelled
      SetAttribute(call, "mandate.status", Str("cancelled"));
      call->status_code = 2;
      call->status_message = "cancelled: " + record.GetString("reason");
    }
    call->end_nanos = std::max(call->end_nanos, at);
    return;
  }

  if (type == "session.started" || type == "session.delegated") return;
  if (type == "session.revoked") {
    // Every session the revocation reached gets the event.
    bool any = false;
    for (const std::string& s : Strings(record.FindArray("sessions"))) {
      auto it = sessions_.find(s);
      if (it == sessions_.end()) continue;
      AddEvent(&spans_[it->second], record, at);
      any = true;
    }
    if (any) return;
  }
  if (!decision_id.empty()) {
    if (auto it = calls_.find(decision_id); it != calls_.end()) {
      AddEvent(&spans_[it->second], record, at);
      return;
    }
  }
  if (session != nullptr) {
    AddEvent(session, record, at);
    return;
  }
  // A run-level record without a session (rare): on the root session's span when known.
  if (auto it = sessions_.find(run); it != sessions_.end())
    AddEvent(&spans_[it->second], record, at);
}

core::Json OtlpTraceBuilder::Build() const {
  // A session lasts as long as anything under it: children were created after their parents,
  // so one pass from the newest span back carries every end up the tree.
  std::vector<uint64_t> ends(spans_.size());
  for (size_t i = 0; i < spans_.size(); ++i) ends[i] = spans_[i].end_nanos;
  for (size_t i = spans_.size(); i-- > 0;) {
    const Span& s = spans_[i];
    if (s.kind != 1 || s.parent_sid.empty()) continue;
    auto it = sessions_.find(s.parent_sid);
    if (it != sessions_.end() && it->second < i)
      ends[it->second] = std::max(ends[it->second], ends[i]);
  }
  Json spans = Json::MakeArray();
  for (size_t i = 0; i < spans_.size(); ++i) {
    const Span& s = spans_[i];
    Json j = Json::MakeObject();
    j.Set("traceId", s.trace_id);
    j.Set("spanId", s.span_id);
    if (!s.parent_span_id.empty()) j.Set("parentSpanId", s.parent_span_id);
    j.Set("name", s.name);
    j.Set("kind", s.kind);
    j.Set("startTimeUnixNano", std::to_string(s.start_nanos));
    j.Set("endTimeUnixNano", std::to_string(std::max(ends[i], s.start_nanos)));
    Json attrs = Json::MakeArray();
    for (const auto& [k, v] : s.attributes) {
      Json kv = Json::MakeObject();
      kv.Set("key", k);
      kv.Set("value", v);
      attrs.Push(std::move(kv));
    }
    if (truncated_ && s.root_session) {
      Json kv = Json::MakeObject();
      kv.Set("key", "mandate.truncated");
      kv.Set("value", Bool(true));
      attrs.Push(std::move(kv));
    }
    if (!attrs.as_array().empty()) j.Set("attributes", std::move(attrs));
    if (!s.events.as_array().empty()) j.Set("events", s.events);
    if (s.status_code != 0) {
      Json st = Json::MakeObject();
      if (!s.status_message.empty()) st.Set("message", s.status_message);
      st.Set("code", s.status_code);
      j.Set("status", std::move(st));
    }
    spans.Push(std::move(j));
  }
  Json scope = Json::MakeObject();
  scope.Set("name", "mandate.audit");
  Json scope_spans = Json::MakeObject();
  scope_spans.Set("scope", std::move(scope));
  scope_spans.Set("spans", std::move(spans));
  Json scope_list = Json::MakeArray();
  scope_list.Push(std::move(scope_spans));

  Json service = Json::MakeObject();
  service.Set("key", "service.name");
  service.Set("value", Str("mandate"));
  Json resource_attrs = Json::MakeArray();
  resource_attrs.Push(std::move(service));
  Json resource = Json::MakeObject();
  resource.Set("attributes", std::move(resource_attrs));
  Json rs = Json::MakeObject();
  rs.Set("resource", std::move(resource));
  rs.Set("scopeSpans", std::move(scope_list));
  Json rs_list = Json::MakeArray();
  rs_list.Push(std::move(rs));
  Json out = Json::MakeObject();
  out.Set("resourceSpans", std::move(rs_list));
  return out;
}

}  // namespace mandate::server
