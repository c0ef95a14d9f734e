#include "mandate/identity/dpop.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mandate/core/check.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;

namespace {

// Past 2^62 seconds the iat arithmetic below could overflow; no wall clock gets there.
constexpr int64_t kNowUnixSecondsMax = int64_t{1} << 62;

// Every refusal is kDpopInvalid. Messages name the rule only: a proof, a token or a key must
// never end up in an error, a log or a response.
core::Error Reject(std::string reason) {
  return MakeError(ErrorCode::kDpopInvalid, "DPoP proof refused: " + std::move(reason));
}

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (AsciiLower(c) >= 'a' && AsciiLower(c) <= 'f'); }
bool IsBase64Url(char c) { return IsAlpha(c) || IsDigit(c) || c == '-' || c == '_'; }
// RFC 3986 section 2.3.
bool IsUnreserved(char c) { return IsBase64Url(c) || c == '.' || c == '~'; }
// RFC 3986 section 2.2.
bool IsSubDelim(char c) {
  return std::string_view("!$&'()*+,;=").find(c) != std::string_view::npos;
}

int HexValue(char c) { return IsDigit(c) ? c - '0' : AsciiLower(c) - 'a' + 10; }

// Appends `in` with RFC 3986 section 6.2.2.2 percent-encoding normalization: a triplet of an
// unreserved character is decoded, any other keeps its escape with uppercase hex digits.
// Bytes for which `allowed` is false, and a '%' not followed by two hex digits, fail.
// `lower` lowercases everything but the hex digits of escapes (for the host).
bool AppendPercentNormalized(std::string_view in, bool (*allowed)(char), bool lower,
                             std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      if (!IsHexDigit(in[i + 1]) || !IsHexDigit(in[i + 2])) return false;
      const char decoded = static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2]));
      if (IsUnreserved(decoded)) {
        out->push_back(lower ? AsciiLower(decoded) : decoded);
      } else {
        out->push_back('%');
        out->push_back(kHex[HexValue(in[i + 1])]);
        out->push_back(kHex[HexValue(in[i + 2])]);
      }
      i += 2;
    } else if (allowed(c)) {
      out->push_back(lower ? AsciiLower(c) : c);
    } else {
      return false;
    }
  }
  return true;
}

// reg-name (RFC 3986 section 3.2.2), without its pct-encoded triplets.
bool IsRegNameChar(char c) { return IsUnreserved(c) || IsSubDelim(c); }
// pchar and "/" (RFC 3986 section 3.3), without pct-encoded triplets.
bool IsPathChar(char c) {
  return IsUnreserved(c) || IsSubDelim(c) || c == ':' || c == '@' || c == '/';
}

// RFC 3986 section 5.2.4, for an absolute path (it starts with '/').
std::string RemoveDotSegments(std::string_view in) {
  std::string out;
  auto pop_segment = [&out] {
    const size_t slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {
      in.remove_prefix(2);  // leaves "/..."
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {
      in.remove_prefix(3);  // leaves "/..."
      pop_segment();
    } else if (in == "/..") {
      in = "/";
      pop_segment();
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      // Move the first segment, with its leading '/', to the output.
      const size_t end = in.find('/', 1);
      const size_t n = end == std::string_view::npos ? in.size() : end;
      out.append(in.substr(0, n));
      in.remove_prefix(n);
    }
  }
  return out;
}

}  // namespace

