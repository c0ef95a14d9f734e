// SigningKeys: the token-signing keys of one Mandate node, kept in a key directory (by
// convention `<data_dir>/keys/`). One key is the *active* signer; every other key in the
// directory is verify-only, so tokens signed before a rotation keep verifying (DESIGN.md
// section 4). Rotate() makes a new key the signer and gives the previous one a retirement
// time (when the last token it can have signed has expired); from then on the retired key
// neither verifies nor appears in the JWKS, and the next rotation or load deletes its files.
//
// Directory layout (see docs/formats/token.md, "Keys"):
//   <dir>/                 mode 0700 when Mandate creates it
//   <dir>/<kid>.pem        one private key each, PKCS#8 PEM ("BEGIN PRIVATE KEY"), mode 0600
//   <dir>/active           the kid of the active signer, one line
//   <dir>/<kid>.retire     for a verify-only key: Unix seconds after which it no longer
//                          verifies, one line (a key without one verifies until removed)
// where kid is the RFC 7638 JWK thumbprint of the public key. Files are written to a
// temporary name created with open(O_CREAT | O_EXCL, 0600) and renamed into place, so a key
// file is never visible with wider permissions or half-written. One process should own a key
// directory at a time.
//
// Private key material is never logged, returned or placed in an error message; only the
// public parts (Jwks, JwsKey::PublicJwk) leave this class.
//
// Thread safety: all const methods may be called concurrently. The key set is guarded by a
// reader-writer lock so that rotation can later swap keys under running verifiers; callers
// hold keys through std::shared_ptr, so a key stays alive while a signature is in progress.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/identity/jws_key.h"

namespace mandate::identity {

class SigningKeys {
 public:
  // Loads every key in `dir`, creating the directory (mode 0700; missing parents are created
  // with default permissions) and a first key of `alg` if there is none.
  //
  // The active signer is the key named by `<dir>/active`. If that file is missing and the
  // directory holds exactly one key, that key becomes active (this recovers from a crash
  // between writing a new key and naming it active).
  //
  // Errors:
  //   kInternal  the directory or a file cannot be created, read or written (the message names
  //              the path and the system error); `dir` is not a directory or is writable by
  //              others; a key file is a symlink or not a regular file, grants any permission
  //              to group or others (the message says to `chmod 600` it), exceeds
  //              kKeyFileBytesMax, or is not an unencrypted PKCS#8 PEM Ed25519 or P-256 key;
  //              the directory holds more than kSigningKeysMax keys; `active` names no key in
  //              the directory; several keys exist but none is named active.
  //   kConflict  the active key's algorithm is not `alg` (switching algorithms is a rotation).
  // The caller owns the returned object.
  // `clock` decides when a verify-only key retires; it must outlive the object.
  static core::Result<std::unique_ptr<SigningKeys>> LoadOrCreate(
      const std::string& dir, Alg alg = Alg::kEdDSA,
      const core::Clock& clock = core::SystemClock::Instance());

  struct Rotation {
    std::string kid;           // the new active signer
    std::string previous_kid;  // now verify-only
    int64_t previous_retires_at = 0;  // Unix seconds
  };
  // Generates a key of `alg`, makes it the active signer, and lets the previous active key
  // verify for `verify_for_seconds` more (the longest token lifetime plus the clock skew),
  // then retire. Keys already past their retirement are deleted. Files are durable before
  // the in-memory switch. Errors: kInternal (a file cannot be written; the active key is
  // unchanged), kPayloadTooLarge (kSigningKeysMax keys would be exceeded), kBadRequest
  // (verify_for_seconds negative).
  core::Result<Rotation> Rotate(Alg alg, int64_t verify_for_seconds);

  struct KeyInfo {
    std::string kid;
    Alg alg = Alg::kEdDSA;
    bool active = false;
    std::optional<int64_t> retires_at;  // Unix seconds; none for the active key
  };
  // The keys that verify now, active first.
  std::vector<KeyInfo> List() const;

  SigningKeys(const SigningKeys&) = delete;
  SigningKeys& operator=(const SigningKeys&) = delete;

  // The key new tokens are signed with. Never null.
  std::shared_ptr<const JwsKey> Active() const;

  // The key (active or verify-only, not retired) whose kid is `kid`, or nullptr if there is
  // none.
  std::shared_ptr<const JwsKey> Find(std::string_view kid) const;

  // The public keys as a JWK Set (RFC 7517 section 5), active key first:
  //   {"keys":[{"kty":"OKP","crv":"Ed25519","x":..,"kid":..,"use":"sig","alg":"EdDSA"}, ...]}
  // This is what GET /.well-known/jwks.json serves. It never contains private members.
  core::Json Jwks() const;

  // Number of keys that verify now (active plus verify-only, not retired).
  size_t size() const;

  const std::string& dir() const { return dir_; }

 private:
  SigningKeys(std::string dir, const core::Clock& clock, std::shared_ptr<const JwsKey> active,
              std::vector<std::shared_ptr<const JwsKey>> keys, std::map<std::string, int64_t> retire_at);
  // Whether `k` verifies at `now`. Needs mu_.
  bool LiveLocked(const JwsKey& k, int64_t now) const;

  const std::string dir_;
  const core::Clock& clock_;
  std::mutex rotate_mu_;  // one rotation at a time (file I/O outside mu_)
  mutable std::shared_mutex mu_;
  std::shared_ptr<const JwsKey> active_;             // guarded by mu_; also in keys_
  std::vector<std::shared_ptr<const JwsKey>> keys_;  // guarded by mu_; <= kSigningKeysMax
  std::map<std::string, int64_t> retire_at_;         // guarded by mu_; kid -> Unix seconds
};

}  // namespace mandate::identity
