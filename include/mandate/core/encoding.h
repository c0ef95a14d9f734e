// Byte encodings: base64url (RFC 4648 section 5, unpadded, as JOSE uses), standard base64,
// and lowercase hex. Decoders reject any non-alphabet byte and return nullopt.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mandate::core {

// Whether `a` and `b` are equal when ASCII letters are compared without case (HTTP header
// names, auth schemes, media types); other bytes must match exactly.
bool AsciiEqualsIgnoreCase(std::string_view a, std::string_view b);

std::string Base64UrlEncode(std::string_view bytes);
// Accepts unpadded input only (JOSE); rejects '=' padding, whitespace and non-canonical tails.
std::optional<std::string> Base64UrlDecode(std::string_view text);
std::string Base64Encode(std::string_view bytes);
// Standard base64 (RFC 4648 section 4) with its '=' padding required, as C2SP signed notes use;
// rejects missing or extra padding, whitespace and non-canonical tails.
std::optional<std::string> Base64Decode(std::string_view text);
std::string HexEncode(std::string_view bytes);
std::optional<std::string> HexDecode(std::string_view text);

}  // namespace mandate::core
