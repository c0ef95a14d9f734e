// Budget declarations: parsing of metric, window and scope names, and Validate.
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "mandate/budget/budget.h"
#include "mandate/core/limits.h"

namespace mandate::budget {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr int64_t kMicrosPerMilli = 1000;
constexpr int64_t kMicrosPerSecond = 1000 * kMicrosPerMilli;
constexpr int64_t kMicrosPerDay = 24 * 60 * 60 * kMicrosPerSecond;
constexpr int64_t kWindowMicrosMax = core::kBudgetWindowSecondsMax * kMicrosPerSecond;

struct BuiltinMetric {
  MetricKind kind;
  std::string_view name;
};
constexpr std::array<BuiltinMetric, 5> kBuiltinMetrics = {{
    {MetricKind::kCalls, "calls"},
    {MetricKind::kWrites, "writes"},
    {MetricKind::kInputTokens, "input_tokens"},
    {MetricKind::kOutputTokens, "output_tokens"},
    {MetricKind::kSpendUsdMicros, "spend_usd_micros"},
}};

constexpr std::array<std::string_view, 5> kScopeNames = {"session", "session_tree", "agent",
                                                         "human", "task"};
static_assert(kScopeNames.size() == static_cast<size_t>(Scope::kTask) + 1);

// Names in messages: quoted, and cut so a hostile value cannot flood a log line.
std::string Quoted(std::string_view s) {
  constexpr size_t kShownBytesMax = 80;
  std::string out = "\"";
  out.append(s.substr(0, kShownBytesMax));
  if (s.size() > kShownBytesMax) out.append("...");
  out.push_back('"');
  return out;
}

bool IsCounterName(std::string_view s) {
  if (s.empty() || s.size() > core::kConfigNameBytesMax || s[0] < 'a' || s[0] > 'z') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

core::Error BadWindow(std::string_view text, std::string_view why) {
  return MakeError(ErrorCode::kBadRequest,
                   "invalid budget window " + Quoted(text) + ": " + std::string(why) +
                       " (expected run, 1d for the calendar day in UTC, or a sliding duration "
                       "like 30s, 15m, 1h or 2d)");
}

core::Error BadSpec(const BudgetSpec& spec, const std::string& why) {
  return MakeError(ErrorCode::kBadRequest, "budget " + Quoted(spec.name) + ": " + why);
}

core::Status CheckValues(const BudgetSpec& spec, std::string_view field,
                         const std::vector<std::string>& values) {
  if (values.size() > core::kBudgetMatchValuesMax) {
    return BadSpec(spec, "match." + std::string(field) + " has more than " +
                             std::to_string(core::kBudgetMatchValuesMax) + " values");
  }
  for (const std::string& v : values) {
    if (v.empty()) return BadSpec(spec, "match." + std::string(field) + " has an empty value");
  }
  return core::OkStatus();
}

}  // namespace

core::Result<Metric> ParseMetric(std::string_view text) {
  for (const BuiltinMetric& m : kBuiltinMetrics) {
    if (text == m.name) return Metric{m.kind, std::string(m.name)};
  }
  if (IsCounterName(text)) return Metric{MetricKind::kCustom, std::string(text)};
  return MakeError(ErrorCode::kBadRequest,
                   "invalid budget metric " + Quoted(text) +
                       ": expected calls, writes, input_tokens, output_tokens, "
                       "spend_usd_micros or a custom counter name ([a-z][a-z0-9_]*, at most " +
                       std::to_string(core::kConfigNameBytesMax) + " bytes)");
}

core::Result<Window> ParseWindow(std::string_view text) {
  if (text == "run") return Window{Window::Kind::kRun, 0};
  if (text.empty()) return BadWindow(text, "it is empty");
  if (text[0] == '-') return BadWindow(text, "it must not be negative");
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return BadWindow(text, "expected a number followed by ms, s, m, h or d");
  // 12 digits keep value * kMicrosPerDay far inside int64; anything longer is too long anyway.
  constexpr size_t kDigitsMax = 12;
  if (digits > kDigitsMax) return BadWindow(text, "it is too long");
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) value = value * 10 + (text[i] - '0');
  std::string_view unit = text.substr(digits);
  if (unit.empty()) return BadWindow(text, "it needs a unit: ms, s, m, h or d");
  if (unit[0] == '.') {
    return BadWindow(text, "fractions are not supported; use a smaller unit, like 90m");
  }
  int64_t unit_micros = 0;
  if (unit == "ms") {
    unit_micros = kMicrosPerMilli;
  } else if (unit == "s") {
    unit_micros = kMicrosPerSecond;
  } else if (unit == "m") {
    unit_micros = 60 * kMicrosPerSecond;
  } else if (unit == "h") {
    unit_micros = 60 * 60 * kMicrosPerSecond;
  } else if (unit == "d") {
    unit_micros = kMicrosPerDay;
  } else {
    return BadWindow(text, "unknown unit " + Quoted(unit) + " (expected ms, s, m, h or d)");
  }
  if (unit == "d" && value == 1) return Window{Window::Kind::kCalendarDay, 0};
  int64_t micros = value * unit_micros;
  if (micros < kMicrosPerSecond) return BadWindow(text, "a sliding window is at least 1s");
  if (micros > kWindowMicrosMax) {
    return BadWindow(text, "a sliding window is at most " +
                               std::to_string(core::kBudgetWindowSecondsMax / 86400) + "d");
  }
  return Window{Window::Kind::kSliding, micros};
}

