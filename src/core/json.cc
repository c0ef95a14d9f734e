#include "mandate/core/json.h"

// simdjson 3.0.1 (Debian) trips g++ 12's -Wdangling-pointer in its own inline code.
// The warnings fire where its templates are instantiated, i.e. in this file, so they are off
// for this translation unit only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <span>
#include <unordered_set>

#include "mandate/core/check.h"
#include "mandate/core/limits.h"

namespace mandate::core {
namespace {

Result<Json> Convert(simdjson::dom::element el, size_t depth) {
  if (depth > kJsonDepthMax) {
    return MakeError(ErrorCode::kBadRequest, "JSON nested deeper than " +
                                                 std::to_string(kJsonDepthMax) + " levels");
  }
  // Every accessor reads into a named local: simdjson's value_unsafe() on a temporary
  // result dangles (g++ warns; it crashed here once).
  switch (el.type()) {
    case simdjson::dom::element_type::NULL_VALUE:
      return Json();
    case simdjson::dom::element_type::BOOL: {
      bool b = false;
      if (el.get(b)) break;
      return Json(b);
    }
    case simdjson::dom::element_type::INT64: {
      int64_t i = 0;
      if (el.get(i)) break;
      return Json(i);
    }
    case simdjson::dom::element_type::UINT64: {
      uint64_t u = 0;
      if (el.get(u)) break;
      return Json(static_cast<double>(u));
    }
    case simdjson::dom::element_type::DOUBLE: {
      double d = 0;
      if (el.get(d)) break;
      return Json(d);
    }
    case simdjson::dom::element_type::STRING: {
      std::string_view sv;
      if (el.get(sv)) break;
      return Json(std::string(sv));
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array in;
      if (el.get(in)) break;
      Json::Array arr;
      for (simdjson::dom::element child : in) {
        MANDATE_ASSIGN_OR_RETURN(Json v, Convert(child, depth + 1));
        arr.push_back(std::move(v));
      }
      return Json(std::move(arr));
    }
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object in;
      if (el.get(in)) break;
      Json::Object obj;
      obj.reserve(in.size());
      for (simdjson::dom::key_value_pair kv : in) {
        std::string key(kv.key);
        // Duplicate keys are rejected: two parsers disagreeing on which one wins is a classic
        // way to smuggle arguments past a policy. Linear scan for small objects, hashing above.
        if (obj.size() < 32) {
          for (const auto& m : obj) {
            if (m.first == key) {
              return MakeError(ErrorCode::kBadRequest, "duplicate JSON object key \"" + key + "\"");
            }
          }
        }
        MANDATE_ASSIGN_OR_RETURN(Json v, Convert(kv.value, depth + 1));
        obj.emplace_back(std::move(key), std::move(v));
      }
      if (obj.size() >= 32) {
        std::unordered_set<std::string_view> keys;
        for (const auto& m : obj) {
          if (!keys.insert(m.first).second) {
            return MakeError(ErrorCode::kBadRequest, "duplicate JSON object key \"" + m.first + "\"");
          }
        }
      }
      return Json(std::move(obj));
    }
  }
  return MakeError(ErrorCode::kBadRequest, "unsupported JSON value");
}

void AppendNumber(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
    return;
  }
  // Integral doubles within 2^53 print without a fraction, as JavaScript does.
  if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
    out->append(std::to_string(static_cast<int64_t>(d)));
    return;
  }
  char buf[64];
  // Integral magnitudes >= 2^53 are written in exponent form: the shortest fixed form can be an
  // integer literal beyond uint64 that parsers (simdjson among them) refuse, which would break
  // the round trip (found by fuzz/json_parse).
  auto res = std::fabs(d) >= 9007199254740992.0
                 ? std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific)
                 : std::to_chars(buf, buf + sizeof(buf), d);
  out->append(buf, res.ptr);
}

