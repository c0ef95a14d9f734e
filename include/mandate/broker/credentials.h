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
inline constexpr std::string_view kRedacted = "[REDACTED]";

struct CredentialSource {
  std::string name;
  std::string env;   // exactly one of env / file is set
  std::string file;
};

// Replaces every occurrence of a secret (raw, base64, base64url, percent-encoded) with
// kRedacted.
class Scrubber {
 public:
  void Add(std::string_view secret);
  std::string Scrub(std::string_view text) const;
  // Scrubs every string (and object key) in a JSON value.
  core::Json ScrubJson(const core::Json& value) const;
  bool ContainsSecret(std::string_view text) const;
  bool empty() const { return needles_.empty(); }

 private:
  std::vector<std::string> needles_;  // longest first, so a secret inside another is not split
};

class CredentialStore {
 public:
  using Getenv = std::function<const char*(const char*)>;
  // Errors (kBadRequest, naming the credential): the env var is unset or empty, the file is
  // missing/unreadable or group/world-readable, the secret is shorter than kSecretBytesMin.
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
