// How an agent request authenticates: the Bearer and DPoP schemes (RFC 6750, RFC 9449), for
// every endpoint of the agent listener that takes a session token (MCP, plans, approvals, the
// token endpoint). The contract is in pipeline.h (Authenticate, AuthenticateRequest,
// AuthenticateSubjectToken); the format in docs/formats/token.md, "Using a DPoP-bound session".
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/encoding.h"
#include "mandate/core/error_code.h"
#include "mandate/gateway/pipeline.h"

namespace mandate::gateway {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr std::string_view kBearerScheme = "Bearer";
constexpr std::string_view kDpopScheme = "DPoP";


// Every value of header `name` (case-insensitive), in the order received.
std::vector<std::string_view> HeaderValues(const AgentRequest& request, std::string_view name) {
  std::vector<std::string_view> out;
  if (request.headers == nullptr) return out;
  for (const auto& [k, v] : *request.headers) {
    if (core::AsciiEqualsIgnoreCase(k, name)) out.emplace_back(v);
  }
  return out;
}

enum class Scheme : uint8_t { kBearer, kDpop };

struct Credentials {
  Scheme scheme = Scheme::kBearer;
  std::string_view token;
};

// `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110 section 11.4), the scheme
// case-insensitive. Only Bearer and DPoP are understood. Errors: kUnauthenticated.
core::Result<Credentials> ParseAuthorization(std::string_view value) {
  const size_t sp = value.find(' ');
  if (sp == std::string_view::npos) {
    return MakeError(ErrorCode::kUnauthenticated, "the Authorization header carries no token");
  }
  const std::string_view scheme = value.substr(0, sp);
  Credentials c;
  if (core::AsciiEqualsIgnoreCase(scheme, kBearerScheme)) {
    c.scheme = Scheme::kBearer;
  } else if (core::AsciiEqualsIgnoreCase(scheme, kDpopScheme)) {
    c.scheme = Scheme::kDpop;
  } else {
    return MakeError(ErrorCode::kUnauthenticated,
                     "unsupported authorization scheme (use Bearer or DPoP)");
  }
  const size_t start = value.find_first_not_of(' ', sp);
  if (start == std::string_view::npos) {
    return MakeError(ErrorCode::kUnauthenticated, "the Authorization header carries no token");
  }
  c.token = value.substr(start);
  return c;
}

// RFC 9449 section 7.1: the "algs" parameter lists the proof algorithms accepted.
std::string AlgsParam() { return "algs=\"" + std::string(kDpopAlgs) + "\""; }

// A refused token, under the scheme the client should use. The description is the public
// error code, never request bytes (header injection).
std::string TokenChallenge(Scheme scheme, ErrorCode code) {
  std::string c = std::string(scheme == Scheme::kDpop ? kDpopScheme : kBearerScheme) +
                  " error=\"invalid_token\", error_description=\"" +
                  std::string(core::PublicCode(code)) + "\"";
  if (scheme == Scheme::kDpop) c += ", " + AlgsParam();
  return c;
}

std::string ProofChallenge() {
  return std::string(kDpopScheme) + " error=\"invalid_dpop_proof\", error_description=\"" +
         std::string(core::PublicCode(ErrorCode::kDpopInvalid)) + "\", " + AlgsParam();
}

// No credentials Mandate understands: both schemes, without an error (RFC 6750 section 3.1).
std::string NoCredentialsChallenge() {
  return std::string(kBearerScheme) + ", " + std::string(kDpopScheme) + " " + AlgsParam();
}

// A Host header value: host [ ":" port ], the host a reg-name, IPv4 or bracketed IP literal.
// Anything else ('/', '?', '#', '@', spaces...) could move bytes of the Host header into the
// path of the reconstructed URI, so it is refused rather than normalized.
bool IsHostHeader(std::string_view host) {
  if (host.empty() || host.size() > core::kDpopHtuBytesMax) return false;
  for (char ch : host) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
                    ch == ':' || ch == '[' || ch == ']';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

core::Result<Caller> Pipeline::Authenticate(std::string_view bearer_token) const {
  MANDATE_ASSIGN_OR_RETURN(Caller caller, VerifyToken(bearer_token));
  if (caller.claims->cnf_jkt) {
    return MakeError(
        ErrorCode::kDpopInvalid,
        "the token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof");
  }
  return caller;
}

core::Result<identity::DpopProof> Pipeline::VerifyProof(const AgentRequest& request,
                                                        std::string_view access_token,
                                                        std::string_view expected_jkt) const {
  if (deps_.dpop == nullptr)
    return MakeError(ErrorCode::kDpopInvalid, "DPoP is not available on this server");
  const std::vector<std::string_view> proofs = HeaderValues(request, "dpop");
  if (proofs.empty())
    return MakeError(ErrorCode::kDpopInvalid, "the request carries no DPoP proof");
  // RFC 9449 section 4.3, check 1: not more than one DPoP header.
  if (proofs.size() > 1)
    return MakeError(ErrorCode::kDpopInvalid, "the request carries more than one DPoP header");
  const std::vector<std::string_view> hosts = HeaderValues(request, "host");
  if (hosts.size() != 1 || !IsHostHeader(hosts[0])) {
    return MakeError(ErrorCode::kDpopInvalid,
                     "the request needs exactly one well-formed Host header (it is part of htu)");
  }
  if (request.target.empty() || request.target[0] != '/') {
    return MakeError(ErrorCode::kDpopInvalid, "the request target is not in origin form");
  }
  std::string uri = deps_.dpop_scheme + "://";
  uri.append(hosts[0]);
  uri.append(request.target);
  return deps_.dpop->Verify(proofs[0], request.method, uri, access_token,
                            deps_.clock->NowUnixSeconds(), expected_jkt);
}

core::Result<Caller> Pipeline::AuthenticateRequest(const AgentRequest& request,
                                                   std::string* challenge) const {
  auto refuse = [challenge](core::Error error, std::string value) -> core::Result<Caller> {
    if (challenge != nullptr) *challenge = std::move(value);
    return error;
  };
  const std::vector<std::string_view> auth = HeaderValues(request, "authorization");
  if (auth.empty()) {
    return refuse(MakeError(ErrorCode::kUnauthenticated,
                            "no token: send Authorization: Bearer <token> or DPoP <token>"),
                  NoCredentialsChallenge());
  }
  if (auth.size() > 1) {
    return refuse(MakeError(ErrorCode::kUnauthenticated, "more than one Authorization header"),
                  NoCredentialsChallenge());
  }
  auto credentials = ParseAuthorization(auth[0]);
  if (!credentials.ok()) return refuse(std::move(credentials).error(), NoCredentialsChallenge());

  auto caller = VerifyToken(credentials->token);
  if (!caller.ok()) {
    const ErrorCode code = caller.error().code;
    return refuse(std::move(caller).error(), TokenChallenge(credentials->scheme, code));
  }
  const std::optional<std::string>& cnf_jkt = caller->claims->cnf_jkt;
  if (credentials->scheme == Scheme::kBearer) {
    // RFC 9449 section 7.2: a bound token presented as a bearer token is refused, or a copied
    // token would be usable without the key. The challenge names the scheme to use.
    if (cnf_jkt) {
      return refuse(
          MakeError(ErrorCode::kDpopInvalid,
                    "the token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof"),
          TokenChallenge(Scheme::kDpop, ErrorCode::kDpopInvalid));
    }
    return caller;
  }
  // RFC 9449 section 5: a token issued as token_type Bearer (unbound) is used as Bearer; a proof
  // would bind it to nothing, so the DPoP scheme with it is refused rather than ignored.
  if (!cnf_jkt) {
    return refuse(MakeError(ErrorCode::kDpopInvalid,
                            "the token is not DPoP-bound: present it as Authorization: Bearer"),
                  TokenChallenge(Scheme::kDpop, ErrorCode::kDpopInvalid));
  }
  // RFC 9449 section 4.3 (every check, including ath and the cnf.jkt binding) and section 7.1.
  auto proof = VerifyProof(request, credentials->token, *cnf_jkt);
  if (!proof.ok()) return refuse(std::move(proof).error(), ProofChallenge());
  // Verify compared the thumbprints; this also refuses an empty cnf.jkt, which Verify would
  // read as "any key" (Claims never holds one: belt and braces on the authorization path).
  if (auto bound = identity::CheckDpopBinding(*proof, *cnf_jkt); !bound.ok()) {
    return refuse(std::move(bound).error(), ProofChallenge());
  }
  return caller;
}

core::Result<Pipeline::SubjectAuth> Pipeline::AuthenticateSubjectToken(
    std::string_view subject_token, const AgentRequest& request) const {
  SubjectAuth out;
  MANDATE_ASSIGN_OR_RETURN(out.caller, VerifyToken(subject_token));
  const std::optional<std::string>& cnf_jkt = out.caller.claims->cnf_jkt;
  if (HeaderValues(request, "dpop").empty()) {
    // A bound subject token must come with a proof of its key: the token endpoint is one more
    // place a copied token must be useless (RFC 9449 sections 5 and 7.2).
    if (cnf_jkt) {
      return MakeError(
          ErrorCode::kDpopInvalid,
          "the subject_token is DPoP-bound: the request needs a DPoP proof of its key");
    }
    return out;
  }
  // At the token endpoint no access token is presented in Authorization, so a proof carries no
  // ath (RFC 9449 section 4.3 check 12 applies to protected resources).
  MANDATE_ASSIGN_OR_RETURN(
      identity::DpopProof proof,
      VerifyProof(request, {}, cnf_jkt ? std::string_view(*cnf_jkt) : std::string_view()));
  if (cnf_jkt) MANDATE_RETURN_IF_ERROR(identity::CheckDpopBinding(proof, *cnf_jkt));
  out.proof = std::move(proof);
  return out;
}

}  // namespace mandate::gateway
