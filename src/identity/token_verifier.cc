#include "mandate/identity/token_verifier.h"

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;
using core::Status;

namespace {

constexpr int64_t kClockSkewSecondsMax = 300;
constexpr size_t kCacheShards = 16;

// Every rejection is kUnauthenticated except an expired token. Messages name the failed rule
// only: the token (a bearer credential) must never end up in an error, a log or a response.
core::Error Reject(std::string reason) {
  return MakeError(ErrorCode::kUnauthenticated, std::move(reason));
}


struct DigestHash {
  size_t operator()(const core::Sha256Digest& d) const {
    size_t h;
    std::memcpy(&h, d.data(), sizeof(h));  // SHA-256 output is already uniformly distributed
    return h;
  }
};

struct Shard {
  std::mutex mu;
  std::unordered_map<core::Sha256Digest, std::shared_ptr<const Claims>, DigestHash> map;
};

}  // namespace

struct TokenVerifier::Cache {
  Cache(size_t entries_max)
      : shards(entries_max >= kCacheShards ? kCacheShards : 1),
        shard_entries_max(entries_max / shards.size()) {}

  Shard& ShardFor(const core::Sha256Digest& d) {
    // The last byte picks the shard, the first bytes the bucket: independent bits.
    return shards[d[d.size() - 1] % shards.size()];
  }

  std::vector<Shard> shards;
  const size_t shard_entries_max;  // Invariant: shards.size() * shard_entries_max <= max
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
};

TokenVerifier::TokenVerifier(VerifierOptions options, const SigningKeys& keys,
                             const core::Clock& clock)
    : options_(std::move(options)),
      keys_(&keys),
      clock_(&clock),
      cache_(std::make_unique<Cache>(options_.cache_entries_max)) {}

TokenVerifier::~TokenVerifier() = default;

Result<std::unique_ptr<TokenVerifier>> TokenVerifier::Create(VerifierOptions options,
                                                             const SigningKeys& keys,
                                                             const core::Clock& clock) {
  if (options.issuer.empty()) return MakeError(ErrorCode::kInternal, "verifier needs an issuer");
  if (options.audience.empty()) {
    return MakeError(ErrorCode::kInternal, "verifier needs an audience");
  }
  if (options.typ != kSessionTokenTyp && options.typ != kApproverTokenTyp) {
    return MakeError(ErrorCode::kInternal, "verifier typ must be at+jwt or approver+jwt");
  }
  if (options.clock_skew_seconds < 0 || options.clock_skew_seconds > kClockSkewSecondsMax) {
    return MakeError(ErrorCode::kInternal,
                     "clock skew must be 0.." + std::to_string(kClockSkewSecondsMax) + " seconds");
  }
  if (options.cache_entries_max == 0 || options.cache_entries_max > core::kTokenCacheEntriesMax) {
    return MakeError(ErrorCode::kInternal,
                     "token cache size must be 1.." + std::to_string(core::kTokenCacheEntriesMax));
  }
  return std::unique_ptr<TokenVerifier>(new TokenVerifier(std::move(options), keys, clock));
}

Status TokenVerifier::CheckTimes(const Claims& claims, int64_t now) const {
  const int64_t skew = options_.clock_skew_seconds;
  if (claims.exp <= now - skew) return MakeError(ErrorCode::kTokenExpired, "token has expired");
  if (claims.nbf > now + skew) return Reject("token is not valid yet (nbf is in the future)");
  if (claims.iat > now + skew) return Reject("token was issued in the future (iat)");
  return core::OkStatus();
}

Result<std::shared_ptr<const Claims>> TokenVerifier::Verify(std::string_view token) const {
  if (token.size() > core::kTokenBytesMax) {
    return Reject("token is longer than " + std::to_string(core::kTokenBytesMax) + " bytes");
  }
  const core::Sha256Digest digest = core::Sha256(token);
  Shard& shard = cache_->ShardFor(digest);
  std::shared_ptr<const Claims> cached;
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.map.find(digest);
    if (it != shard.map.end()) cached = it->second;
  }
  const int64_t now = clock_->NowUnixSeconds();
  if (cached) {
    cache_->hits.fetch_add(1, std::memory_order_relaxed);
    // The signature was checked when the entry was made; the clock has moved since.
    MANDATE_RETURN_IF_ERROR(CheckTimes(*cached, now));
    return cached;
  }
  cache_->misses.fetch_add(1, std::memory_order_relaxed);

  MANDATE_ASSIGN_OR_RETURN(std::shared_ptr<const Claims> claims, VerifyUncached(token));
  MANDATE_RETURN_IF_ERROR(CheckTimes(*claims, now));

  // Only tokens that passed every rule get here: failures are never cached.
  {
    std::lock_guard lock(shard.mu);
    if (shard.map.size() >= cache_->shard_entries_max) {
      // Eviction: expired entries first (they can never succeed again), then, if the shard is
      // still full, half of it in hash order (effectively random, since keys are digests).
      for (auto it = shard.map.begin(); it != shard.map.end();) {
        if (it->second->exp <= now - options_.clock_skew_seconds) {
          it = shard.map.erase(it);
        } else {
          ++it;
        }
      }
      if (shard.map.size() >= cache_->shard_entries_max) {
        size_t keep = cache_->shard_entries_max / 2;
        for (auto it = shard.map.begin(); it != shard.map.end() && shard.map.size() > keep;) {
          it = shard.map.erase(it);
        }
      }
    }
    shard.map.emplace(digest, claims);
  }
  return claims;
}

