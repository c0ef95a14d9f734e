// Test-only helpers for the identity module's tests: a hand-made JWS builder for forging tokens
// the issuer would never produce.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mandate/core/encoding.h"
#include "mandate/core/json.h"

namespace mandate::identity::testing {

// "<b64url(header)>.<b64url(payload)>", the JWS signing input.
inline std::string SigningInput(const core::Json& header, const core::Json& payload) {
  return core::Base64UrlEncode(header.Dump()) + "." + core::Base64UrlEncode(payload.Dump());
}

// The three segments of a compact token (empty vector if there are not exactly three).
inline std::vector<std::string> Segments(const std::string& token) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t dot = token.find('.', start);
    out.push_back(token.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (out.size() != 3) out.clear();
  return out;
}

inline core::Json DecodeSegment(const std::string& segment) {
  auto bytes = core::Base64UrlDecode(segment);
  EXPECT_TRUE(bytes.has_value());
  auto json = core::Json::Parse(bytes.value_or(""));
  EXPECT_TRUE(json.ok());
  return json.ok() ? *json : core::Json();
}

}  // namespace mandate::identity::testing