std::string Window::ToString() const {
  switch (kind) {
    case Kind::kRun:
      return "run";
    case Kind::kCalendarDay:
      return "1d";
    case Kind::kSliding:
      break;
  }
  struct Unit {
    int64_t micros;
    const char* name;
  };
  // "1d" would read back as the calendar day, so one sliding day is written as 24h.
  constexpr std::array<Unit, 5> kUnits = {{{kMicrosPerDay, "d"},
                                           {60 * 60 * kMicrosPerSecond, "h"},
                                           {60 * kMicrosPerSecond, "m"},
                                           {kMicrosPerSecond, "s"},
                                           {kMicrosPerMilli, "ms"}}};
  for (const Unit& u : kUnits) {
    if (duration_micros > 0 && duration_micros % u.micros == 0 &&
        !(u.micros == kMicrosPerDay && duration_micros == kMicrosPerDay)) {
      return std::to_string(duration_micros / u.micros) + u.name;
    }
  }
  return std::to_string(duration_micros) + "us";  // not a valid window; Validate refuses it
}

std::string_view ScopeName(Scope scope) {
  size_t i = static_cast<size_t>(scope);
  return i < kScopeNames.size() ? kScopeNames[i] : std::string_view("unknown");
}

core::Result<Scope> ParseScope(std::string_view text) {
  for (size_t i = 0; i < kScopeNames.size(); ++i) {
    if (text == kScopeNames[i]) return static_cast<Scope>(i);
  }
  return MakeError(ErrorCode::kBadRequest,
                   "invalid budget scope " + Quoted(text) +
                       ": expected session, session_tree, agent, human or task");
}

core::Status Validate(const BudgetSpec& spec) {
  if (spec.name.empty()) {
    return MakeError(ErrorCode::kBadRequest, "a budget needs a name");
  }
  if (spec.name.size() > core::kConfigNameBytesMax) {
    return BadSpec(
        spec, "the name is longer than " + std::to_string(core::kConfigNameBytesMax) + " bytes");
  }
  auto metric = ParseMetric(spec.metric.name);
  if (!metric.ok()) return BadSpec(spec, metric.error().message);
  if (metric->kind != spec.metric.kind) {
    return BadSpec(spec, "metric " + Quoted(spec.metric.name) +
                             " does not agree with its kind (build metrics with ParseMetric)");
  }
  if (spec.limit < 0) {
    return BadSpec(spec, "the limit must be >= 0, got " + std::to_string(spec.limit));
  }
  switch (spec.window.kind) {
    case Window::Kind::kRun:
    case Window::Kind::kCalendarDay:
      break;
    case Window::Kind::kSliding:
      if (spec.window.duration_micros < kMicrosPerSecond ||
          spec.window.duration_micros > kWindowMicrosMax ||
          spec.window.duration_micros % kMicrosPerMilli != 0) {
        return BadSpec(spec, "a sliding window is a whole number of milliseconds from 1s to " +
                                 std::to_string(core::kBudgetWindowSecondsMax / 86400) + "d, got " +
                                 std::to_string(spec.window.duration_micros) + "us");
      }
      break;
    default:
      return BadSpec(spec, "unknown window kind");
  }
  if (static_cast<size_t>(spec.scope) >= kScopeNames.size()) {
    return BadSpec(spec, "unknown scope");
  }
  const Match& m = spec.match;
  MANDATE_RETURN_IF_ERROR(CheckValues(spec, "agent", m.agents));
  MANDATE_RETURN_IF_ERROR(CheckValues(spec, "human", m.humans));
  MANDATE_RETURN_IF_ERROR(CheckValues(spec, "upstream", m.upstreams));
  MANDATE_RETURN_IF_ERROR(CheckValues(spec, "action", m.actions));
  for (const std::string& a : m.actions) {
    size_t colon = a.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) {
      return BadSpec(spec,
                     "match.action: expected <upstream>:<tool> or <upstream>:*, got " + Quoted(a));
    }
  }
  if (m.classes.size() > core::kBudgetMatchValuesMax) {
    return BadSpec(spec, "match.class has more than " +
                             std::to_string(core::kBudgetMatchValuesMax) + " values");
  }
  for (core::ActionClass c : m.classes) {
    if (c != core::ActionClass::kRead && c != core::ActionClass::kWrite &&
        c != core::ActionClass::kDestructive) {
      return BadSpec(spec, "match.class has an unknown class");
    }
  }
  return core::OkStatus();
}

}  // namespace mandate::budget
