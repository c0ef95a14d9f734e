#include "mandate/audit/checkpoint.h"

#include <cstdio>
#include <utility>

#include "mandate/core/check.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr char kAlgEd25519 = 0x01;
constexpr std::string_view kSigPrefix = "\xE2\x80\x94 ";  // U+2014 EM DASH, then a space
constexpr std::string_view kPrivatePrefix = "PRIVATE+KEY+";

uint32_t KeyHash(std::string_view name, std::string_view public_key) {
  std::string input(name);
  input.push_back('\n');
  input.push_back(kAlgEd25519);
  input.append(public_key);
  core::Sha256Digest d = core::Sha256(input);
  return (uint32_t{d[0]} << 24) | (uint32_t{d[1]} << 16) | (uint32_t{d[2]} << 8) | uint32_t{d[3]};
}

std::string KeyHashHex(uint32_t h) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

std::string KeyHashBytes(uint32_t h) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((h >> (24 - 8 * i)) & 0xFF);
  return out;
}

// Splits "<name>+<hash hex>+<base64 key>" into its parts and decodes the key, checking the
// algorithm byte and the hash. `what` names the key text in errors.
core::Status ParseKeyText(std::string_view text, const char* what, std::string* name,
                          std::string* key) {
  size_t p1 = text.find('+');
  size_t p2 = p1 == std::string_view::npos ? p1 : text.find('+', p1 + 1);
  // The name has no '+' and the hash is hex, so the first two '+' delimit them; the base64
  // key after them may itself contain '+'.
  if (p2 == std::string_view::npos) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + " is not <name>+<hash>+<key>");
  }
  std::string_view n = text.substr(0, p1);
  std::string_view hash_hex = text.substr(p1 + 1, p2 - p1 - 1);
  std::optional<std::string> raw = core::Base64Decode(text.substr(p2 + 1));
  if (!ValidNoteName(n)) {
    return MakeError(ErrorCode::kBadRequest, std::string(what) + " has an invalid name");
  }
  if (!raw || raw->size() != 1 + core::kEd25519KeyBytes || (*raw)[0] != kAlgEd25519) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + " is not an Ed25519 key (0x01 || 32 bytes, base64)");
  }
  *name = std::string(n);
  *key = raw->substr(1);
  if (hash_hex.size() != 8 || !core::HexDecode(hash_hex)) {
    return MakeError(ErrorCode::kBadRequest, std::string(what) + " has a malformed key hash");
  }
  return core::OkStatus();
}

bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

bool ValidNoteName(std::string_view name) {
  if (name.empty() || name.size() > kNoteNameBytesMax) return false;
  for (char c : name) {
    if (c <= 0x20 || c >= 0x7F || c == '+') return false;
  }
  return true;
}

std::string CheckpointText(const Checkpoint& cp) {
  MANDATE_CHECK(ValidNoteName(cp.origin));
  std::string root(reinterpret_cast<const char*>(cp.root.data()), cp.root.size());
  return cp.origin + "\n" + std::to_string(cp.size) + "\n" + core::Base64Encode(root) + "\n";
}

core::Result<Checkpoint> ParseCheckpointText(std::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return MakeError(ErrorCode::kBadRequest, "checkpoint text must end with a newline");
  }
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t nl = text.find('\n', start);
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  if (lines.size() < 3) {
    return MakeError(ErrorCode::kBadRequest, "checkpoint needs origin, size and root lines");
  }
  Checkpoint cp;
  if (!ValidNoteName(lines[0])) {
    return MakeError(ErrorCode::kBadRequest, "checkpoint origin is not a valid name");
  }
  cp.origin = std::string(lines[0]);
  if (!ParseDecimal(lines[1], &cp.size)) {
    return MakeError(ErrorCode::kBadRequest,
                     "checkpoint tree size is not a decimal number without leading zeros");
  }
  std::optional<std::string> root = core::Base64Decode(lines[2]);
  if (!root || root->size() != cp.root.size()) {
    return MakeError(ErrorCode::kBadRequest, "checkpoint root is not 32 bytes of base64");
  }
  std::copy(root->begin(), root->end(), cp.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) return MakeError(ErrorCode::kBadRequest, "checkpoint has an empty line");
  }
  return cp;
}

