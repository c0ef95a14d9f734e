#include "mandate/audit/checkpoint.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;

constexpr std::string_view kEmDash = "\xE2\x80\x94";

Hash SomeRoot() { return core::Sha256("some root"); }

std::string B64(const Hash& h) {
  return core::Base64Encode(std::string(reinterpret_cast<const char*>(h.data()), h.size()));
}

NoteSigner MustGenerate(const std::string& name) {
  auto s = NoteSigner::Generate(name);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return *std::move(s);
}

NoteVerifier MustVerifier(const std::string& text) {
  auto v = NoteVerifier::Parse(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.error().message;
  return *std::move(v);
}

std::string MustSign(const NoteSigner& signer, const std::string& text) {
  auto note = signer.Sign(text);
  EXPECT_TRUE(note.ok()) << note.error().message;
  return note.ok() ? *note : std::string();
}

// The key hash as golang.org/x/mod/sumdb/note computes it, recomputed here from its
// definition: the first 4 bytes, big-endian, of SHA-256(name || "\n" || 0x01 || public key).
std::string GoKeyHashHex(const std::string& name, const std::string& public_key) {
  core::Sha256Digest d = core::Sha256(name + "\n" + std::string(1, '\x01') + public_key);
  char buf[9];
  std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
  return buf;
}

// --- Checkpoint text ---------------------------------------------------------------------

TEST(Checkpoint, TextIsOriginSizeAndBase64Root) {
  Checkpoint cp{"example.com/audit", 42, SomeRoot()};
  EXPECT_EQ(CheckpointText(cp), "example.com/audit\n42\n" + B64(SomeRoot()) + "\n");
}

TEST(Checkpoint, TextRoundTripsForSmallAndExtremeSizes) {
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{10}, uint64_t{1} << 40, UINT64_MAX}) {
    Checkpoint cp{"mandate.local/audit/0123abcd", size, core::Sha256(std::to_string(size))};
    auto parsed = ParseCheckpointText(CheckpointText(cp));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->origin, cp.origin);
    EXPECT_EQ(parsed->size, size);
    EXPECT_EQ(parsed->root, cp.root);
  }
}

TEST(Checkpoint, ParseIgnoresExtensionLines) {
  auto parsed = ParseCheckpointText("o\n7\n" + B64(SomeRoot()) + "\nTimestamp: 1\nmore\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->size, 7u);
}

TEST(Checkpoint, ParseRejectsMalformedText) {
  const std::string root = B64(SomeRoot());
  const std::string short_root =
      core::Base64Encode(std::string(reinterpret_cast<const char*>(SomeRoot().data()), 31));
  const std::string long_root = core::Base64Encode(std::string(33, 'x'));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"leading zero", "o\n07\n" + root + "\n"},
      {"zero with a leading zero", "o\n00\n" + root + "\n"},
      {"minus sign", "o\n-7\n" + root + "\n"},
      {"plus sign", "o\n+7\n" + root + "\n"},
      {"space in size", "o\n 7\n" + root + "\n"},
      {"hex size", "o\n0x7\n" + root + "\n"},
      {"empty size", "o\n\n" + root + "\n"},
      {"overflow by one", "o\n18446744073709551616\n" + root + "\n"},
      {"overflow", "o\n99999999999999999999\n" + root + "\n"},
      {"21 digits", "o\n100000000000000000000\n" + root + "\n"},
      {"bad base64", "o\n7\n!!!!" + root.substr(4) + "\n"},
      {"unpadded base64", "o\n7\n" + root.substr(0, root.size() - 1) + "\n"},
      {"short root", "o\n7\n" + short_root + "\n"},
      {"long root", "o\n7\n" + long_root + "\n"},
      {"hex root", "o\n7\n" + core::DigestHex(SomeRoot()) + "\n"},
      {"empty line after the root", "o\n7\n" + root + "\n\n"},
      {"empty line among extensions", "o\n7\n" + root + "\next\n\nmore\n"},
      {"missing final newline", "o\n7\n" + root},
      {"missing root", "o\n7\n"},
      {"empty", ""},
      {"empty origin", "\n7\n" + root + "\n"},
      {"origin with a space", "o o\n7\n" + root + "\n"},
      {"origin with a plus", "o+o\n7\n" + root + "\n"},
  };
  for (const auto& [what, text] : cases) {
    auto parsed = ParseCheckpointText(text);
    ASSERT_FALSE(parsed.ok()) << what;
    EXPECT_EQ(parsed.error().code, ErrorCode::kBadRequest) << what;
  }
  // The largest size parses.
  auto max = ParseCheckpointText("o\n18446744073709551615\n" + root + "\n");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->size, UINT64_MAX);
}

