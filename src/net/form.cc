#include "mandate/net/form.h"

#include "mandate/core/error_code.h"
#include "mandate/core/limits.h"

namespace mandate::net {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

core::Result<std::string> FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      int hi = i + 1 < s.size() ? HexValue(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return core::MakeError(core::ErrorCode::kBadRequest, "malformed percent escape");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

core::Result<std::map<std::string, std::string>> ParseForm(std::string_view body) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t end = body.find('&', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view pair = body.substr(pos, end - pos);
    if (!pair.empty()) {
      if (out.size() >= core::kFormParamsMax) return core::MakeError(core::ErrorCode::kBadRequest, "too many parameters");
      size_t eq = pair.find('=');
      MANDATE_ASSIGN_OR_RETURN(std::string key, FormDecode(pair.substr(0, eq)));
      MANDATE_ASSIGN_OR_RETURN(std::string value, FormDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1)));
      if (!out.emplace(std::move(key), std::move(value)).second) {
        return core::MakeError(core::ErrorCode::kBadRequest, "a parameter is repeated");
      }
    }
    if (end == body.size()) break;
    pos = end + 1;
  }
  return out;
}

}  // namespace mandate::net