NoteSigner::NoteSigner(std::string name, std::string seed, std::string public_key)
    : name_(std::move(name)), seed_(std::move(seed)), public_key_(std::move(public_key)) {
  key_hash_ = KeyHash(name_, public_key_);
}

core::Result<NoteSigner> NoteSigner::Generate(std::string name) {
  if (!ValidNoteName(name)) {
    return MakeError(ErrorCode::kBadRequest,
                     "a note key name is 1-128 printable ASCII characters without space or '+'");
  }
  std::string seed = core::Ed25519GenerateSeed();
  MANDATE_ASSIGN_OR_RETURN(std::string pub, core::Ed25519PublicKey(seed));
  return NoteSigner(std::move(name), std::move(seed), std::move(pub));
}

core::Result<NoteSigner> NoteSigner::Parse(std::string_view text) {
  if (text.substr(0, kPrivatePrefix.size()) != kPrivatePrefix) {
    return MakeError(ErrorCode::kBadRequest, "private key text must start with PRIVATE+KEY+");
  }
  std::string name, seed;
  MANDATE_RETURN_IF_ERROR(
      ParseKeyText(text.substr(kPrivatePrefix.size()), "private key", &name, &seed));
  MANDATE_ASSIGN_OR_RETURN(std::string pub, core::Ed25519PublicKey(seed));
  NoteSigner signer(std::move(name), std::move(seed), std::move(pub));
  std::string_view rest = text.substr(kPrivatePrefix.size());
  std::string_view hash_hex = rest.substr(rest.find('+') + 1, 8);
  if (hash_hex != KeyHashHex(signer.key_hash_)) {
    return MakeError(ErrorCode::kBadRequest, "private key hash does not match the key");
  }
  return signer;
}

std::string NoteSigner::PrivateKeyText() const {
  return std::string(kPrivatePrefix) + name_ + "+" + KeyHashHex(key_hash_) + "+" +
         core::Base64Encode(std::string(1, kAlgEd25519) + seed_);
}

std::string NoteSigner::VerifierKeyText() const {
  return name_ + "+" + KeyHashHex(key_hash_) + "+" +
         core::Base64Encode(std::string(1, kAlgEd25519) + public_key_);
}

core::Result<std::string> NoteSigner::Sign(std::string_view text) const {
  if (text.empty() || text.back() != '\n' || text.find("\n\n") != std::string_view::npos ||
      text.front() == '\n') {
    return MakeError(ErrorCode::kBadRequest,
                     "note text must be non-empty lines, each ending in a newline");
  }
  MANDATE_ASSIGN_OR_RETURN(std::string sig, core::Ed25519Sign(seed_, text));
  std::string note(text);
  note.push_back('\n');
  note.append(kSigPrefix).append(name_).push_back(' ');
  note.append(core::Base64Encode(KeyHashBytes(key_hash_) + sig)).push_back('\n');
  return note;
}

NoteVerifier::NoteVerifier(std::string name, std::string public_key)
    : name_(std::move(name)), public_key_(std::move(public_key)) {
  key_hash_ = KeyHash(name_, public_key_);
}

core::Result<NoteVerifier> NoteVerifier::Parse(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  std::string name, key;
  MANDATE_RETURN_IF_ERROR(ParseKeyText(text, "verifier key", &name, &key));
  NoteVerifier v(std::move(name), std::move(key));
  std::string_view hash_hex = text.substr(text.find('+') + 1, 8);
  if (hash_hex != KeyHashHex(v.key_hash_)) {
    return MakeError(ErrorCode::kBadRequest, "verifier key hash does not match name and key");
  }
  return v;
}

