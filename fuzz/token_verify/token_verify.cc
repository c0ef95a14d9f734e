// Fuzz target: identity::TokenVerifier::Verify, the first thing every agent request meets
// (the bearer token is attacker-controlled bytes).
//
// Two node key sets are made once, in a temporary directory removed right after loading: one
// EdDSA (Ed25519) and one ES256 (P-256), each with its verifier (issuer
// "https://mandate.example", audience "mandate", a FakeClock at 1767000000, a small cache so
// eviction runs too). The keys are fresh random keys, so no seed can carry a valid signature.
//
// Input format: the first byte picks the mode and the key set, the rest is the mode's input.
//   'r' / 'R'  raw: the rest is the token, verbatim.
//   'u' / 'U'  unsigned structure: the rest is "<header>\n<payload>\n<signature>" (raw bytes,
//              split at the first two newlines); each part is base64url-encoded and the three
//              are joined with dots, so mutations get past the segment split and base64url.
//   's' / 'S'  signed structure: "<header>\n<payload>"; the token is signed with the node's
//              real active key, so mutations reach the payload and claims rules that sit
//              behind the signature check.
//   'p' / 'P'  signed payload: the rest is the payload; the header is the valid one.
//   lower case = EdDSA key set, upper case = ES256; any other byte maps onto one of the eight.
// In the structured modes, "$KID" in the header is replaced by the active key's kid, so the
// kid rule can be passed too.
//
// Invariants (a violation traps, so libFuzzer saves the input):
//   - raw and unsigned modes: Verify never succeeds (nobody but the node can sign), and
//     refuses with kUnauthenticated only (expiry is checked after the signature);
//   - signed modes: a refusal is kUnauthenticated or kTokenExpired; an acceptance implies every
//     rule of token_verifier.h: header alg exactly the configured one, no "crit", typ at+jwt,
//     claims that validate, the configured issuer and audience, exp/nbf/iat within the clock
//     skew. The accepted claims survive Claims::ToJson/FromJson, a second Verify (cache hit)
//     returns the same claims, and the token with a different signature is refused.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "mandate/core/clock.h"
#include "mandate/core/encoding.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/jws_key.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_verifier.h"

namespace {

using mandate::core::ErrorCode;
using mandate::core::Json;
namespace identity = mandate::identity;

constexpr char kIssuer[] = "https://mandate.example";
constexpr char kAudience[] = "mandate";
constexpr int64_t kSkewSeconds = 30;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void Die(const char* what, const std::string& why) {
  std::fprintf(stderr, "token_verify fuzzer setup: %s: %s\n", what, why.c_str());
  std::abort();
}

struct KeySet {
  std::unique_ptr<identity::SigningKeys> keys;
  std::unique_ptr<identity::TokenVerifier> verifier;
  identity::Alg alg;
};

struct Env {
  mandate::core::FakeClock clock;  // 1767000000
  KeySet eddsa;
  KeySet es256;

  Env() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mandate_fuzz_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp", tmpl);
    Load(tmpl + "/eddsa", identity::Alg::kEdDSA, &eddsa);
    Load(tmpl + "/es256", identity::Alg::kES256, &es256);
    // The keys are in memory now; nothing is left behind on disk.
    std::error_code ec;
    std::filesystem::remove_all(tmpl, ec);
  }

  void Load(const std::string& dir, identity::Alg alg, KeySet* out) {
    auto keys = identity::SigningKeys::LoadOrCreate(dir, alg);
    if (!keys.ok()) Die("SigningKeys::LoadOrCreate", keys.error().message);
    out->keys = std::move(keys).value();
    out->alg = alg;
    identity::VerifierOptions options;
    options.issuer = kIssuer;
    options.audience = kAudience;
    options.alg = alg;
    options.clock_skew_seconds = kSkewSeconds;
    options.cache_entries_max = 64;  // small, so the eviction paths run
    auto verifier = identity::TokenVerifier::Create(options, *out->keys, clock);
    if (!verifier.ok()) Die("TokenVerifier::Create", verifier.error().message);
    out->verifier = std::move(verifier).value();
  }
};

Env& GetEnv() {
  static Env* env = new Env();  // never destroyed: the fuzzer may exit at any point
  return *env;
}

// Splits at the first `parts - 1` newlines; missing parts are empty.
void Split(std::string_view in, std::string* out, size_t parts) {
  for (size_t i = 0; i < parts; ++i) {
    size_t nl = i + 1 < parts ? in.find('\n') : std::string_view::npos;
    if (nl == std::string_view::npos) {
      out[i] = std::string(in);
      in = {};
    } else {
      out[i] = std::string(in.substr(0, nl));
      in.remove_prefix(nl + 1);
    }
  }
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  for (size_t pos = s->find(from); pos != std::string::npos; pos = s->find(from, pos + to.size())) {
    s->replace(pos, from.size(), to);
  }
}