Result<std::shared_ptr<const Claims>> TokenVerifier::VerifyUncached(std::string_view token) const {
  // Structure: exactly three non-empty segments.
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot1 == std::string_view::npos || dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos || dot1 == 0 || dot2 == dot1 + 1 ||
      dot2 + 1 == token.size()) {
    return Reject("token is not three base64url segments separated by dots");
  }
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_b64 = token.substr(dot2 + 1);

  // Header.
  auto header_bytes = core::Base64UrlDecode(header_b64);
  if (!header_bytes) return Reject("token header is not base64url");
  auto header = Json::Parse(*header_bytes, core::kTokenBytesMax);
  if (!header.ok() || !header->is_object()) return Reject("token header is not a JSON object");

  const std::string* alg = header->FindString("alg");
  if (alg == nullptr) return Reject("token header has no \"alg\"");
  // Invariant: the accepted alg is fixed by configuration, never taken from the token; the
  // comparison is exact so "none", "HS256", "eddsa" etc. all fail here.
  if (*alg != AlgName(options_.alg)) {
    return Reject("token \"alg\" is not " + std::string(AlgName(options_.alg)));
  }
  if (header->Find("crit") != nullptr) {
    return Reject("token header has \"crit\"; no JWS extension is supported");
  }
  // Invariant: session and approver tokens differ in typ (and audience), so a verifier of
  // one kind never accepts the other.
  const std::string* typ = header->FindString("typ");
  if (typ == nullptr || !(core::AsciiEqualsIgnoreCase(*typ, options_.typ) ||
                          core::AsciiEqualsIgnoreCase(*typ, "application/" + options_.typ))) {
    return Reject("token \"typ\" is not " + options_.typ);
  }
  const std::string* kid = header->FindString("kid");
  if (kid == nullptr) return Reject("token header has no \"kid\"");
  std::shared_ptr<const JwsKey> key = keys_->Find(*kid);
  if (key == nullptr || key->alg() != options_.alg) {
    return Reject("token is signed by an unknown key");
  }

  // Signature, over the ASCII bytes "<header>.<payload>" exactly as received.
  auto signature = core::Base64UrlDecode(signature_b64);
  if (!signature) return Reject("token signature is not base64url");
  if (!key->Verify(token.substr(0, dot2), *signature)) {
    return Reject("token signature is invalid");
  }

  // Payload (authenticated from here on).
  auto payload_bytes = core::Base64UrlDecode(payload_b64);
  if (!payload_bytes) return Reject("token payload is not base64url");
  auto payload = Json::Parse(*payload_bytes, core::kTokenBytesMax);
  if (!payload.ok() || !payload->is_object()) return Reject("token payload is not a JSON object");
  auto claims = Claims::FromJson(*payload);
  if (!claims.ok()) return Reject("token claims are invalid: " + claims.error().message);

  if (claims->iss != options_.issuer) return Reject("token issuer is not " + options_.issuer);
  if (!claims->HasAudience(options_.audience)) {
    return Reject("token audience does not include " + options_.audience);
  }
  return std::make_shared<const Claims>(std::move(claims).value());
}

TokenVerifier::CacheStats TokenVerifier::cache_stats() const {
  CacheStats s;
  s.hits = cache_->hits.load(std::memory_order_relaxed);
  s.misses = cache_->misses.load(std::memory_order_relaxed);
  for (Shard& shard : cache_->shards) {
    std::lock_guard lock(shard.mu);
    s.entries += shard.map.size();
  }
  return s;
}

void TokenVerifier::ClearCache() const {
  for (Shard& shard : cache_->shards) {
    std::lock_guard lock(shard.mu);
    shard.map.clear();
  }
}

}  // namespace mandate::identity