core::Result<std::string> NoteVerifier::Open(std::string_view note) const {
  if (note.size() > kNoteBytesMax) {
    return MakeError(ErrorCode::kBadRequest, "signed note is larger than kNoteBytesMax");
  }
  size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos || note.back() != '\n') {
    return MakeError(ErrorCode::kBadRequest, "malformed signed note: no blank line before signatures");
  }
  std::string_view text = note.substr(0, split + 1);
  std::string_view sigs = note.substr(split + 2);
  if (sigs.empty()) {
    // As golang.org/x/mod/sumdb/note: a signed note has at least one signature line.
    return MakeError(ErrorCode::kBadRequest, "malformed signed note: no signature line");
  }
  bool found = false;
  while (!sigs.empty()) {
    size_t nl = sigs.find('\n');
    if (nl == std::string_view::npos) {
      return MakeError(ErrorCode::kBadRequest, "malformed signed note: unterminated signature line");
    }
    std::string_view line = sigs.substr(0, nl);
    sigs.remove_prefix(nl + 1);
    if (line.substr(0, kSigPrefix.size()) != kSigPrefix) {
      return MakeError(ErrorCode::kBadRequest, "malformed signed note: a signature line must start with an em dash");
    }
    line.remove_prefix(kSigPrefix.size());
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return MakeError(ErrorCode::kBadRequest, "malformed signed note: signature line lacks a key name");
    }
    std::string_view name = line.substr(0, sp);
    std::optional<std::string> raw = core::Base64Decode(line.substr(sp + 1));
    if (!ValidNoteName(name) || !raw || raw->size() < 5) {
      return MakeError(ErrorCode::kBadRequest, "malformed signed note: bad signature line");
    }
    if (name != name_ || raw->substr(0, 4) != KeyHashBytes(key_hash_)) continue;  // another key
    if (!core::Ed25519Verify(public_key_, text, raw->substr(4))) {
      return MakeError(ErrorCode::kUnauthenticated,
                       "signature of " + name_ + " on the note does not verify");
    }
    found = true;
  }
  if (!found) {
    return MakeError(ErrorCode::kUnauthenticated, "note is not signed by " + name_);
  }
  return std::string(text);
}

core::Result<std::vector<NoteSpan>> SplitNotes(std::string_view data) {
  std::vector<NoteSpan> out;
  size_t pos = 0;
  size_t line_no = 1;
  while (pos < data.size()) {
    NoteSpan span;
    span.offset = pos;
    span.line = line_no;
    size_t p = pos;
    size_t ln = line_no;
    auto bad = [&](const std::string& what) {
      return MakeError(ErrorCode::kBadRequest,
                       "malformed note starting at line " + std::to_string(span.line) + ": " + what);
    };
    // Text lines, then the blank line.
    size_t text_lines = 0;
    for (;;) {
      size_t nl = data.find('\n', p);
      if (nl == std::string_view::npos) return bad("cut short (no newline)");
      ++ln;
      if (nl == p) {
        p = nl + 1;
        break;
      }
      ++text_lines;
      p = nl + 1;
    }
    if (text_lines == 0) return bad("empty text");
    // Signature lines.
    size_t sig_lines = 0;
    while (p < data.size() && data.substr(p, kSigPrefix.size()) == kSigPrefix) {
      size_t nl = data.find('\n', p);
      if (nl == std::string_view::npos) return bad("signature line cut short");
      ++ln;
      ++sig_lines;
      p = nl + 1;
    }
    if (sig_lines == 0) return bad("no signature line");
    if (p - pos > kNoteBytesMax) return bad("larger than kNoteBytesMax");
    span.note = data.substr(pos, p - pos);
    out.push_back(span);
    pos = p;
    line_no = ln;
  }
  return out;
}

}  // namespace mandate::audit