void CheckUnsignedRefused(const KeySet& ks, std::string_view token) {
  auto r = ks.verifier->Verify(token);
  Check(!r.ok());
  Check(r.error().code == ErrorCode::kUnauthenticated);
}

// The token "<header>.<payload>.<signature>" with the node's real signature: whatever Verify
// accepts must satisfy every rule.
void CheckSigned(const Env& env, const KeySet& ks, const std::string& header,
                 const std::string& payload) {
  const std::string signing_input =
      mandate::core::Base64UrlEncode(header) + "." + mandate::core::Base64UrlEncode(payload);
  auto signature = ks.keys->Active()->Sign(signing_input);
  Check(signature.ok());
  const std::string sig_b64 = mandate::core::Base64UrlEncode(*signature);
  const std::string token = signing_input + "." + sig_b64;

  auto r = ks.verifier->Verify(token);
  if (!r.ok()) {
    Check(r.error().code == ErrorCode::kUnauthenticated ||
          r.error().code == ErrorCode::kTokenExpired);
    return;
  }
  const identity::Claims& claims = **r;

  // Header rules.
  auto h = Json::Parse(header);
  Check(h.ok() && h->is_object());
  const std::string* alg = h->FindString("alg");
  Check(alg != nullptr && *alg == identity::AlgName(ks.alg));
  Check(h->Find("crit") == nullptr);
  const std::string* typ = h->FindString("typ");
  Check(typ != nullptr &&
        (mandate::core::AsciiEqualsIgnoreCase(*typ, "at+jwt") ||
         mandate::core::AsciiEqualsIgnoreCase(*typ, "application/at+jwt")));
  const std::string* kid = h->FindString("kid");
  Check(kid != nullptr && ks.keys->Find(*kid) != nullptr);

  // Claims rules.
  Check(claims.Validate().ok());
  Check(claims.iss == kIssuer);
  Check(claims.HasAudience(kAudience));
  const int64_t now = env.clock.NowUnixSeconds();
  Check(claims.exp > now - kSkewSeconds);
  Check(claims.nbf <= now + kSkewSeconds);
  Check(claims.iat <= now + kSkewSeconds);

  // The claims are a faithful reading of the payload.
  auto p = Json::Parse(payload);
  Check(p.ok() && p->is_object());
  auto from_payload = identity::Claims::FromJson(*p);
  Check(from_payload.ok() && *from_payload == claims);
  auto round_trip = identity::Claims::FromJson(claims.ToJson());
  Check(round_trip.ok() && *round_trip == claims);

  // A cache hit answers the same.
  auto again = ks.verifier->Verify(token);
  Check(again.ok() && **again == claims);

  // Another signature over the same input is refused (the first base64url character carries
  // six signature bits, so changing it changes the signature).
  std::string forged = token;
  char& c = forged[signing_input.size() + 1];
  c = c == 'A' ? 'B' : 'A';
  CheckUnsignedRefused(ks, forged);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& env = GetEnv();
  static constexpr char kModes[] = "rusp" "RUSP";
  char mode = static_cast<char>(data[0]);
  if (std::string_view(kModes, 8).find(mode) == std::string_view::npos) mode = kModes[data[0] % 8];
  const KeySet& ks = (mode >= 'a' && mode <= 'z') ? env.eddsa : env.es256;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string kid = ks.keys->Active()->kid();

  switch (mode) {
    case 'r':
    case 'R':
      CheckUnsignedRefused(ks, rest);
      break;
    case 'u':
    case 'U': {
      std::string parts[3];
      Split(rest, parts, 3);
      ReplaceAll(&parts[0], "$KID", kid);
      const std::string token = mandate::core::Base64UrlEncode(parts[0]) + "." +
                                mandate::core::Base64UrlEncode(parts[1]) + "." +
                                mandate::core::Base64UrlEncode(parts[2]);
      CheckUnsignedRefused(ks, token);
      break;
    }
    case 's':
    case 'S': {
      std::string parts[2];
      Split(rest, parts, 2);
      ReplaceAll(&parts[0], "$KID", kid);
      CheckSigned(env, ks, parts[0], parts[1]);
      break;
    }
    default: {  // 'p', 'P'
      Json header = Json::MakeObject();
      header.Set("alg", std::string(identity::AlgName(ks.alg)));
      header.Set("typ", "at+jwt");
      header.Set("kid", kid);
      CheckSigned(env, ks, header.Dump(), std::string(rest));
      break;
    }
  }
  return 0;
}
