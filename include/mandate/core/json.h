// Json: the JSON value every module passes around (tool arguments, JWT claims, audit records,
// JSON-RPC messages). Parsing untrusted bytes goes through simdjson with named limits
// (kJsonBytesMax, kJsonDepthMax); serialization has two forms:
//   Dump()      compact, object members in insertion order (wire output);
//   Canonical() compact, object members sorted by key bytes, numbers in shortest form
//               (RFC 8785 style; used for hashing and the audit log, see docs/formats/audit.md).
// Integers that fit int64 stay exact; other numbers are doubles. Objects keep insertion order
// and unique keys (a duplicate key in parsed input is an error: it is a known smuggling vector).
// Thread safety: a Json is a value; concurrent reads are safe, writes need external sync.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "mandate/core/result.h"

namespace mandate::core {

class Json {
 public:
  enum class Type : uint8_t { kNull, kBool, kInt, kDouble, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Member = std::pair<std::string, Json>;
  using Object = std::vector<Member>;

  Json() = default;
  Json(std::nullptr_t) {}                                              // NOLINT
  Json(bool b) : v_(b) {}                                              // NOLINT
  Json(int i) : v_(static_cast<int64_t>(i)) {}                         // NOLINT
  Json(int64_t i) : v_(i) {}                                           // NOLINT
  Json(uint32_t i) : v_(static_cast<int64_t>(i)) {}                    // NOLINT
  Json(double d) : v_(d) {}                                            // NOLINT
  Json(std::string s) : v_(std::move(s)) {}                            // NOLINT
  Json(std::string_view s) : v_(std::string(s)) {}                     // NOLINT
  Json(const char* s) : v_(std::string(s)) {}                          // NOLINT
  Json(Array a) : v_(std::move(a)) {}                                  // NOLINT
  Json(Object o) : v_(std::move(o)) {}                                 // NOLINT

  static Json MakeObject() { return Json(Object{}); }
  static Json MakeArray() { return Json(Array{}); }
  // An array of strings.
  static Json StringArray(const std::vector<std::string>& strings);

  // Parses one JSON text. Errors (kBadRequest, or kPayloadTooLarge over max_bytes): invalid
  // JSON or UTF-8, nesting deeper than kJsonDepthMax, duplicate object keys, trailing bytes.
  static Result<Json> Parse(std::string_view text, size_t max_bytes = 0 /* kJsonBytesMax */);
  // Parses a JSON object but builds only the members named by `pointers` (RFC 6901 JSON
  // Pointers of object keys only, such as "/seq" or "/decision/decision"; no "~" escapes, no
  // array indexes): the result is an object holding each of them that is present, at its
  // place, with the objects on its way holding nothing else. For a reader that needs a few
  // members of a large object, this skips building the rest.
  // The whole text is still checked as JSON (syntax, UTF-8, size), and every member built is
  // checked as Parse checks it (depth counted from the root, duplicate keys); a key that
  // appears twice in an object on a pointer's way is an error too. Members not built are not
  // checked for duplicate keys or depth, so a text Parse refuses for those can pass here;
  // whenever Parse(text) succeeds, this gives exactly its members at `pointers`.
  // Errors: those of Parse (kBadRequest, kPayloadTooLarge), kBadRequest when the text is not
  // an object. A malformed pointer is a programming error (checked).
  static Result<Json> ParseMembers(std::string_view text, std::span<const std::string_view> pointers,
                                   size_t max_bytes = 0 /* kJsonBytesMax */);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_double() const { return type() == Type::kDouble; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors; calling the wrong one is a programming error (std::get throws -> abort).
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_double() const { return is_int() ? static_cast<double>(as_int()) : std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Array& as_array() const { return std::get<Array>(v_); }
  Array& as_array() { return std::get<Array>(v_); }
  const Object& as_object() const { return std::get<Object>(v_); }
  Object& as_object() { return std::get<Object>(v_); }

  // Object lookup; nullptr when not an object or the key is absent.
  const Json* Find(std::string_view key) const;
  Json* Find(std::string_view key);
  // Typed lookups returning nullptr when absent or of another type.
  const std::string* FindString(std::string_view key) const;
  const Json* FindObject(std::string_view key) const;
  const Json* FindArray(std::string_view key) const;
  // Integer member, or `fallback` when absent / not an integer.
  int64_t GetInt(std::string_view key, int64_t fallback) const;
  std::string GetString(std::string_view key, std::string_view fallback = {}) const;

  // Sets (replacing) an object member; turns a null into an empty object first.
  Json& Set(std::string key, Json value);
  // Removes an object member if present.
  void Erase(std::string_view key);
  // Appends to an array; turns a null into an empty array first.
  Json& Push(Json value);

  // Checks that this value's serialization would parse back (Dump or Canonical, then Parse):
  // nesting at most kJsonDepthMax, unique object keys, valid UTF-8 in every string and key.
  // Errors: kBadRequest naming the problem. Much cheaper than a serialize + parse round trip.
  Status CheckSerializable() const;
  // CheckSerializable() and CanonicalTo(out) in one walk: appends the canonical form, or fails
  // as CheckSerializable would (leaving a partial form in `out`). `depth`: this value's own
  // depth in its document (1 for the root, 2 for a root object's member values).
  Status CheckedCanonicalTo(std::string* out, size_t depth = 1) const;

  std::string Dump() const;
  std::string Canonical() const;
  void DumpTo(std::string* out) const;
  void CanonicalTo(std::string* out) const;

  bool operator==(const Json& other) const;
  bool operator!=(const Json& other) const { return !(*this == other); }

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> v_;
};

// Whether `text` is valid UTF-8.
bool IsValidUtf8(std::string_view text);

// Appends `s` as a JSON string literal (with quotes) to `out`.
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace mandate::core
