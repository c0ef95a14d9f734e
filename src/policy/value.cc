#include "mandate/policy/value.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "mandate/core/limits.h"
#include "policy/extensions.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;

// Appends `s` as a Cedar string literal (with quotes).
void AppendCedarString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\0':
        out->append("\\0");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char buf[12];
          std::snprintf(buf, sizeof(buf), "\\u{%x}", static_cast<unsigned>(c));
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendValue(const Value& v, std::string* out) {
  switch (v.kind()) {
    case Value::Kind::kBool:
      out->append(v.as_bool() ? "true" : "false");
      break;
    case Value::Kind::kLong:
      out->append(std::to_string(v.as_long()));
      break;
    case Value::Kind::kString:
      AppendCedarString(v.as_string(), out);
      break;
    case Value::Kind::kEntity:
      out->append(v.as_entity().ToString());
      break;
    case Value::Kind::kSet: {
      out->push_back('[');
      bool first = true;
      for (const Value& e : v.as_set()) {
        if (!first) out->append(", ");
        first = false;
        AppendValue(e, out);
      }
      out->push_back(']');
      break;
    }
    case Value::Kind::kRecord: {
      out->push_back('{');
      bool first = true;
      for (const auto& [k, e] : v.as_record()) {
        if (!first) out->append(", ");
        first = false;
        AppendCedarString(k, out);
        out->append(": ");
        AppendValue(e, out);
      }
      out->push_back('}');
      break;
    }
    case Value::Kind::kExtension: {
      const ExtensionValue& ext = v.as_extension();
      std::optional<std::string> arg = ConstructorArgument(ext);
      if (arg) {
        out->append(ConstructorName(ext.type));
        out->push_back('(');
        AppendCedarString(*arg, out);
        out->push_back(')');
      } else {
        // A datetime outside years 0000-9999 (only `offset` makes one), as the reference
        // writes it.
        out->append("datetime(\"1970-01-01\").offset(duration(\"" +
                    std::to_string(ext.number) + "ms\"))");
      }
      break;
    }
  }
}

// {"__extn": {"fn": fn, "arg": arg}}
core::Json ExtnJson(std::string_view fn, core::Json arg) {
  core::Json call = core::Json::MakeObject();
  call.Set("fn", std::string(fn));
  call.Set("arg", std::move(arg));
  core::Json escape = core::Json::MakeObject();
  escape.Set("__extn", std::move(call));
  return escape;
}

core::Json ExtensionToJson(const ExtensionValue& ext) {
  if (std::optional<std::string> arg = ConstructorArgument(ext)) {
    return ExtnJson(ConstructorName(ext.type), core::Json(*arg));
  }
  core::Json args = core::Json::MakeArray();
  args.Push(ExtnJson("datetime", core::Json(std::string("1970-01-01"))));
  args.Push(ExtnJson("duration", core::Json(std::to_string(ext.number) + "ms")));
  core::Json call = core::Json::MakeObject();
  call.Set("fn", std::string("offset"));
  call.Set("args", std::move(args));
  core::Json escape = core::Json::MakeObject();
  escape.Set("__extn", std::move(call));
  return escape;
}