TEST(Checkpoint, ValidNoteNames) {
  EXPECT_TRUE(ValidNoteName("a"));
  EXPECT_TRUE(ValidNoteName("example.com/audit/0123"));
  EXPECT_TRUE(ValidNoteName(std::string(kNoteNameBytesMax, 'x')));
  EXPECT_FALSE(ValidNoteName(""));
  EXPECT_FALSE(ValidNoteName(std::string(kNoteNameBytesMax + 1, 'x')));
  EXPECT_FALSE(ValidNoteName("a b"));
  EXPECT_FALSE(ValidNoteName("a+b"));
  EXPECT_FALSE(ValidNoteName("a\nb"));
  EXPECT_FALSE(ValidNoteName("caf\xc3\xa9"));
  EXPECT_FALSE(ValidNoteName(std::string("a\0b", 3)));
}

// --- Keys --------------------------------------------------------------------------------

TEST(NoteKeys, GeneratedKeyRoundTripsThroughItsPrivateKeyText) {
  // Many keys: about half of all keys have a '+' in the base64 of their seed or public key,
  // which must not be taken for a separator.
  for (int i = 0; i < 64; ++i) {
    NoteSigner signer = MustGenerate("example.com/audit");
    const std::string priv = signer.PrivateKeyText();
    ASSERT_EQ(priv.rfind("PRIVATE+KEY+example.com/audit+", 0), 0u) << priv;
    auto parsed = NoteSigner::Parse(priv);
    ASSERT_TRUE(parsed.ok()) << priv << ": " << parsed.error().message;
    EXPECT_EQ(parsed->name(), "example.com/audit");
    EXPECT_EQ(parsed->PrivateKeyText(), priv);
    EXPECT_EQ(parsed->VerifierKeyText(), signer.VerifierKeyText());
    NoteVerifier verifier = MustVerifier(signer.VerifierKeyText());
    EXPECT_EQ(verifier.name(), "example.com/audit");
    // The parsed key signs what the verifier of the original accepts.
    auto opened = verifier.Open(MustSign(*parsed, "hello\n"));
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(*opened, "hello\n");
  }
}

TEST(NoteKeys, KeysAreDistinct) {
  EXPECT_NE(MustGenerate("n").VerifierKeyText(), MustGenerate("n").VerifierKeyText());
}

TEST(NoteKeys, GenerateRejectsInvalidNames) {
  for (std::string name : {std::string(""), std::string("a b"), std::string("a+b"),
                           std::string(kNoteNameBytesMax + 1, 'n')}) {
    auto s = NoteSigner::Generate(name);
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error().code, ErrorCode::kBadRequest);
  }
}

