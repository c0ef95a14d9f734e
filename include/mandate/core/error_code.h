// The one closed set of error codes Mandate uses, and their single mapping to the public
// error codes of DESIGN.md section 8 and to HTTP status codes.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace mandate::core {

enum class ErrorCode : uint8_t {
  kUnauthenticated,
  kTokenExpired,
  kTokenRevoked,
  kDpopInvalid,
  kOutOfScope,
  kPolicyDenied,
  kApprovalRequired,
  kApprovalDenied,
  kBudgetExceeded,
  kPlanViolation,
  kUpstreamUnavailable,
  kUpstreamTimeout,
  kUpstreamError,
  kBadRequest,
  kPayloadTooLarge,
  kNotFound,
  kConflict,
  kInternal,
};

// The stable public name, e.g. "token_revoked". Never changes for a given code.
std::string_view PublicCode(ErrorCode code);

// The HTTP status an HTTP-facing error with this code is answered with.
int HttpStatus(ErrorCode code);

// Inverse of PublicCode; nullopt for an unknown name.
std::optional<ErrorCode> ErrorCodeFromPublic(std::string_view name);

}  // namespace mandate::core
