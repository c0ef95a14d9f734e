// application/x-www-form-urlencoded bodies (HTML 5 / RFC 6749 section 4.1.3 use): what OAuth
// endpoints such as POST /oauth/token receive.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "mandate/core/result.h"

namespace mandate::net {

// Parses `name=value&...`, decoding '+' as a space and %XX escapes. Empty pairs are skipped; a
// name without '=' has the empty value. Errors (kBadRequest): a malformed or truncated percent
// escape, a repeated name (RFC 6749 section 3.2: parameters must not be included more than
// once), more than kFormParamsMax parameters. Decoded bytes are not checked for UTF-8.
core::Result<std::map<std::string, std::string>> ParseForm(std::string_view body);

}  // namespace mandate::net
