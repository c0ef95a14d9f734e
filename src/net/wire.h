// HTTP/1.1 messages as the bytes on the wire, written directly: the request the client sends
// and the head of an answer the server sends. Beast's serializer did this through a message
// object and a chain of buffer views: 2.3% of Mandate's CPU in a saturation profile, for two
// small messages (docs/performance.md, "Results at 6e4624f"). Framing is always ours:
// Content-Length (or chunked, and Connection: close) come from the arguments, and a caller's
// Content-Length, Transfer-Encoding or Connection header is dropped. A header whose name is
// not a token or whose value holds CR, LF or NUL is refused, so no value can add a header or
// end the head early.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "mandate/core/result.h"
#include "mandate/net/http.h"

namespace mandate::net::internal {

// The request line, Host (`host` unless `headers` has one), `headers` (the last of each name
// wins, as a repeated set() did), Content-Length (when the body is not empty, or the method
// is POST, PUT or OPTIONS), the blank line and the body. Errors: kBadRequest for a method
// that is not a token, a target with a control character or space, or a malformed header.
core::Result<std::string> RequestBytes(std::string_view method, std::string_view target,
                                       std::string_view host, const Headers& headers,
                                       std::string_view body);

// The status line, `headers` (the last of each name wins; Content-Type application/json when
// none is given), Content-Length: body_bytes (but for 1xx, 204 and 304), or
// Transfer-Encoding: chunked when body_bytes is nullopt (the body follows in chunks),
// Connection: close unless `keep_alive`, and the blank line. Errors: kInternal for a
// malformed header (the answer a handler built is Mandate's own), a status that is not 3
// digits, or a body for a status that cannot have one.
core::Result<std::string> ResponseHead(int status, const Headers& headers,
                                       std::optional<size_t> body_bytes, bool keep_alive);

}  // namespace mandate::net::internal