template <typename T>
int Cmp3(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

int CompareStrings(std::string_view a, std::string_view b) {
  int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// `escapes`: whether {"__entity": ...} and {"__extn": ...} are Cedar escapes (ValueFromJson) or
// plain records (ValueFromPlainJson).
Result<Value> FromJson(const core::Json& j, size_t depth, bool escapes = true);

// The Cedar JSON extension escape: `escape` is the value of "__extn" (nullptr when the object
// has other members). Its function is applied to its converted arguments.
Result<Value> ExtensionFromJson(const core::Json* escape, size_t depth) {
  auto malformed = [] {
    return MakeError(ErrorCode::kBadRequest,
                     "malformed extension value: expected {\"__extn\": {\"fn\": string, "
                     "\"arg\": value}} or {\"__extn\": {\"fn\": string, \"args\": [...]}}");
  };
  if (escape == nullptr || !escape->is_object() || escape->as_object().size() != 2) {
    return malformed();
  }
  const std::string* fn = escape->FindString("fn");
  const core::Json* arg = escape->Find("arg");
  const core::Json* args = escape->Find("args");
  if (fn == nullptr || (arg == nullptr) == (args == nullptr) ||
      (args != nullptr && !args->is_array())) {
    return malformed();
  }
  const ExtensionFunctionInfo* info = FindExtensionFunction(*fn);
  if (info == nullptr) {
    return MakeError(ErrorCode::kBadRequest, "extension function `" + *fn + "` does not exist");
  }
  std::vector<Value> values;
  if (arg != nullptr) {
    MANDATE_ASSIGN_OR_RETURN(Value v, FromJson(*arg, depth + 2));
    values.push_back(std::move(v));
  } else {
    for (const core::Json& a : args->as_array()) {
      MANDATE_ASSIGN_OR_RETURN(Value v, FromJson(a, depth + 3));
      values.push_back(std::move(v));
    }
  }
  std::vector<const Value*> pointers;
  for (const Value& v : values) pointers.push_back(&v);
  return CallExtensionFunction(info->function, pointers);
}

Result<Value> FromJson(const core::Json& j, size_t depth, bool escapes) {
  if (depth > core::kJsonDepthMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "value nested deeper than " + std::to_string(core::kJsonDepthMax) + " levels");
  }
  switch (j.type()) {
    case core::Json::Type::kNull:
      return MakeError(ErrorCode::kBadRequest, "null is not a Cedar value");
    case core::Json::Type::kDouble:
      return MakeError(ErrorCode::kBadRequest,
                       "floating-point number " + j.Dump() + " is not a Cedar value");
    case core::Json::Type::kBool:
      return Value::Bool(j.as_bool());
    case core::Json::Type::kInt:
      return Value::Long(j.as_int());
    case core::Json::Type::kString:
      return Value::String(j.as_string());
    case core::Json::Type::kArray: {
      std::vector<Value> elements;
      elements.reserve(j.as_array().size());
      for (const core::Json& e : j.as_array()) {
        MANDATE_ASSIGN_OR_RETURN(Value v, FromJson(e, depth + 1, escapes));
        elements.push_back(std::move(v));
      }
      return Value::Set(std::move(elements));
    }
    case core::Json::Type::kObject: {
      const core::Json::Object& obj = j.as_object();
      if (const core::Json* escape = escapes ? j.Find("__entity") : nullptr) {
        const std::string* type = escape->FindString("type");
        const std::string* id = escape->FindString("id");
        if (obj.size() != 1 || !escape->is_object() || escape->as_object().size() != 2 ||
            type == nullptr || id == nullptr) {
          return MakeError(ErrorCode::kBadRequest,
                           "malformed entity reference: expected {\"__entity\": {\"type\": "
                           "string, \"id\": string}}");
        }
        return Value::Entity(EntityUid{*type, *id});
      }
      if (const core::Json* escape = escapes ? j.Find("__extn") : nullptr) {
        return ExtensionFromJson(obj.size() == 1 ? escape : nullptr, depth);
      }
      Value::RecordFields fields;
      for (const auto& [key, member] : obj) {
        MANDATE_ASSIGN_OR_RETURN(Value v, FromJson(member, depth + 1, escapes));
        if (!fields.emplace(key, std::move(v)).second) {
          return MakeError(ErrorCode::kBadRequest, "duplicate record key '" + key + "'");
        }
      }
      return Value::Record(std::move(fields));
    }
  }
  return MakeError(ErrorCode::kInternal, "unknown JSON type");
}

}  // namespace

std::string EntityUid::ToString() const {
  std::string out = type;
  out.append("::");
  AppendCedarString(id, &out);
  return out;
}