TEST(NoteKeys, VerifierKeyTextIsGoSumdbNoteFormat) {
  // name "+" key hash (8 lowercase hex) "+" base64(0x01 || 32-byte Ed25519 public key), the
  // key hash recomputed here independently of checkpoint.cc.
  for (int i = 0; i < 16; ++i) {
    NoteSigner signer = MustGenerate("example.com/log");
    const std::string vkey = signer.VerifierKeyText();
    size_t p1 = vkey.find('+');
    size_t p2 = vkey.find('+', p1 + 1);
    ASSERT_NE(p2, std::string::npos);
    EXPECT_EQ(vkey.substr(0, p1), "example.com/log");
    std::string hash_hex = vkey.substr(p1 + 1, p2 - p1 - 1);
    std::optional<std::string> raw = core::Base64Decode(vkey.substr(p2 + 1));
    ASSERT_TRUE(raw.has_value()) << vkey;
    ASSERT_EQ(raw->size(), 33u);
    EXPECT_EQ((*raw)[0], '\x01');
    EXPECT_EQ(hash_hex, GoKeyHashHex("example.com/log", raw->substr(1)));
    // The private key text carries the same name and hash, and 0x01 || a 32-byte seed whose
    // public key is the verifier's.
    const std::string priv = signer.PrivateKeyText();
    const std::string prefix = "PRIVATE+KEY+example.com/log+" + hash_hex + "+";
    ASSERT_EQ(priv.substr(0, prefix.size()), prefix);
    std::optional<std::string> seed = core::Base64Decode(priv.substr(prefix.size()));
    ASSERT_TRUE(seed.has_value());
    ASSERT_EQ(seed->size(), 33u);
    EXPECT_EQ((*seed)[0], '\x01');
    auto pub = core::Ed25519PublicKey(seed->substr(1));
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(*pub, raw->substr(1));
  }
}