// An object's members in canonical (byte-wise key) order, sorted without allocating for
// objects of up to kSmallMembers members (nearly all: records, arguments, claims).
class SortedMembers {
 public:
  explicit SortedMembers(const Json::Object& obj) : size_(obj.size()) {
    const Json::Member** p = small_;
    if (size_ > kSmallMembers) {
      large_.resize(size_);
      p = large_.data();
    }
    for (size_t i = 0; i < size_; ++i) p[i] = &obj[i];
    std::sort(p, p + size_,
              [](const Json::Member* a, const Json::Member* b) { return a->first < b->first; });
  }
  SortedMembers(const SortedMembers&) = delete;
  SortedMembers& operator=(const SortedMembers&) = delete;

  std::span<const Json::Member* const> members() const {
    return {size_ > kSmallMembers ? large_.data() : small_, size_};
  }

 private:
  static constexpr size_t kSmallMembers = 32;
  const Json::Member* small_[kSmallMembers];
  std::vector<const Json::Member*> large_;
  const size_t size_;
};

void Serialize(const Json& j, std::string* out, bool canonical) {
  switch (j.type()) {
    case Json::Type::kNull:
      out->append("null");
      return;
    case Json::Type::kBool:
      out->append(j.as_bool() ? "true" : "false");
      return;
    case Json::Type::kInt: {
      char buf[24];
      auto res = std::to_chars(buf, buf + sizeof(buf), j.as_int());
      out->append(buf, res.ptr);
      return;
    }
    case Json::Type::kDouble:
      AppendNumber(j.as_double(), out);
      return;
    case Json::Type::kString:
      AppendJsonString(j.as_string(), out);
      return;
    case Json::Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Json& e : j.as_array()) {
        if (!first) out->push_back(',');
        first = false;
        Serialize(e, out, canonical);
      }
      out->push_back(']');
      return;
    }
    case Json::Type::kObject: {
      out->push_back('{');
      const Json::Object& obj = j.as_object();
      if (canonical) {
        const SortedMembers sorted(obj);
        bool first = true;
        for (const Json::Member* m : sorted.members()) {
          if (!first) out->push_back(',');
          first = false;
          AppendJsonString(m->first, out);
          out->push_back(':');
          Serialize(m->second, out, true);
        }
      } else {
        bool first = true;
        for (const auto& m : obj) {
          if (!first) out->push_back(',');
          first = false;
          AppendJsonString(m.first, out);
          out->push_back(':');
          Serialize(m.second, out, false);
        }
      }
      out->push_back('}');
      return;
    }
  }
}

Status DepthError() {
  return MakeError(ErrorCode::kBadRequest,
                   "JSON nested deeper than " + std::to_string(kJsonDepthMax) + " levels");
}

// Serialize(j, out, true), failing where the output would not parse back to `j` (what
// Json::CheckSerializable documents). Mirrors Convert(): the root is at depth 1 and every
// element, scalar or not, counts. Duplicate keys are neighbours in canonical order, so each
// object costs one comparison per member for them.
Status CheckedCanonical(const Json& j, std::string* out, size_t depth) {
  if (depth > kJsonDepthMax) return DepthError();
  switch (j.type()) {
    case Json::Type::kString:
      if (!IsValidUtf8(j.as_string())) {
        return MakeError(ErrorCode::kBadRequest, "a JSON string is not valid UTF-8");
      }
      AppendJsonString(j.as_string(), out);
      return OkStatus();
    case Json::Type::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Json& e : j.as_array()) {
        if (!first) out->push_back(',');
        first = false;
        MANDATE_RETURN_IF_ERROR(CheckedCanonical(e, out, depth + 1));
      }
      out->push_back(']');
      return OkStatus();
    }
    case Json::Type::kObject: {
      out->push_back('{');
      const SortedMembers sorted(j.as_object());
      const Json::Member* previous = nullptr;
      for (const Json::Member* m : sorted.members()) {
        if (!IsValidUtf8(m->first)) {
          return MakeError(ErrorCode::kBadRequest, "a JSON object key is not valid UTF-8");
        }
        if (previous != nullptr) {
          if (previous->first == m->first) {
            return MakeError(ErrorCode::kBadRequest,
                             "duplicate JSON object key \"" + m->first + "\"");
          }
          out->push_back(',');
        }
        previous = m;
        AppendJsonString(m->first, out);
        out->push_back(':');
        MANDATE_RETURN_IF_ERROR(CheckedCanonical(m->second, out, depth + 1));
      }
      out->push_back('}');
      return OkStatus();
    }
    default:
      Serialize(j, out, true);
      return OkStatus();
  }
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  // Short ASCII strings (most keys and values) are valid without the dispatch into simdjson,
  // which cost more than the check itself at this size (audit record validation).
  constexpr size_t kShortBytesMax = 64;
  if (text.size() <= kShortBytesMax) {
    unsigned char high = 0;
    for (char c : text) high |= static_cast<unsigned char>(c);
    if (high < 0x80) return true;
  }
  return simdjson::validate_utf8(text.data(), text.size());
}

