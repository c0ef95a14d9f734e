// Inclusion proofs of single records against a signed checkpoint: built from the log's files
// (ProveInclusion) and checked offline with only the log's verifier key
// (VerifyInclusionBundle). Format: docs/formats/audit.md, "Proofs".
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/audit_log.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;

std::string HashB64(const Hash& h) {
  return core::Base64Encode(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

std::optional<Hash> HashFromB64(std::string_view s) {
  std::optional<std::string> raw = core::Base64Decode(s);
  if (!raw || raw->size() != 32) return std::nullopt;
  Hash h;
  std::copy(raw->begin(), raw->end(), h.begin());
  return h;
}

}  // namespace

core::Json InclusionProofBundle::ToJson() const {
  core::Json j = core::Json::MakeObject();
  j.Set("seq", static_cast<int64_t>(seq));
  j.Set("record", record);
  j.Set("tree_size", static_cast<int64_t>(tree_size));
  core::Json hashes = core::Json::MakeArray();
  for (const Hash& h : proof) hashes.Push(HashB64(h));
  j.Set("proof", std::move(hashes));
  j.Set("checkpoint", checkpoint);
  return j;
}

core::Result<InclusionProofBundle> InclusionProofBundle::FromJson(const core::Json& j) {
  auto bad = [](const char* what) {
    return MakeError(ErrorCode::kBadRequest, std::string("malformed proof: ") + what);
  };
  if (!j.is_object()) return bad("not a JSON object");
  InclusionProofBundle b;
  const core::Json* seq = j.Find("seq");
  const core::Json* size = j.Find("tree_size");
  const std::string* record = j.FindString("record");
  const std::string* checkpoint = j.FindString("checkpoint");
  const core::Json* proof = j.Find("proof");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0) return bad("\"seq\" is not a non-negative integer");
  if (size == nullptr || !size->is_int() || size->as_int() < 0) return bad("\"tree_size\" is not a non-negative integer");
  if (record == nullptr) return bad("\"record\" is not a string");
  if (checkpoint == nullptr) return bad("\"checkpoint\" is not a string");
  if (proof == nullptr || !proof->is_array()) return bad("\"proof\" is not an array");
  if (proof->as_array().size() > kMerkleProofHashesMax) return bad("\"proof\" is too long");
  b.seq = static_cast<uint64_t>(seq->as_int());
  b.tree_size = static_cast<uint64_t>(size->as_int());
  b.record = *record;
  b.checkpoint = *checkpoint;
  for (const core::Json& h : proof->as_array()) {
    if (!h.is_string()) return bad("a \"proof\" entry is not a string");
    std::optional<Hash> hash = HashFromB64(h.as_string());
    if (!hash) return bad("a \"proof\" entry is not 32 bytes of base64");
    b.proof.push_back(*hash);
  }
  return b;
}