std::string DpopAccessTokenHash(std::string_view access_token) {
  const core::Sha256Digest d = core::Sha256(access_token);
  return core::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

Result<std::string> NormalizeDpopHtu(std::string_view uri) {
  auto invalid = [](std::string_view why) {
    return MakeError(ErrorCode::kDpopInvalid, "not an absolute http(s) URI: " + std::string(why));
  };
  // Query and fragment are not part of htu (RFC 9449 section 4.2); neither can occur earlier
  // in the URI, so the first '?' or '#' ends what is compared.
  uri = uri.substr(0, uri.find_first_of("?#"));
  if (uri.size() > core::kDpopHtuBytesMax) {
    return invalid("longer than " + std::to_string(core::kDpopHtuBytesMax) + " bytes");
  }

  const size_t colon = uri.find(':');
  if (colon == std::string_view::npos) return invalid("no scheme");
  const std::string scheme = AsciiLower(uri.substr(0, colon));
  if (scheme != "http" && scheme != "https") return invalid("the scheme is not http or https");
  std::string_view rest = uri.substr(colon + 1);
  if (!rest.starts_with("//")) return invalid("no authority (\"//host\")");
  rest.remove_prefix(2);
  const size_t path_start = rest.find('/');
  const std::string_view authority = rest.substr(0, path_start);
  const std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) return invalid("it has userinfo");

  std::string out = scheme + "://";
  std::string_view host;
  std::string_view port;
  if (authority.starts_with("[")) {
    // IP-literal: an IPv6 address (no zone identifier, no IPvFuture).
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalid("an unterminated IP literal");
    host = authority.substr(0, close + 1);
    for (char c : host.substr(1, host.size() - 2)) {
      if (!IsHexDigit(c) && c != ':' && c != '.') return invalid("a malformed IP literal");
    }
    if (host.size() == 2) return invalid("an empty IP literal");
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after[0] != ':') return invalid("bytes after the IP literal");
    if (!after.empty()) port = after.substr(1);
    out += AsciiLower(host);
  } else {
    const size_t port_colon = authority.find(':');
    host = authority.substr(0, port_colon);
    if (port_colon != std::string_view::npos) port = authority.substr(port_colon + 1);
    if (host.empty()) return invalid("an empty host");
    if (!AppendPercentNormalized(host, IsRegNameChar, /*lower=*/true, &out)) {
      return invalid("a byte not allowed in a host name");
    }
  }

  // Port: digits; empty or the scheme's default is removed (RFC 3986 section 6.2.3).
  if (!port.empty()) {
    uint32_t value = 0;
    for (char c : port) {
      if (!IsDigit(c)) return invalid("a port that is not a number");
      value = value * 10 + static_cast<uint32_t>(c - '0');
      if (value > 65535) return invalid("a port above 65535");
    }
    const uint32_t default_port = scheme == "https" ? 443 : 80;
    if (value != default_port) out += ":" + std::to_string(value);
  }

  std::string normalized_path;
  if (!AppendPercentNormalized(path, IsPathChar, /*lower=*/false, &normalized_path)) {
    return invalid("a byte not allowed in a path, or a malformed percent-escape");
  }
  out += normalized_path.empty() ? "/" : RemoveDotSegments(normalized_path);
  return out;
}

core::Status CheckDpopBinding(const DpopProof& proof, std::string_view cnf_jkt) {
  if (cnf_jkt.empty()) return Reject("the token names no key (empty cnf.jkt)");
  if (!core::ConstantTimeEquals(proof.jkt, cnf_jkt)) {
    return Reject("the proof's key is not the key the token is bound to (cnf.jkt)");
  }
  return core::OkStatus();
}

// Invariant: `live` and `by_expiry` hold the same digests, each once; every entry whose
// proof could still pass the iat rule (expiry >= newest_now) is in them.
struct DpopVerifier::ReplayCache {
  using Entry = std::pair<int64_t, core::Sha256Digest>;  // (iat + iat_past_seconds, key)

  std::mutex mu;
  std::set<core::Sha256Digest> live;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> by_expiry;
  int64_t newest_now = 0;  // the latest `now` Verify was given
};

DpopVerifier::DpopVerifier(DpopVerifierOptions options)
    : options_(options), cache_(std::make_unique<ReplayCache>()) {}

DpopVerifier::~DpopVerifier() = default;

Result<std::unique_ptr<DpopVerifier>> DpopVerifier::Create(DpopVerifierOptions options) {
  const std::string window_max = std::to_string(core::kDpopIatWindowSecondsMax);
  if (options.iat_past_seconds < 1 || options.iat_past_seconds > core::kDpopIatWindowSecondsMax) {
    return MakeError(ErrorCode::kInternal, "DPoP iat_past_seconds must be 1.." + window_max);
  }
  if (options.iat_future_seconds < 0 ||
      options.iat_future_seconds > core::kDpopIatWindowSecondsMax) {
    return MakeError(ErrorCode::kInternal, "DPoP iat_future_seconds must be 0.." + window_max);
  }
  if (options.replay_entries_max == 0 || options.replay_entries_max > core::kDpopReplayEntriesMax) {
    return MakeError(ErrorCode::kInternal, "DPoP replay_entries_max must be 1.." +
                                               std::to_string(core::kDpopReplayEntriesMax));
  }
  return std::unique_ptr<DpopVerifier>(new DpopVerifier(options));
}