Status Json::CheckSerializable() const {
  // The rules live in one place: the checked walk, whose output is dropped here.
  std::string scratch;
  return CheckedCanonical(*this, &scratch, 1);
}

Status Json::CheckedCanonicalTo(std::string* out, size_t depth) const {
  return CheckedCanonical(*this, out, depth);
}

namespace {

// Whether any of the 8 bytes at `p` is below 0x20, '"' or '\\' (each test is exact about
// whether some byte matches, which is all the caller needs).
inline bool NeedsEscape8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  const auto has_zero = [](uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  const uint64_t below_space = (v - kOnes * 0x20) & ~v & kHigh;
  return (below_space | has_zero(v ^ (kOnes * '"')) | has_zero(v ^ (kOnes * '\\'))) != 0;
}

}  // namespace

void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  // Runs of bytes that need no escape are copied whole: byte-by-byte push_back was most of
  // the cost of serializing an audit record (docs/performance.md).
  size_t run = 0;  // start of the pending run of plain bytes
  for (size_t i = 0; i < s.size(); ++i) {
    // Eight plain bytes at a time (no control byte, '"' or '\\'): the byte loop alone was 24%
    // of a loop building, checking and serializing audit records (docs/performance.md).
    while (i + 8 <= s.size() && !NeedsEscape8(s.data() + i)) i += 8;
    if (i == s.size()) break;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
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
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 15]);
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

namespace {

// Parses `text` into this thread's simdjson parser (one per thread: its buffers are reused, so
// parsing allocates nothing in steady state). The element lives until the thread's next parse.
Result<simdjson::dom::element> ParseDom(std::string_view text, size_t max_bytes) {
  if (max_bytes == 0) max_bytes = kJsonBytesMax;
  if (text.size() > max_bytes) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "JSON text of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                         std::to_string(max_bytes));
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  auto err = parser.parse(text.data(), text.size(), true).get(root);
  if (err) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string("invalid JSON: ") + simdjson::error_message(err));
  }
  return root;
}

}  // namespace

Result<Json> Json::Parse(std::string_view text, size_t max_bytes) {
  MANDATE_ASSIGN_OR_RETURN(simdjson::dom::element root, ParseDom(text, max_bytes));
  return Convert(root, 1);
}

Result<Json> Json::ParseMembers(std::string_view text, std::span<const std::string_view> pointers,
                                size_t max_bytes) {
  MANDATE_ASSIGN_OR_RETURN(simdjson::dom::element root, ParseDom(text, max_bytes));
  if (root.type() != simdjson::dom::element_type::OBJECT) {
    return MakeError(ErrorCode::kBadRequest, "JSON text is not an object");
  }
  Json out = MakeObject();
  for (std::string_view pointer : pointers) {
    MANDATE_CHECK(pointer.size() > 1 && pointer.front() == '/' &&
                  pointer.find('~') == std::string_view::npos);
    // Walk to the member without building anything; it may be absent.
    simdjson::dom::element at = root;
    size_t depth = 1;  // at's: the root is at depth 1, as in Convert
    bool present = true;
    for (std::string_view rest = pointer.substr(1);;) {
      const size_t slash = rest.find('/');
      const std::string_view token = rest.substr(0, slash);
      simdjson::dom::object obj;
      if (at.get(obj)) {
        present = false;  // a scalar or an array on the way: the member is absent
        break;
      }
      bool found = false;
      simdjson::dom::element next;
      for (simdjson::dom::key_value_pair kv : obj) {
        if (kv.key != token) continue;
        if (found) {
          return MakeError(ErrorCode::kBadRequest,
                           "duplicate JSON object key \"" + std::string(token) + "\"");
        }
        found = true;
        next = kv.value;
      }
      if (!found) {
        present = false;
        break;
      }
      at = next;
      ++depth;
      if (slash == std::string_view::npos) break;
      rest = rest.substr(slash + 1);
    }
    if (!present) continue;
    MANDATE_ASSIGN_OR_RETURN(Json value, Convert(at, depth));
    // Place it, creating the objects on its way (an earlier, shorter pointer may have placed
    // the whole object already: then this sets an equal value again).
    Json* dest = &out;
    std::string_view rest = pointer.substr(1);
    for (size_t slash = rest.find('/'); slash != std::string_view::npos; slash = rest.find('/')) {
      const std::string_view token = rest.substr(0, slash);
      Json* inner = dest->Find(token);
      dest = inner != nullptr ? inner : &dest->Set(std::string(token), MakeObject());
      rest = rest.substr(slash + 1);
    }
    dest->Set(std::string(rest), std::move(value));
  }
  return out;
}

