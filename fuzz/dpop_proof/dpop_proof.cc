// Fuzz target: identity::DpopVerifier::Verify and identity::NormalizeDpopHtu. A DPoP proof is
// attacker-controlled bytes from a request header, and it carries its own key.
//
// Two key pairs are made once: one Ed25519 (EdDSA) and one P-256 (ES256). Every input gets a
// fresh verifier (default window, a replay cache of 2 entries) so runs are deterministic; the
// request is POST https://mandate.example/mcp at now = 1767000000.
//
// Input format: the first byte picks the mode (any other byte maps onto one of the eight).
//   'r' / 'R'  raw: the rest is the proof, verbatim; 'r' with the access token "tok"
//              presented, 'R' with none.
//   's' / 'S'  signed structure: the rest is "<flags><header>\n<payload>" (raw bytes, split at
//              the first newline); each part is base64url-encoded and the token is signed with
//              the EdDSA ('s') or ES256 ('S') key, so mutations reach the rules behind the
//              signature check. "$JWK" in the header becomes the key's public JWK.
//   'p' / 'P'  signed payload: the rest is "<flags><payload>"; the header is the valid one.
//   'n' / 'N'  htu: the rest is a URI for NormalizeDpopHtu.
// In the signed modes "$ATH" in the payload becomes DpopAccessTokenHash("tok"), and the flags
// byte says: bit 0 set = the access token "tok" is presented; bit 1 set = the key's jkt is
// expected (bit 2 set as well: another key's jkt is expected).
//
// Invariants (a violation traps, so libFuzzer saves the input):
//   - Verify returns a proof or kDpopInvalid, nothing else;
//   - an accepted proof satisfies every rule of dpop.h, checked here independently: typ, alg
//     and the jwk's thumbprint in the header, htm, htu (normalized), iat window, jti bounds, ath
//     against the presented token, the expected jkt; the same proof verified again is
//     refused as a replay;
//   - in the signed modes, the proof with another signature is refused;
//   - NormalizeDpopHtu fails with kDpopInvalid only, and on success is idempotent, starts with
//     "http://" or "https://" and has no query or fragment.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "mandate/core/encoding.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/identity/dpop.h"
#include "mandate/identity/jws_key.h"