size_t EntityUidHash::operator()(const EntityUid& uid) const {
  size_t h = std::hash<std::string_view>()(uid.type);
  // Boost's hash_combine constant; the type and id must not commute.
  h ^= std::hash<std::string_view>()(uid.id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

Value Value::Bool(bool b) {
  Value v;
  v.v_.emplace<static_cast<size_t>(Kind::kBool)>(b);
  return v;
}

Value Value::Long(int64_t i) {
  Value v;
  v.v_.emplace<static_cast<size_t>(Kind::kLong)>(i);
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.v_.emplace<static_cast<size_t>(Kind::kString)>(std::move(s));
  return v;
}

Value Value::Entity(EntityUid uid) {
  Value v;
  v.v_.emplace<static_cast<size_t>(Kind::kEntity)>(std::move(uid));
  return v;
}

Value Value::Set(std::vector<Value> elements) {
  std::sort(elements.begin(), elements.end(),
            [](const Value& a, const Value& b) { return Compare(a, b) < 0; });
  elements.erase(std::unique(elements.begin(), elements.end(),
                             [](const Value& a, const Value& b) { return Compare(a, b) == 0; }),
                 elements.end());
  Value v;
  if (elements.empty()) {
    v.v_.emplace<static_cast<size_t>(Kind::kSet)>(nullptr);
  } else {
    v.v_.emplace<static_cast<size_t>(Kind::kSet)>(
        std::make_shared<const SetElements>(std::move(elements)));
  }
  return v;
}

Value Value::Extension(ExtensionValue ext) {
  Value v;
  v.v_.emplace<static_cast<size_t>(Kind::kExtension)>(ext);
  return v;
}

Value Value::Record(RecordFields fields) {
  Value v;
  if (!fields.empty()) {
    v.v_.emplace<static_cast<size_t>(Kind::kRecord)>(
        std::make_shared<const RecordFields>(std::move(fields)));
  }
  return v;
}

Value::Kind Value::kind() const { return static_cast<Kind>(v_.index()); }

bool Value::as_bool() const { return std::get<static_cast<size_t>(Kind::kBool)>(v_); }
int64_t Value::as_long() const { return std::get<static_cast<size_t>(Kind::kLong)>(v_); }
const std::string& Value::as_string() const {
  return std::get<static_cast<size_t>(Kind::kString)>(v_);
}
const EntityUid& Value::as_entity() const {
  return std::get<static_cast<size_t>(Kind::kEntity)>(v_);
}

const Value::SetElements& Value::as_set() const {
  static const SetElements kEmpty;
  const SetPtr& p = std::get<static_cast<size_t>(Kind::kSet)>(v_);
  return p ? *p : kEmpty;
}

const Value::RecordFields& Value::as_record() const {
  static const RecordFields kEmpty;
  const RecordPtr& p = std::get<static_cast<size_t>(Kind::kRecord)>(v_);
  return p ? *p : kEmpty;
}

const ExtensionValue& Value::as_extension() const {
  return std::get<static_cast<size_t>(Kind::kExtension)>(v_);
}

const Value* Value::FindAttr(std::string_view name) const {
  if (!is_record()) return nullptr;
  const RecordFields& fields = as_record();
  auto it = fields.find(name);
  return it == fields.end() ? nullptr : &it->second;
}

bool Value::SetContains(const Value& v) const {
  if (!is_set()) return false;
  const SetElements& elements = as_set();
  auto it = std::lower_bound(elements.begin(), elements.end(), v,
                             [](const Value& a, const Value& b) { return Compare(a, b) < 0; });
  return it != elements.end() && Compare(*it, v) == 0;
}

std::string Value::ToString() const {
  std::string out;
  AppendValue(*this, &out);
  return out;
}

int Compare(const Value& a, const Value& b) {
  if (a.kind() != b.kind()) return Cmp3(a.kind(), b.kind());
  switch (a.kind()) {
    case Value::Kind::kBool:
      return Cmp3(a.as_bool(), b.as_bool());
    case Value::Kind::kLong:
      return Cmp3(a.as_long(), b.as_long());
    case Value::Kind::kString:
      return CompareStrings(a.as_string(), b.as_string());
    case Value::Kind::kEntity: {
      int c = CompareStrings(a.as_entity().type, b.as_entity().type);
      return c != 0 ? c : CompareStrings(a.as_entity().id, b.as_entity().id);
    }
    case Value::Kind::kSet: {
      const Value::SetElements& x = a.as_set();
      const Value::SetElements& y = b.as_set();
      if (&x == &y) return 0;
      for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
        int c = Compare(x[i], y[i]);
        if (c != 0) return c;
      }
      return Cmp3(x.size(), y.size());
    }
    case Value::Kind::kRecord: {
      const Value::RecordFields& x = a.as_record();
      const Value::RecordFields& y = b.as_record();
      if (&x == &y) return 0;
      auto i = x.begin();
      auto k = y.begin();
      for (; i != x.end() && k != y.end(); ++i, ++k) {
        int c = CompareStrings(i->first, k->first);
        if (c != 0) return c;
        c = Compare(i->second, k->second);
        if (c != 0) return c;
      }
      return Cmp3(x.size(), y.size());
    }
    case Value::Kind::kExtension: {
      const ExtensionValue& x = a.as_extension();
      const ExtensionValue& y = b.as_extension();
      if (x.type != y.type) return Cmp3(x.type, y.type);
      if (x.type != ExtensionType::kIpAddr) return Cmp3(x.number, y.number);
      if (x.ip_v6 != y.ip_v6) return Cmp3(x.ip_v6, y.ip_v6);
      if (x.ip_high != y.ip_high) return Cmp3(x.ip_high, y.ip_high);
      if (x.ip_low != y.ip_low) return Cmp3(x.ip_low, y.ip_low);
      return Cmp3(x.ip_prefix, y.ip_prefix);
    }
  }
  return 0;
}

std::string_view KindName(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kLong:
      return "long";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kEntity:
      return "entity";
    case Value::Kind::kSet:
      return "set";
    case Value::Kind::kRecord:
      return "record";
    case Value::Kind::kExtension:
      return "extension";
  }
  return "unknown";
}