const Json* Json::Find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const auto& m : as_object()) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

Json* Json::Find(std::string_view key) {
  if (!is_object()) return nullptr;
  for (auto& m : as_object()) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

const std::string* Json::FindString(std::string_view key) const {
  const Json* j = Find(key);
  return j && j->is_string() ? &j->as_string() : nullptr;
}

const Json* Json::FindObject(std::string_view key) const {
  const Json* j = Find(key);
  return j && j->is_object() ? j : nullptr;
}

const Json* Json::FindArray(std::string_view key) const {
  const Json* j = Find(key);
  return j && j->is_array() ? j : nullptr;
}

int64_t Json::GetInt(std::string_view key, int64_t fallback) const {
  const Json* j = Find(key);
  return j && j->is_int() ? j->as_int() : fallback;
}

std::string Json::GetString(std::string_view key, std::string_view fallback) const {
  const std::string* s = FindString(key);
  return s ? *s : std::string(fallback);
}

Json& Json::Set(std::string key, Json value) {
  if (is_null()) v_ = Object{};
  Object& obj = as_object();
  for (auto& m : obj) {
    if (m.first == key) {
      m.second = std::move(value);
      return m.second;
    }
  }
  // An object built member by member (a record, claims, an answer) usually gets several:
  // room for kSetMembersFirst at once instead of growing through 1, 2, 4 and 8, each growth
  // an allocation and a move of every member.
  constexpr size_t kSetMembersFirst = 8;
  if (obj.capacity() == 0) obj.reserve(kSetMembersFirst);
  obj.emplace_back(std::move(key), std::move(value));
  return obj.back().second;
}

void Json::Erase(std::string_view key) {
  if (!is_object()) return;
  auto& obj = as_object();
  obj.erase(std::remove_if(obj.begin(), obj.end(), [&](const Member& m) { return m.first == key; }),
            obj.end());
}

Json& Json::Push(Json value) {
  if (is_null()) v_ = Array{};
  as_array().push_back(std::move(value));
  return as_array().back();
}

std::string Json::Dump() const {
  std::string out;
  DumpTo(&out);
  return out;
}

Json Json::StringArray(const std::vector<std::string>& strings) {
  Array a;
  a.reserve(strings.size());
  for (const auto& s : strings) a.emplace_back(s);
  return Json(std::move(a));
}

std::string Json::Canonical() const {
  std::string out;
  CanonicalTo(&out);
  return out;
}

void Json::DumpTo(std::string* out) const { Serialize(*this, out, false); }
void Json::CanonicalTo(std::string* out) const { Serialize(*this, out, true); }

bool Json::operator==(const Json& other) const {
  if (is_number() && other.is_number()) {
    if (is_int() && other.is_int()) return as_int() == other.as_int();
    return as_double() == other.as_double();
  }
  if (type() != other.type()) return false;
  if (is_object()) {
    const Object& a = as_object();
    const Object& b = other.as_object();
    if (a.size() != b.size()) return false;
    for (const auto& m : a) {
      const Json* o = other.Find(m.first);
      if (!o || !(m.second == *o)) return false;
    }
    return true;
  }
  return v_ == other.v_;
}

}  // namespace mandate::core
