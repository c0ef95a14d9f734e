#include "net/wire.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>

namespace mandate::net {
namespace {

bool IsTchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

}  // namespace

bool IsHttpToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

namespace internal {
namespace {

using core::ErrorCode;
using core::MakeError;

namespace http = boost::beast::http;

bool IsFraming(std::string_view name) {
  return boost::beast::iequals(name, "Content-Length") ||
         boost::beast::iequals(name, "Transfer-Encoding") || boost::beast::iequals(name, "Connection");
}

void AppendNumber(uint64_t n, std::string* out) {
  char text[24];
  out->append(text, static_cast<size_t>(std::to_chars(text, text + sizeof text, n).ptr - text));
}

// Appends "Name: value\r\n" for every header but the framing ones and those a later header of
// the same name replaces. Returns the first malformed header's name ("" when all are fine;
// "(empty)" for an empty name).
std::string AppendHeaders(const Headers& headers, std::string* out) {
  for (size_t i = 0; i < headers.size(); ++i) {
    const auto& [name, value] = headers[i];
    if (!IsHttpToken(name)) return name.empty() ? "(empty)" : name;
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) return name;
    if (IsFraming(name)) continue;
    bool replaced = false;
    for (size_t j = i + 1; j < headers.size() && !replaced; ++j) {
      replaced = boost::beast::iequals(headers[j].first, name);
    }
    if (replaced) continue;
    out->append(name).append(": ").append(value).append("\r\n");
  }
  return std::string();
}

}  // namespace

core::Result<std::string> RequestBytes(std::string_view method, std::string_view target,
                                       std::string_view host, const Headers& headers,
                                       std::string_view body) {
  if (!IsHttpToken(method)) return MakeError(ErrorCode::kBadRequest, "bad HTTP method");
  if (target.empty()) return MakeError(ErrorCode::kBadRequest, "empty HTTP request target");
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return MakeError(ErrorCode::kBadRequest, "HTTP request target holds a space or a control character");
    }
  }
  std::string out;
  out.reserve(128 + target.size() + host.size() + body.size() + 64 * headers.size());
  out.append(method).push_back(' ');
  out.append(target).append(" HTTP/1.1\r\n");
  if (FindHeader(headers, "Host") == nullptr) out.append("Host: ").append(host).append("\r\n");
  if (std::string bad = AppendHeaders(headers, &out); !bad.empty()) {
    return MakeError(ErrorCode::kBadRequest,
                     "HTTP request header \"" + bad + "\" is not a token or holds CR, LF or NUL");
  }
  if (!body.empty() || method == "POST" || method == "PUT" || method == "OPTIONS") {
    out.append("Content-Length: ");
    AppendNumber(body.size(), &out);
    out.append("\r\n");
  }
  out.append("\r\n");
  out.append(body);
  return out;
}

core::Result<std::string> ResponseHead(int status, const Headers& headers,
                                       std::optional<size_t> body_bytes, bool keep_alive) {
  if (status < 100 || status > 999) {
    return MakeError(ErrorCode::kInternal, "HTTP status " + std::to_string(status) + " is not 3 digits");
  }
  const bool bodiless = status < 200 || status == 204 || status == 304;
  if (bodiless && body_bytes != 0) {
    return MakeError(ErrorCode::kInternal, "an HTTP " + std::to_string(status) + " answer cannot have a body");
  }
  std::string out;
  out.reserve(128 + 64 * headers.size());
  out.append("HTTP/1.1 ");
  AppendNumber(static_cast<uint64_t>(status), &out);
  out.push_back(' ');
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  out.append(reason.data(), reason.size()).append("\r\n");
  if (std::string bad = AppendHeaders(headers, &out); !bad.empty()) {
    return MakeError(ErrorCode::kInternal,
                     "HTTP answer header \"" + bad + "\" is not a token or holds CR, LF or NUL");
  }
  if (FindHeader(headers, "Content-Type") == nullptr) out.append("Content-Type: application/json\r\n");
  if (!body_bytes) {
    out.append("Transfer-Encoding: chunked\r\n");
  } else if (!bodiless) {
    out.append("Content-Length: ");
    AppendNumber(*body_bytes, &out);
    out.append("\r\n");
  }
  if (!keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
  return out;
}

}  // namespace internal
}  // namespace mandate::net