std::string_view ExtensionTypeName(ExtensionType type) {
  switch (type) {
    case ExtensionType::kIpAddr:
      return "ipaddr";
    case ExtensionType::kDecimal:
      return "decimal";
    case ExtensionType::kDatetime:
      return "datetime";
    case ExtensionType::kDuration:
      return "duration";
  }
  return "unknown";
}

std::string_view TypeName(const Value& v) {
  return v.is_extension() ? ExtensionTypeName(v.as_extension().type) : KindName(v.kind());
}

Result<Value> ValueFromJson(const core::Json& j) { return FromJson(j, 0); }

Result<Value> ValueFromPlainJson(const core::Json& j) { return FromJson(j, 0, /*escapes=*/false); }

core::Json ValueToJson(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kBool:
      return core::Json(v.as_bool());
    case Value::Kind::kLong:
      return core::Json(v.as_long());
    case Value::Kind::kString:
      return core::Json(v.as_string());
    case Value::Kind::kEntity: {
      core::Json uid = core::Json::MakeObject();
      uid.Set("type", v.as_entity().type);
      uid.Set("id", v.as_entity().id);
      core::Json escape = core::Json::MakeObject();
      escape.Set("__entity", std::move(uid));
      return escape;
    }
    case Value::Kind::kSet: {
      core::Json arr = core::Json::MakeArray();
      for (const Value& e : v.as_set()) arr.Push(ValueToJson(e));
      return arr;
    }
    case Value::Kind::kRecord: {
      core::Json obj = core::Json::MakeObject();
      for (const auto& [k, e] : v.as_record()) obj.Set(k, ValueToJson(e));
      return obj;
    }
    case Value::Kind::kExtension:
      return ExtensionToJson(v.as_extension());
  }
  return core::Json();
}

}  // namespace mandate::policy
