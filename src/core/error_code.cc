#include "mandate/core/error_code.h"

#include <array>

namespace mandate::core {
namespace {

struct CodeInfo {
  ErrorCode code;
  std::string_view name;
  int http_status;
};

// Invariant: one row per enumerator, in enumerator order (checked by the static_assert below
// and by error_code_test).
constexpr std::array<CodeInfo, 18> kCodes = {{
    {ErrorCode::kUnauthenticated, "unauthenticated", 401},
    {ErrorCode::kTokenExpired, "token_expired", 401},
    {ErrorCode::kTokenRevoked, "token_revoked", 401},
    {ErrorCode::kDpopInvalid, "dpop_invalid", 401},
    {ErrorCode::kOutOfScope, "out_of_scope", 403},
    {ErrorCode::kPolicyDenied, "policy_denied", 403},
    {ErrorCode::kApprovalRequired, "approval_required", 403},
    {ErrorCode::kApprovalDenied, "approval_denied", 403},
    {ErrorCode::kBudgetExceeded, "budget_exceeded", 429},
    {ErrorCode::kPlanViolation, "plan_violation", 403},
    {ErrorCode::kUpstreamUnavailable, "upstream_unavailable", 503},
    {ErrorCode::kUpstreamTimeout, "upstream_timeout", 504},
    {ErrorCode::kUpstreamError, "upstream_error", 502},
    {ErrorCode::kBadRequest, "bad_request", 400},
    {ErrorCode::kPayloadTooLarge, "payload_too_large", 413},
    {ErrorCode::kNotFound, "not_found", 404},
    {ErrorCode::kConflict, "conflict", 409},
    {ErrorCode::kInternal, "internal", 500},
}};
static_assert(kCodes.size() == static_cast<size_t>(ErrorCode::kInternal) + 1);

}  // namespace

std::string_view PublicCode(ErrorCode code) { return kCodes[static_cast<size_t>(code)].name; }

int HttpStatus(ErrorCode code) { return kCodes[static_cast<size_t>(code)].http_status; }

std::optional<ErrorCode> ErrorCodeFromPublic(std::string_view name) {
  for (const CodeInfo& info : kCodes) {
    if (info.name == name) return info.code;
  }
  return std::nullopt;
}

}  // namespace mandate::core