size_t DpopVerifier::replay_entries() const {
  std::lock_guard lock(cache_->mu);
  return cache_->live.size();
}

Result<DpopProof> DpopVerifier::Verify(std::string_view proof_jwt, std::string_view http_method,
                                       std::string_view http_uri, std::string_view access_token,
                                       int64_t now_unix_seconds,
                                       std::string_view expected_jkt) const {
  const int64_t now = now_unix_seconds;
  if (now < 0 || now >= kNowUnixSecondsMax) {
    return MakeError(ErrorCode::kInternal, "DPoP verification: the clock is out of range");
  }

  // Rules 1 and 2: one proof, bounded, of the JWS compact alphabet only.
  if (proof_jwt.empty()) return Reject("no proof (empty DPoP header)");
  if (proof_jwt.size() > core::kDpopProofBytesMax) {
    return Reject("longer than " + std::to_string(core::kDpopProofBytesMax) + " bytes");
  }
  if (proof_jwt.find(',') != std::string_view::npos) {
    return Reject("the DPoP header holds more than one proof (',')");
  }
  for (char c : proof_jwt) {
    if (!IsBase64Url(c) && c != '.') {
      return Reject("a byte outside base64url and '.' (whitespace, padding or a second proof)");
    }
  }

  // Rule 3: three non-empty segments.
  const size_t dot1 = proof_jwt.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : proof_jwt.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || proof_jwt.find('.', dot2 + 1) != std::string_view::npos ||
      dot1 == 0 || dot2 == dot1 + 1 || dot2 + 1 == proof_jwt.size()) {
    return Reject("not a JWS compact serialization (three base64url segments)");
  }
  const std::string_view signing_input = proof_jwt.substr(0, dot2);

  // Rule 4: header and typ.
  auto header_bytes = core::Base64UrlDecode(proof_jwt.substr(0, dot1));
  if (!header_bytes) return Reject("the header is not base64url");
  auto header = Json::Parse(*header_bytes, core::kDpopProofBytesMax);
  if (!header.ok() || !header->is_object()) return Reject("the header is not a JSON object");
  const std::string* typ = header->FindString("typ");
  if (typ == nullptr) return Reject("the header has no \"typ\"");
  const std::string typ_lower = AsciiLower(*typ);
  if (typ_lower != "dpop+jwt" && typ_lower != "application/dpop+jwt") {
    return Reject("\"typ\" is not dpop+jwt");
  }

  // Rule 5: alg. AlgFromName is exact and knows only asymmetric algorithms.
  const std::string* alg_name = header->FindString("alg");
  if (alg_name == nullptr) return Reject("the header has no \"alg\"");
  const std::optional<Alg> alg = AlgFromName(*alg_name);
  if (!alg) return Reject("\"alg\" is not a supported asymmetric algorithm (EdDSA, ES256)");

  // Rule 6.
  if (header->Find("crit") != nullptr) {
    return Reject("the header has \"crit\"; no JWS extension is supported");
  }

  // Rule 7: the key is the header's own public jwk (FromPublicJwk refuses "d").
  const Json* jwk = header->FindObject("jwk");
  if (jwk == nullptr) return Reject("the header has no \"jwk\" object");
  auto key = JwsKey::FromPublicJwk(*jwk);
  if (!key.ok()) return Reject("\"jwk\" is not a supported public key: " + key.error().message);
  if ((*key)->alg() != *alg) return Reject("\"alg\" does not match the key type of \"jwk\"");

  // Rule 8: signature, over the ASCII bytes "<header>.<payload>" exactly as received.
  auto signature = core::Base64UrlDecode(proof_jwt.substr(dot2 + 1));
  if (!signature) return Reject("the signature is not base64url");
  if (!(*key)->Verify(signing_input, *signature)) return Reject("the signature is invalid");

  // Rule 9: payload (authenticated from here on).
  auto payload_bytes = core::Base64UrlDecode(proof_jwt.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload_bytes) return Reject("the payload is not base64url");
  auto payload = Json::Parse(*payload_bytes, core::kDpopProofBytesMax);
  if (!payload.ok() || !payload->is_object()) return Reject("the payload is not a JSON object");
  const std::string* jti = payload->FindString("jti");
  if (jti == nullptr) return Reject("no \"jti\" string");
  if (jti->empty()) return Reject("\"jti\" is empty");
  if (jti->size() > core::kDpopJtiBytesMax) {
    return Reject("\"jti\" is longer than " + std::to_string(core::kDpopJtiBytesMax) + " bytes");
  }

  // Rule 10.
  const std::string* htm = payload->FindString("htm");
  if (htm == nullptr) return Reject("no \"htm\" string");
  if (*htm != http_method) return Reject("\"htm\" does not match the request method");

  // Rule 11.
  const std::string* htu = payload->FindString("htu");
  if (htu == nullptr) return Reject("no \"htu\" string");
  auto proof_htu = NormalizeDpopHtu(*htu);
  if (!proof_htu.ok()) return Reject("\"htu\" is " + proof_htu.error().message);
  auto request_htu = NormalizeDpopHtu(http_uri);
  if (!request_htu.ok()) return Reject("the request URI is " + request_htu.error().message);
  if (*proof_htu != *request_htu) return Reject("\"htu\" does not match the request URI");

  // Rule 12. Invariant for the replay cache: an accepted iat is within [now - past,
  // now + future], so iat + past cannot overflow.
  const Json* iat_json = payload->Find("iat");
  if (iat_json == nullptr || !iat_json->is_int()) return Reject("no integer \"iat\"");
  const int64_t iat = iat_json->as_int();
  if (iat < now - options_.iat_past_seconds) {
    return Reject("too old (\"iat\" more than " + std::to_string(options_.iat_past_seconds) +
                  " s in the past)");
  }
  if (iat > now + options_.iat_future_seconds) {
    return Reject("issued in the future (\"iat\" more than " +
                  std::to_string(options_.iat_future_seconds) + " s ahead)");
  }

  // Rule 13.
  const Json* ath = payload->Find("ath");
  if (!access_token.empty()) {
    if (ath == nullptr || !ath->is_string()) {
      return Reject("no \"ath\" string, but an access token was presented");
    }
    if (!core::ConstantTimeEquals(ath->as_string(), DpopAccessTokenHash(access_token))) {
      return Reject("\"ath\" does not match the access token");
    }
  } else if (ath != nullptr) {
    return Reject("\"ath\" is present, but no access token was presented");
  }

  DpopProof proof;
  proof.jkt = (*key)->kid();  // FromPublicJwk names every key by its RFC 7638 thumbprint
  proof.jti = *jti;
  proof.iat = iat;
  proof.alg = *alg;

  // Rule 14.
  if (!expected_jkt.empty()) MANDATE_RETURN_IF_ERROR(CheckDpopBinding(proof, expected_jkt));

  // Rule 15: the replay cache, last, so that a refused proof does not spend its jti. jkt is
  // base64url (no '.'), so "jkt.jti" names one pair only.
  const core::Sha256Digest replay_key = core::Sha256Concat(proof.jkt, ".", proof.jti);
  const int64_t expiry = iat + options_.iat_past_seconds;
  ReplayCache& cache = *cache_;
  std::lock_guard lock(cache.mu);
  cache.newest_now = std::max(cache.newest_now, now);
  // Entries whose proofs can no longer pass rule 12 are dropped; only those.
  while (!cache.by_expiry.empty() && cache.by_expiry.top().first < cache.newest_now) {
    cache.live.erase(cache.by_expiry.top().second);
    cache.by_expiry.pop();
  }
  MANDATE_DCHECK(cache.live.size() == cache.by_expiry.size());
  if (expiry < cache.newest_now) {
    // Only reachable when `now` went back: this proof's entry may already have been dropped.
    return Reject("too old for the replay window (the clock went back)");
  }
  if (cache.live.contains(replay_key)) return Reject("already used (the jti was replayed)");
  if (cache.live.size() >= options_.replay_entries_max) {
    return Reject("the replay cache is full; retry when older proofs have expired");
  }
  cache.live.insert(replay_key);
  cache.by_expiry.emplace(expiry, replay_key);
  return proof;
}

}  // namespace mandate::identity
