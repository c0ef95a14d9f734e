// Signed checkpoints of the audit log: the C2SP `tlog-checkpoint` note text signed in the
// C2SP `signed-note` format with an Ed25519 key of the log's own (never the token key).
// Format details: docs/formats/audit.md, "Checkpoints".
//
//   checkpoint text   <origin>\n<tree size>\n<base64 root hash>\n
//   signed note       <text>\n— <key name> <base64(key hash[4] || Ed25519 signature[64])>\n
//   verifier key      <name>+<key hash, 8 hex digits>+<base64(0x01 || public key[32])>
//   private key       PRIVATE+KEY+<name>+<key hash>+<base64(0x01 || private seed[32])>
//
// where key hash = the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x01 || public
// key). The verifier and private key texts are those of Go's golang.org/x/mod/sumdb/note, so
// an auditor can check Mandate's checkpoints with standard transparency-log tooling.
//
// Thread safety: the types are immutable after construction; free functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/audit/merkle.h"
#include "mandate/core/result.h"

namespace mandate::audit {

inline constexpr size_t kNoteBytesMax = 4096;     // one signed checkpoint note
inline constexpr size_t kNoteNameBytesMax = 128;  // origin / key name

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
};

// Whether `name` can be a key name and origin: 1..kNoteNameBytesMax printable ASCII bytes,
// no space and no '+'.
bool ValidNoteName(std::string_view name);

// "<origin>\n<size>\n<base64 root>\n". Precondition (checked): ValidNoteName(origin).
std::string CheckpointText(const Checkpoint& checkpoint);
// Parses a checkpoint note text (as returned by NoteVerifier::Open). Extension lines after the
// root are allowed and ignored. Errors: kBadRequest naming what is malformed (origin, a size
// with a sign, leading zero or overflow, a root that is not 32 bytes of canonical base64).
core::Result<Checkpoint> ParseCheckpointText(std::string_view text);

class NoteSigner {
 public:
  // A new random key named `name`. Errors: kBadRequest when !ValidNoteName(name).
  static core::Result<NoteSigner> Generate(std::string name);
  // From the private key text. Errors: kBadRequest when malformed or when the key hash does
  // not match the key.
  static core::Result<NoteSigner> Parse(std::string_view private_key_text);

  const std::string& name() const { return name_; }
  std::string PrivateKeyText() const;   // secret: store 0600, never log
  std::string VerifierKeyText() const;  // public
  // The signed note of `text`, which must be non-empty, end in "\n" and contain no blank
  // line. Errors: kBadRequest for such text; kInternal when signing fails.
  core::Result<std::string> Sign(std::string_view text) const;

 private:
  NoteSigner(std::string name, std::string seed, std::string public_key);
  std::string name_;
  std::string seed_;
  std::string public_key_;
  uint32_t key_hash_ = 0;
};

class NoteVerifier {
 public:
  // From a verifier key text. Errors: kBadRequest when malformed (unknown algorithm byte, bad
  // base64, wrong length) or when the key hash does not match name and key.
  static core::Result<NoteVerifier> Parse(std::string_view verifier_key_text);

  const std::string& name() const { return name_; }
  // Checks a signed note and returns its text. It must carry a signature line of this key
  // (other keys' lines, e.g. witnesses, are ignored) and every line of this key must verify.
  // Errors: kBadRequest when the note is malformed or larger than kNoteBytesMax;
  // kUnauthenticated when no line of this key is present or a signature is invalid.
  core::Result<std::string> Open(std::string_view note) const;

 private:
  NoteVerifier(std::string name, std::string public_key);
  std::string name_;
  std::string public_key_;
  uint32_t key_hash_ = 0;
};

// One note in a file of concatenated notes, and where it starts.
struct NoteSpan {
  std::string_view note;
  size_t offset = 0;  // byte offset in the file
  size_t line = 0;    // 1-based line of its first line
};

// Splits a file of concatenated signed notes (the log's checkpoints file): each note is
// non-empty text lines, one empty line, then one or more signature lines starting with
// "— ". Errors: kBadRequest naming the line of the first malformed note (including a last
// note cut short, e.g. a torn write).
core::Result<std::vector<NoteSpan>> SplitNotes(std::string_view data);

}  // namespace mandate::audit