namespace {

using mandate::core::ErrorCode;
using mandate::core::Json;
namespace core = mandate::core;
namespace identity = mandate::identity;

constexpr char kMethod[] = "POST";
constexpr char kUri[] = "https://mandate.example/mcp";
constexpr char kToken[] = "tok";
constexpr int64_t kNow = 1767000000;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Env {
  std::shared_ptr<const identity::JwsKey> eddsa;
  std::shared_ptr<const identity::JwsKey> es256;

  Env() : eddsa(Generate(identity::Alg::kEdDSA)), es256(Generate(identity::Alg::kES256)) {}

  static std::shared_ptr<const identity::JwsKey> Generate(identity::Alg alg) {
    auto key = identity::JwsKey::Generate(alg);
    if (!key.ok()) {
      std::fprintf(stderr, "dpop_proof fuzzer setup: %s\n", key.error().message.c_str());
      std::abort();
    }
    return *key;
  }
};

Env& GetEnv() {
  static Env* env = new Env();  // never destroyed: the fuzzer may exit at any point
  return *env;
}

std::unique_ptr<identity::DpopVerifier> NewVerifier() {
  auto v = identity::DpopVerifier::Create({.replay_entries_max = 2});
  Check(v.ok());
  return std::move(v).value();
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  for (size_t pos = s->find(from); pos != std::string::npos; pos = s->find(from, pos + to.size())) {
    s->replace(pos, from.size(), to);
  }
}

std::string Lower(std::string s) {
  for (char& c : s) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return s;
}

struct Request {
  std::string_view access_token;
  std::string_view expected_jkt;
};

// Verifies `proof` for `req` with a fresh verifier and checks every invariant of an answer.
void CheckVerify(std::string_view proof, const Request& req) {
  auto verifier = NewVerifier();
  auto r = verifier->Verify(proof, kMethod, kUri, req.access_token, kNow, req.expected_jkt);
  if (!r.ok()) {
    Check(r.error().code == ErrorCode::kDpopInvalid);
    return;
  }

  // Independent reading of the accepted proof.
  Check(!proof.empty() && proof.size() <= core::kDpopProofBytesMax);
  const size_t dot1 = proof.find('.');
  const size_t dot2 = proof.rfind('.');
  Check(dot1 != std::string_view::npos && dot2 > dot1 + 1);
  auto header_bytes = core::Base64UrlDecode(proof.substr(0, dot1));
  auto payload_bytes = core::Base64UrlDecode(proof.substr(dot1 + 1, dot2 - dot1 - 1));
  Check(header_bytes.has_value() && payload_bytes.has_value());
  auto header = Json::Parse(*header_bytes);
  auto payload = Json::Parse(*payload_bytes);
  Check(header.ok() && header->is_object() && payload.ok() && payload->is_object());

  const std::string* typ = header->FindString("typ");
  Check(typ != nullptr && (Lower(*typ) == "dpop+jwt" || Lower(*typ) == "application/dpop+jwt"));
  const std::string* alg = header->FindString("alg");
  Check(alg != nullptr && *alg == identity::AlgName(r->alg));
  Check(header->Find("crit") == nullptr);
  const Json* jwk = header->FindObject("jwk");
  Check(jwk != nullptr && jwk->Find("d") == nullptr);
  auto thumbprint = identity::JwkThumbprint(*jwk);
  Check(thumbprint.ok() && *thumbprint == r->jkt);
  if (!req.expected_jkt.empty()) Check(r->jkt == req.expected_jkt);

  const std::string* jti = payload->FindString("jti");
  Check(jti != nullptr && *jti == r->jti && !jti->empty() && jti->size() <= core::kDpopJtiBytesMax);
  const std::string* htm = payload->FindString("htm");
  Check(htm != nullptr && *htm == kMethod);
  const std::string* htu = payload->FindString("htu");
  Check(htu != nullptr);
  auto htu_norm = identity::NormalizeDpopHtu(*htu);
  Check(htu_norm.ok() && *htu_norm == kUri);
  const Json* iat = payload->Find("iat");
  Check(iat != nullptr && iat->is_int() && iat->as_int() == r->iat);
  Check(r->iat >= kNow - core::kDpopIatPastSecondsDefault &&
        r->iat <= kNow + core::kDpopIatFutureSecondsDefault);
  const Json* ath = payload->Find("ath");
  if (req.access_token.empty()) {
    Check(ath == nullptr);
  } else {
    Check(ath != nullptr && ath->is_string() &&
          ath->as_string() == identity::DpopAccessTokenHash(req.access_token));
  }

  // The same proof again is a replay.
  auto again = verifier->Verify(proof, kMethod, kUri, req.access_token, kNow, req.expected_jkt);
  Check(!again.ok() && again.error().code == ErrorCode::kDpopInvalid);
}

// Signs "<header>.<payload>" with `key`, verifies it, and verifies it with another signature.
void CheckSigned(const identity::JwsKey& key, const identity::JwsKey& other, uint8_t flags,
                 std::string header, std::string payload) {
  ReplaceAll(&header, "$JWK", key.PublicJwk().Dump());
  ReplaceAll(&payload, "$ATH", identity::DpopAccessTokenHash(kToken));
  const std::string input = core::Base64UrlEncode(header) + "." + core::Base64UrlEncode(payload);
  auto signature = key.Sign(input);
  Check(signature.ok());
  const std::string proof = input + "." + core::Base64UrlEncode(*signature);

  Request req;
  if (flags & 1) req.access_token = kToken;
  if (flags & 2) req.expected_jkt = (flags & 4) ? other.kid() : key.kid();
  CheckVerify(proof, req);

  // Another signature over the same input (the first base64url character of the signature
  // carries six of its bits) never verifies.
  std::string forged = proof;
  char& c = forged[input.size() + 1];
  c = c == 'A' ? 'B' : 'A';
  auto r = NewVerifier()->Verify(forged, kMethod, kUri, req.access_token, kNow, req.expected_jkt);
  Check(!r.ok() && r.error().code == ErrorCode::kDpopInvalid);
}

void CheckNormalize(std::string_view uri) {
  auto r = identity::NormalizeDpopHtu(uri);
  if (!r.ok()) {
    Check(r.error().code == ErrorCode::kDpopInvalid);
    return;
  }
  Check(r->starts_with("http://") || r->starts_with("https://"));
  Check(r->find_first_of("?#") == std::string::npos);
  auto again = identity::NormalizeDpopHtu(*r);
  Check(again.ok() && *again == *r);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& env = GetEnv();
  static constexpr char kModes[] =
      "rspn"
      "RSPN";
  char mode = static_cast<char>(data[0]);
  if (std::string_view(kModes, 8).find(mode) == std::string_view::npos) mode = kModes[data[0] % 8];
  const bool lower = mode >= 'a' && mode <= 'z';
  const identity::JwsKey& key = lower ? *env.eddsa : *env.es256;
  const identity::JwsKey& other = lower ? *env.es256 : *env.eddsa;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);

  switch (mode) {
    case 'r':
    case 'R':
      CheckVerify(rest, Request{.access_token = lower ? kToken : ""});
      break;
    case 'n':
    case 'N':
      CheckNormalize(rest);
      break;
    default: {
      const uint8_t flags = rest.empty() ? 0 : static_cast<uint8_t>(rest[0]);
      if (!rest.empty()) rest.remove_prefix(1);
      if (mode == 's' || mode == 'S') {
        const size_t nl = rest.find('\n');
        const std::string_view header = rest.substr(0, nl);
        const std::string_view payload =
            nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        CheckSigned(key, other, flags, std::string(header), std::string(payload));
      } else {  // 'p', 'P'
        Json header = Json::MakeObject();
        header.Set("typ", "dpop+jwt");
        header.Set("alg", std::string(identity::AlgName(key.alg())));
        header.Set("jwk", key.PublicJwk());
        CheckSigned(key, other, flags, header.Dump(), std::string(rest));
      }
      break;
    }
  }
  return 0;
}