// The example key and note of golang.org/x/mod/sumdb/note's documentation (package note,
// "Generating Keys" / "Example"). Ed25519 signatures are deterministic, so signing the same
// text with the same key must reproduce the Go signature byte for byte.
constexpr char kGoSignerKey[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr char kGoVerifierKey[] =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kGoText[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr char kGoNote[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xE2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

TEST(NoteKeys, GoSumdbNoteExampleKeyParsesSignsAndVerifiesIdentically) {
  auto signer = NoteSigner::Parse(kGoSignerKey);
  ASSERT_TRUE(signer.ok()) << signer.error().message;
  EXPECT_EQ(signer->name(), "PeterNeumann");
  EXPECT_EQ(signer->PrivateKeyText(), kGoSignerKey);
  EXPECT_EQ(signer->VerifierKeyText(), kGoVerifierKey);
  EXPECT_EQ(MustSign(*signer, kGoText), kGoNote);

  NoteVerifier verifier = MustVerifier(kGoVerifierKey);
  EXPECT_EQ(verifier.name(), "PeterNeumann");
  auto opened = verifier.Open(kGoNote);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(*opened, kGoText);
  // And the key hash is the one computed from the definition.
  std::optional<std::string> raw =
      core::Base64Decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(GoKeyHashHex("PeterNeumann", raw->substr(1)), "c74f20a3");
}

TEST(NoteKeys, C2spSignedNoteSpecExampleVerifies) {
  // The example verifier key and note of the C2SP signed-note specification.
  NoteVerifier verifier =
      MustVerifier("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
  auto opened = verifier.Open(
      "This is an example message.\n\n"
      "\xE2\x80\x94 example.com/foo "
      "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM="
      "\n");
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(*opened, "This is an example message.\n");
}

TEST(NoteKeys, ParseRejectsMalformedKeys) {
  NoteSigner signer = MustGenerate("k");
  const std::string priv = signer.PrivateKeyText();
  const std::string vkey = signer.VerifierKeyText();
  const std::string hash = vkey.substr(2, 8);
  std::string other_hash = hash;
  other_hash[0] = other_hash[0] == '0' ? '1' : '0';
  const std::string key_b64 = vkey.substr(11);
  const std::string seed_b64 = priv.substr(std::string("PRIVATE+KEY+k+").size() + 9);
  auto alg2 = [](const std::string& b64) {
    std::string raw = *core::Base64Decode(b64);
    raw[0] = '\x02';
    return core::Base64Encode(raw);
  };
  auto shorter = [](const std::string& b64) {
    std::string raw = *core::Base64Decode(b64);
    raw.pop_back();
    return core::Base64Encode(raw);
  };
  const std::vector<std::string> bad_verifiers = {
      "",
      "k",
      "k+" + hash,
      "k+" + other_hash + "+" + key_b64,         // hash of another key
      "j+" + hash + "+" + key_b64,               // another name: the hash does not match
      "k+" + hash.substr(0, 7) + "+" + key_b64,  // short hash
      "k+" + hash + "0+" + key_b64,              // long hash
      "k+zzzzzzzz+" + key_b64,                   // not hex
      "k+" + hash + "+" + key_b64.substr(1),     // bad base64
      "k+" + hash + "+" + alg2(key_b64),         // unknown algorithm
      "k+" + hash + "+" + shorter(key_b64),      // 31-byte key
      "+" + hash + "+" + key_b64,                // empty name
      "k k+" + hash + "+" + key_b64,             // name with a space
  };
  for (const std::string& text : bad_verifiers) {
    auto v = NoteVerifier::Parse(text);
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_EQ(v.error().code, ErrorCode::kBadRequest) << text;
  }
  const std::vector<std::string> bad_signers = {
      vkey,                                               // a verifier key
      "PRIVATE+KEY+k+" + other_hash + "+" + seed_b64,     // wrong hash
      "PRIVATE+KEY+j+" + hash + "+" + seed_b64,           // wrong name
      "PRIVATE+KEY+k+" + hash + "+" + alg2(seed_b64),     // unknown algorithm
      "PRIVATE+KEY+k+" + hash + "+" + shorter(seed_b64),  // short seed
      "private+key+k+" + hash + "+" + seed_b64,
  };
  for (const std::string& text : bad_signers) {
    auto s = NoteSigner::Parse(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_EQ(s.error().code, ErrorCode::kBadRequest) << text;
  }
  EXPECT_TRUE(NoteSigner::Parse(priv).ok());
  EXPECT_TRUE(NoteVerifier::Parse(vkey).ok());
  // A trailing newline (as in log.pub) is tolerated by the verifier.
  EXPECT_TRUE(NoteVerifier::Parse(vkey + "\n").ok());
}

// --- Signing and opening -----------------------------------------------------------------

TEST(Note, SignProducesTheSignedNoteFormat) {
  NoteSigner signer = MustGenerate("example.com/audit");
  const std::string text = CheckpointText({"example.com/audit", 3, SomeRoot()});
  const std::string note = MustSign(signer, text);
  const std::string prefix = text + "\n" + std::string(kEmDash) + " example.com/audit ";
  ASSERT_EQ(note.substr(0, prefix.size()), prefix);
  ASSERT_EQ(note.back(), '\n');
  std::optional<std::string> sig =
      core::Base64Decode(note.substr(prefix.size(), note.size() - prefix.size() - 1));
  ASSERT_TRUE(sig.has_value());
  ASSERT_EQ(sig->size(), 4u + 64u);
  // The first 4 bytes are the key hash of the verifier key, the rest an Ed25519 signature of
  // the text (including its final newline, not the blank line).
  const std::string vkey = signer.VerifierKeyText();
  EXPECT_EQ(core::HexEncode(sig->substr(0, 4)), vkey.substr(vkey.find('+') + 1, 8));
  std::string pub =
      core::Base64Decode(vkey.substr(vkey.find('+', vkey.find('+') + 1) + 1))->substr(1);
  EXPECT_TRUE(core::Ed25519Verify(pub, text, sig->substr(4)));
}

TEST(Note, SignAndOpenRoundTrip) {
  NoteSigner signer = MustGenerate("example.com/audit");
  NoteVerifier verifier = MustVerifier(signer.VerifierKeyText());
  const std::string text = CheckpointText({"example.com/audit", 12345, SomeRoot()});
  auto opened = verifier.Open(MustSign(signer, text));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(*opened, text);
  auto cp = ParseCheckpointText(*opened);
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->size, 12345u);
  EXPECT_EQ(cp->root, SomeRoot());
}

TEST(Note, SignRejectsMalformedText) {
  NoteSigner signer = MustGenerate("k");
  for (std::string text : {std::string(""), std::string("no newline"), std::string("a\n\nb\n"),
                           std::string("\na\n"), std::string("\n")}) {
    auto note = signer.Sign(text);
    ASSERT_FALSE(note.ok()) << text;
    EXPECT_EQ(note.error().code, ErrorCode::kBadRequest);
  }
}

class OpenNote : public ::testing::Test {
 protected:
  void SetUp() override {
    text_ = CheckpointText({"example.com/audit", 7, SomeRoot()});
    note_ = MustSign(signer_, text_);
  }
  // The signature line's base64 decoded, with one byte flipped, re-encoded.
  std::string FlipSignatureByte(size_t byte) const {
    size_t start = note_.rfind(' ') + 1;
    std::string raw = *core::Base64Decode(note_.substr(start, note_.size() - start - 1));
    raw[byte] = static_cast<char>(raw[byte] ^ 0x01);
    return note_.substr(0, start) + core::Base64Encode(raw) + "\n";
  }

  NoteSigner signer_ = MustGenerate("example.com/audit");
  NoteVerifier verifier_ = MustVerifier(signer_.VerifierKeyText());
  std::string text_;
  std::string note_;
};

TEST_F(OpenNote, RejectsAFlippedSignatureByte) {
  for (size_t byte : {size_t{4}, size_t{30}, size_t{67}}) {
    auto opened = verifier_.Open(FlipSignatureByte(byte));
    ASSERT_FALSE(opened.ok()) << byte;
    EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated) << byte;
  }
}

TEST_F(OpenNote, RejectsAFlippedKeyHashAsNotSignedByThisKey) {
  auto opened = verifier_.Open(FlipSignatureByte(0));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(OpenNote, RejectsANoteOfAnotherKey) {
  // Another key of the same name (a replaced key), and one of another name.
  for (std::string name : {std::string("example.com/audit"), std::string("example.com/other")}) {
    NoteSigner other = MustGenerate(name);
    auto opened = verifier_.Open(MustSign(other, text_));
    ASSERT_FALSE(opened.ok()) << name;
    EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated) << name;
  }
}

TEST_F(OpenNote, RejectsAModifiedText) {
  std::string modified = note_;
  modified[modified.find('\n') + 1] = '8';  // the size line: 7 -> 8
  auto opened = verifier_.Open(modified);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
  // An extension line slipped in before the blank line.
  std::string extended = text_ + "extra\n" + note_.substr(text_.size());
  opened = verifier_.Open(extended);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(OpenNote, RejectsMalformedNotes) {
  const std::string sig_line = note_.substr(text_.size() + 1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"no blank line", text_ + sig_line},
      {"no final newline", note_.substr(0, note_.size() - 1)},
      {"no signature line", text_ + "\n"},
      {"a signature line without the em dash", text_ + "\n" + sig_line.substr(kEmDash.size())},
      {"a hyphen instead of the em dash", text_ + "\n-" + sig_line.substr(kEmDash.size())},
      {"a signature line without a key name", text_ + "\n" + std::string(kEmDash) + " abc\n"},
      {"a signature that is not base64",
       text_ + "\n" + std::string(kEmDash) + " example.com/audit !!!!\n"},
      {"a signature shorter than a key hash",
       text_ + "\n" + std::string(kEmDash) + " example.com/audit AAAA\n"},
      {"larger than kNoteBytesMax", std::string(kNoteBytesMax, 'x') + "\n" + note_},
  };
  for (const auto& [what, note] : cases) {
    auto opened = verifier_.Open(note);
    ASSERT_FALSE(opened.ok()) << what;
    EXPECT_EQ(opened.error().code, ErrorCode::kBadRequest)
        << what << ": " << opened.error().message;
  }
}

TEST_F(OpenNote, IgnoresWitnessSignaturesOfOtherKeys) {
  NoteSigner witness = MustGenerate("witness.example/w1");
  std::string witness_note = MustSign(witness, text_);
  std::string witness_line = witness_note.substr(text_.size() + 1);
  // After and before the log's own line.
  for (const std::string& note :
       {note_ + witness_line, text_ + "\n" + witness_line + note_.substr(text_.size() + 1)}) {
    auto opened = verifier_.Open(note);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(*opened, text_);
    // And the witness can open it too.
    auto by_witness = MustVerifier(witness.VerifierKeyText()).Open(note);
    ASSERT_TRUE(by_witness.ok()) << by_witness.error().message;
  }
  // A note signed only by the witness is not the log's.
  auto opened = verifier_.Open(witness_note);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(OpenNote, RejectsANoteWhereOneOfTwoLinesOfThisKeyIsBad) {
  // Every line of this key must verify, not just one of them.
  std::string bad = FlipSignatureByte(20);
  std::string both = note_ + bad.substr(text_.size() + 1);
  auto opened = verifier_.Open(both);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::kUnauthenticated);
}

// --- SplitNotes --------------------------------------------------------------------------

TEST(SplitNotes, SplitsConcatenatedNotesWithTheirOffsetsAndLines) {
  NoteSigner signer = MustGenerate("example.com/audit");
  NoteSigner witness = MustGenerate("witness");
  std::vector<std::string> notes;
  for (uint64_t size : {3, 6, 7}) {
    notes.push_back(MustSign(signer, CheckpointText({"example.com/audit", size, SomeRoot()})));
  }
  // The second note carries a witness signature too: 6 lines instead of 5.
  const std::string text1 = CheckpointText({"example.com/audit", 6, SomeRoot()});
  notes[1] += MustSign(witness, text1).substr(text1.size() + 1);
  std::string data = notes[0] + notes[1] + notes[2];
  auto spans = SplitNotes(data);
  ASSERT_TRUE(spans.ok()) << spans.error().message;
  ASSERT_EQ(spans->size(), 3u);
  EXPECT_EQ((*spans)[0].note, notes[0]);
  EXPECT_EQ((*spans)[1].note, notes[1]);
  EXPECT_EQ((*spans)[2].note, notes[2]);
  EXPECT_EQ((*spans)[0].offset, 0u);
  EXPECT_EQ((*spans)[1].offset, notes[0].size());
  EXPECT_EQ((*spans)[2].offset, notes[0].size() + notes[1].size());
  EXPECT_EQ((*spans)[0].line, 1u);
  EXPECT_EQ((*spans)[1].line, 6u);
  EXPECT_EQ((*spans)[2].line, 12u);
  NoteVerifier verifier = MustVerifier(signer.VerifierKeyText());
  for (const NoteSpan& span : *spans) EXPECT_TRUE(verifier.Open(span.note).ok());

  auto empty = SplitNotes("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(SplitNotes, RejectsALastNoteCutShortAtEveryByte) {
  NoteSigner signer = MustGenerate("example.com/audit");
  const std::string first = MustSign(signer, CheckpointText({"example.com/audit", 1, SomeRoot()}));
  const std::string last = MustSign(signer, CheckpointText({"example.com/audit", 2, SomeRoot()}));
  for (size_t cut = 1; cut < last.size(); ++cut) {
    std::string data = first + last.substr(0, cut);
    auto spans = SplitNotes(data);
    // A cut inside the base64 of the signature leaves a well-formed but shorter note only
    // when it falls right after a '\n' — which happens only at the end of the note.
    ASSERT_FALSE(spans.ok()) << "cut at " << cut;
    EXPECT_EQ(spans.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(spans.error().message.find("line 6"), std::string::npos)
        << "cut at " << cut << ": " << spans.error().message;
  }
}

TEST(SplitNotes, RejectsNotesWithoutTextOrSignature) {
  NoteSigner signer = MustGenerate("k");
  const std::string note = MustSign(signer, "k\n1\n" + B64(SomeRoot()) + "\n");
  for (const std::string& data :
       {std::string("\n") + note,                                       // an empty text
        std::string("text only\n\n") + note,                            // no signature line
        note + "garbage\n" + note.substr(0, note.find("\n\n") + 1)}) {  // a text cut short
    auto spans = SplitNotes(data);
    ASSERT_FALSE(spans.ok()) << data;
    EXPECT_EQ(spans.error().code, ErrorCode::kBadRequest);
  }
}

}  // namespace
}  // namespace mandate::audit
