// The credential broker: upstream secrets live here and nowhere an agent can reach them.
// Credentials are loaded once at start from the environment or a file (config
// `credentials:`), handed to the upstream clients that inject them on the way out, and every
// form of every secret is scrubbed from whatever flows back (DESIGN.md invariant 3).
// Thread safety: immutable after Load(); all methods are safe from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::broker {

// Secrets shorter than this are refused at load: scrubbing them would mangle ordinary text,
// and a secret that short is not one.
inline constexpr size_t kSecretBytesMin = 8;
// Secrets longer than this are refused at load. The scrubber keeps up to 22 forms of each
// secret (below), most about as long as the secret and none more than 7 times as long, in an
// automaton of about 20 bytes per byte of form; the bound keeps that memory bounded. A PEM
// private key or a cloud service-account JSON file is a few KiB.
inline constexpr size_t kSecretBytesMax = 64 * 1024;
// Derived forms (every form but the raw bytes) shorter than this many characters are not
// matched. Eight base64 characters carry 48 bits of the secret, so unrelated text matches by
// chance about once per 2^48 positions per form; shorter forms of short secrets would start
// to hit ordinary words and identifiers. No secret CredentialStore accepts is affected: from
// kSecretBytesMin bytes on, every form below has at least 8 characters, every base64 core at
// least 10 (credentials.cc checks this with a static_assert).
inline constexpr size_t kScrubFormCharsMin = 8;
inline constexpr std::string_view kRedacted = "[REDACTED]";

struct CredentialSource {
  std::string name;
  std::string env;   // exactly one of env / file is set
  std::string file;
};

// Replaces every occurrence of every form of every secret with kRedacted. The forms of a
// secret S:
//  - S itself (any length);
//  - percent-encoded as RFC 3986 (unreserved kept), JavaScript encodeURIComponent, WHATWG
//    application/x-www-form-urlencoded (URLSearchParams, Java URLEncoder; space as '+'),
//    Python quote_plus / Go QueryEscape (space as '+') and Python quote ('/' kept), each with
//    uppercase and with lowercase hex digits;
//  - JSON-string-escaped as core::Json and JSON.stringify write it (quote, backslash and
//    control bytes escaped), the same with every '/' escaped too (PHP's default), and escaped
//    twice (a JSON text inside a JSON string);
//  - hex, all lowercase or all uppercase;
//  - base64 and base64url, padded or not, of S or of any larger text holding S at any byte
//    offset. Where S starts at offset k (mod 3), the encoding of the larger text contains a
//    "core" that depends on S alone: base64(k zero bytes + S) without its first 0, 2 or 3
//    characters (which depend on the bytes before S) and without its partial last character
//    (which depends on the bytes after S). The core is matched, and the redaction is widened
//    by the one base64 character on each side that mixes bits of S with bits of its
//    neighbours (when that character is there), so no bit of S stays visible.
// Derived forms shorter than kScrubFormCharsMin are not matched (see there); the raw form
// always is. Overlapping or adjacent matches, of any forms and secrets, become one kRedacted.
// Not matched: mixed-case hex, other percent-encoders' choices of kept characters, JSON \u
// escapes of non-ASCII characters, encodings broken by line wraps (MIME, PEM), and any further
// transformation (compression, encryption, hashing).
// Matching is one pass over the text whatever the number of secrets (Aho-Corasick): time
// linear in the text, memory linear in the total size of the forms.
// Thread safety: const methods are safe from any thread; Add and AddAll must not race with
// anything.
// Copies share the (immutable) matching state.
class Scrubber {
 public:
  // Adds a secret (ignored if empty). Rebuilds the matcher: O(total size of all forms), so
  // adding many secrets one by one is quadratic; AddAll adds them with one rebuild. Callers
  // bound the size (CredentialStore: kSecretBytesMax).
  void Add(std::string_view secret);
  void AddAll(const std::vector<std::string_view>& secrets);
  std::string Scrub(std::string_view text) const;
  // Scrubs every string (and object key) in a JSON value. Strings are matched decoded, so a
  // secret holding a quote or a backslash is found however the JSON text escaped it. Numbers,
  // booleans and null are kept as they are.
  core::Json ScrubJson(const core::Json& value) const;
  // Whether Scrub would change the text.
  bool ContainsSecret(std::string_view text) const;
  bool empty() const { return state_ == nullptr; }

 private:
  struct State;  // the forms and their matcher (credentials.cc)
  std::shared_ptr<const State> state_;  // null until the first Add of a non-empty secret
};

class CredentialStore {
 public:
  using Getenv = std::function<const char*(const char*)>;
  // Errors (kBadRequest, naming the credential): the env var is unset or empty, the file is
  // missing/unreadable or group/world-readable, the secret is shorter than kSecretBytesMin or
  // longer than kSecretBytesMax.
  // A trailing newline in a file is not part of the secret.
  static core::Result<std::unique_ptr<CredentialStore>> Load(const std::vector<CredentialSource>& sources,
                                                             const Getenv& getenv_fn);

  // The secret, or kNotFound for an undeclared name.
  core::Result<std::string> Get(std::string_view name) const;
  const Scrubber& scrubber() const { return scrubber_; }

 private:
  std::map<std::string, std::string, std::less<>> secrets_;
  Scrubber scrubber_;
};

}  // namespace mandate::broker