core::Result<InclusionProofBundle> ProveInclusion(const std::string& dir, uint64_t seq) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  auto verifier = internal::LoadVerifier(dir, "");
  if (!verifier.ok()) return MakeError(ErrorCode::kInternal, verifier.error().message);

  // The newest checkpoint that verifies (a torn last note is skipped, as Open would).
  std::optional<Checkpoint> cp;
  std::string cp_note;
  {
    const std::string path = dir + "/" + std::string(internal::kCheckpointsFileName);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      internal::NoteReader reader(fd);
      internal::NoteReader::Note note;
      std::optional<internal::NoteReader::Malformed> malformed;
      std::string last;
      while (true) {
        auto more = reader.Next(&note, &malformed);
        if (!more.ok()) {
          ::close(fd);
          return std::move(more).error();
        }
        if (!*more || malformed) break;
        last = std::move(note.text);
      }
      ::close(fd);
      if (!last.empty()) {
        auto text = verifier->Open(last);
        if (!text.ok()) {
          return MakeError(ErrorCode::kInternal, "the newest checkpoint does not verify: " +
                                                     text.error().message +
                                                     "; run `mandate audit verify`");
        }
        MANDATE_ASSIGN_OR_RETURN(Checkpoint parsed, ParseCheckpointText(*text));
        cp = parsed;
        cp_note = last;
      }
    } else if (errno != ENOENT) {
      return MakeError(ErrorCode::kInternal, "cannot open " + path + ": " + std::strerror(errno));
    }
  }
  if (!cp || seq >= cp->size) {
    return MakeError(ErrorCode::kNotFound,
                     "record " + std::to_string(seq) + " is not covered by a checkpoint yet" +
                         (cp ? " (the newest covers " + std::to_string(cp->size) + " records)"
                             : std::string(" (none written yet)")) +
                         "; retry after the next checkpoint");
  }
  if (cp->size > core::kAuditProofRecordsMax) {
    return MakeError(ErrorCode::kInternal, "the log is too large to build a proof in memory");
  }

  // The leaf hashes of the checkpoint's tree.
  std::vector<Hash> leaves;
  leaves.reserve(static_cast<size_t>(cp->size));
  InclusionProofBundle bundle;
  for (const internal::Segment& seg : segments) {
    if (leaves.size() == cp->size) break;
    int fd = ::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return MakeError(ErrorCode::kInternal, "cannot open " + seg.path + ": " + std::strerror(errno));
    }
    internal::LineReader reader(fd, core::kAuditRecordBytesMax,
                                    internal::LineReader::Nul::kEndsData);
    internal::LineReader::Line line;
    while (leaves.size() < cp->size) {
      auto more = reader.Next(&line);
      if (!more.ok()) {
        ::close(fd);
        return std::move(more).error();
      }
      if (!*more || !line.terminated || line.overlong) break;
      if (leaves.size() == seq) bundle.record = line.bytes;
      leaves.push_back(LeafHash(line.bytes));
    }
    ::close(fd);
  }
  if (leaves.size() != cp->size || RootOf(leaves) != cp->root) {
    return MakeError(ErrorCode::kInternal,
                     "the log's records do not match its newest checkpoint; run `mandate audit "
                     "verify`");
  }
  bundle.seq = seq;
  bundle.tree_size = cp->size;
  bundle.proof = InclusionProof(leaves, seq);
  bundle.checkpoint = std::move(cp_note);
  return bundle;
}

core::Result<Checkpoint> VerifyInclusionBundle(const InclusionProofBundle& bundle,
                                               std::string_view verifier_key) {
  auto verifier = NoteVerifier::Parse(verifier_key);
  if (!verifier.ok()) {
    return MakeError(ErrorCode::kBadRequest, "invalid verifier key: " + verifier.error().message);
  }
  MANDATE_ASSIGN_OR_RETURN(std::string text, verifier->Open(bundle.checkpoint));
  MANDATE_ASSIGN_OR_RETURN(Checkpoint cp, ParseCheckpointText(text));
  auto refuse = [](const std::string& why) { return MakeError(ErrorCode::kUnauthenticated, why); };
  if (cp.origin != verifier->name()) return refuse("the checkpoint is from another log");
  if (cp.size != bundle.tree_size) {
    return refuse("the proof's tree_size differs from the checkpoint's");
  }
  auto record = core::Json::Parse(bundle.record, core::kAuditRecordBytesMax);
  if (!record.ok() || !record->is_object() || record->Canonical() != bundle.record) {
    return refuse("the record is not a canonical JSON object");
  }
  const core::Json* seq = record->Find("seq");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0 ||
      static_cast<uint64_t>(seq->as_int()) != bundle.seq) {
    return refuse("the record's seq differs from the proof's");
  }
  if (!VerifyInclusion(bundle.seq, bundle.tree_size, LeafHash(bundle.record), bundle.proof,
                       cp.root)) {
    return refuse("the audit path does not lead from the record to the checkpoint's root");
  }
  return cp;
}

}  // namespace mandate::audit
