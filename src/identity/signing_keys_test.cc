#include "mandate/identity/signing_keys.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/temp_dir_test_util.h"
#include "identity/identity_test_util.h"
#include "mandate/core/clock.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {
namespace {

using core::ErrorCode;
using core::Json;
using core::testing::TempDir;

std::vector<std::string> PemFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".pem") out.push_back(e.path().string());
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// RFC 8037 appendix A.4: a key directory holding the example's private key signs the
// example's JWS with the example's signature, byte for byte (Ed25519 is deterministic:
// whichever library signs, the bytes are RFC 8032's), and so does the key read back.
TEST(SigningKeys, SignsRfc8037Ed25519ExampleExactly) {
  TempDir tmp;
  const std::string dir = tmp.Sub("keys");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  // PKCS#8 for an Ed25519 seed: the fixed DER prefix, then the 32-byte seed ("d").
  const std::string der = std::string("\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20", 16) +
                          core::Base64UrlDecode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").value();
  const std::string kid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
  {
    int fd = ::open((dir + "/" + kid + ".pem").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    const std::string pem = "-----BEGIN PRIVATE KEY-----\n" + core::Base64Encode(der) + "\n-----END PRIVATE KEY-----\n";
    ASSERT_EQ(::write(fd, pem.data(), pem.size()), static_cast<ssize_t>(pem.size()));
    ::close(fd);
  }
  const std::string input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
  const std::string want = core::Base64UrlDecode(
      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg").value();
  for (int load = 0; load < 2; ++load) {  // the second load reads what the first left
    auto keys = SigningKeys::LoadOrCreate(dir, Alg::kEdDSA);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    auto active = (*keys)->Active();
    ASSERT_NE(active, nullptr);
    EXPECT_EQ(active->kid(), kid);
    auto sig = active->Sign(input);
    ASSERT_TRUE(sig.ok()) << sig.error().message;
    EXPECT_EQ(*sig, want);
    EXPECT_TRUE(active->Verify(input, *sig));
  }
}

TEST(SigningKeys, CreatesOneEd25519KeyOnFirstLoad) {
  TempDir tmp;
  const std::string dir = tmp.Sub("data/keys");  // parents are created too
  auto keys = SigningKeys::LoadOrCreate(dir, Alg::kEdDSA);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ((*keys)->size(), 1u);
  auto active = (*keys)->Active();
  ASSERT_NE(active, nullptr);
  EXPECT_EQ(active->alg(), Alg::kEdDSA);
  EXPECT_TRUE(active->has_private_key());
  EXPECT_EQ((*keys)->Find(active->kid()), active);
  EXPECT_EQ((*keys)->Find("nope"), nullptr);

  auto pems = PemFiles(dir);
  ASSERT_EQ(pems.size(), 1u);
  EXPECT_EQ(std::filesystem::path(pems[0]).filename().string(), active->kid() + ".pem");
  EXPECT_NE(ReadFile(pems[0]).find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_EQ(ReadFile(dir + "/active"), active->kid() + "\n");

  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(SigningKeys, KeyFileIsMode0600) {
  TempDir tmp;
  ASSERT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
  auto pems = PemFiles(tmp.Sub("keys"));
  ASSERT_EQ(pems.size(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(pems[0].c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temporary files are left behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.Sub("keys"))) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2u);  // <kid>.pem and active
}

TEST(SigningKeys, ReloadKeepsTheSameKey) {
  TempDir tmp;
  auto first = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_TRUE(first.ok());
  auto second = SigningKeys::LoadOrCreate(tmp.Sub("keys") + "/");
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ((*first)->Active()->kid(), (*second)->Active()->kid());
  auto sig = (*first)->Active()->Sign("abc");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE((*second)->Active()->Verify("abc", *sig));
  EXPECT_EQ(PemFiles(tmp.Sub("keys")).size(), 1u);
}

TEST(SigningKeys, RefusesWorldReadableKey) {
  TempDir tmp;
  ASSERT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
  const std::string pem = PemFiles(tmp.Sub("keys"))[0];
  ASSERT_EQ(::chmod(pem.c_str(), 0644), 0);
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.error().code, ErrorCode::kInternal);
  EXPECT_NE(keys.error().message.find("0644"), std::string::npos) << keys.error().message;
  EXPECT_NE(keys.error().message.find("chmod 600"), std::string::npos) << keys.error().message;
  EXPECT_NE(keys.error().message.find(pem), std::string::npos) << keys.error().message;
  EXPECT_EQ(keys.error().message.find("PRIVATE KEY"), std::string::npos);
}

TEST(SigningKeys, RefusesGroupAccessibleKey) {
  TempDir tmp;
  ASSERT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
  const std::string pem = PemFiles(tmp.Sub("keys"))[0];
  for (mode_t mode : {0640, 0620, 0610, 0604, 0602}) {
    ASSERT_EQ(::chmod(pem.c_str(), mode), 0);
    EXPECT_FALSE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok()) << std::oct << mode;
  }
  ASSERT_EQ(::chmod(pem.c_str(), 0400), 0);  // owner read-only is fine
  EXPECT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
}

TEST(SigningKeys, RefusesSymlinkedKeyFile) {
  TempDir tmp;
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_TRUE(keys.ok());
  const std::string pem = PemFiles(tmp.Sub("keys"))[0];
  const std::string elsewhere = tmp.Sub("moved.pem");
  ASSERT_EQ(::rename(pem.c_str(), elsewhere.c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), pem.c_str()), 0);
  EXPECT_FALSE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
}

TEST(SigningKeys, RefusesWorldWritableDirectory) {
  TempDir tmp;
  ASSERT_EQ(::mkdir(tmp.Sub("keys").c_str(), 0700), 0);
  ASSERT_EQ(::chmod(tmp.Sub("keys").c_str(), 0777), 0);
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.error().message.find("writable by others"), std::string::npos);
}

TEST(SigningKeys, RefusesGarbageKeyFile) {
  TempDir tmp;
  ASSERT_EQ(::mkdir(tmp.Sub("keys").c_str(), 0700), 0);
  int fd = ::open(tmp.Sub("keys/bad.pem").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "not a key\n", 10), 10);
  ::close(fd);
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_FALSE(keys.ok());
  EXPECT_NE(keys.error().message.find("bad.pem"), std::string::npos) << keys.error().message;
}

TEST(SigningKeys, RefusesActiveFileNamingAMissingKey) {
  TempDir tmp;
  ASSERT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
  std::ofstream(tmp.Sub("keys/active")) << "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k\n";
  EXPECT_FALSE(SigningKeys::LoadOrCreate(tmp.Sub("keys")).ok());
}

TEST(SigningKeys, AdoptsTheOnlyKeyWhenActiveFileIsMissing) {
  TempDir tmp;
  auto first = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(::unlink(tmp.Sub("keys/active").c_str()), 0);
  auto second = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ((*second)->Active()->kid(), (*first)->Active()->kid());
  EXPECT_EQ(ReadFile(tmp.Sub("keys/active")), (*first)->Active()->kid() + "\n");
}

TEST(SigningKeys, KeepsOtherKeysAsVerifyOnly) {
  TempDir tmp;
  // Two key directories' keys in one: the one named active signs, the other only verifies.
  auto a = SigningKeys::LoadOrCreate(tmp.Sub("a"));
  auto b = SigningKeys::LoadOrCreate(tmp.Sub("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string b_pem = PemFiles(tmp.Sub("b"))[0];
  const std::string moved = tmp.Sub("a/") + std::filesystem::path(b_pem).filename().string();
  ASSERT_EQ(::rename(b_pem.c_str(), moved.c_str()), 0);
  auto both = SigningKeys::LoadOrCreate(tmp.Sub("a"));
  ASSERT_TRUE(both.ok()) << both.error().message;
  EXPECT_EQ((*both)->size(), 2u);
  EXPECT_EQ((*both)->Active()->kid(), (*a)->Active()->kid());
  EXPECT_NE((*both)->Find((*b)->Active()->kid()), nullptr);
  Json jwks = (*both)->Jwks();
  ASSERT_EQ(jwks.Find("keys")->as_array().size(), 2u);
  EXPECT_EQ(jwks.Find("keys")->as_array()[0].GetString("kid"), (*a)->Active()->kid());

  // Without "active", two keys are ambiguous.
  ASSERT_EQ(::unlink(tmp.Sub("a/active").c_str()), 0);
  EXPECT_FALSE(SigningKeys::LoadOrCreate(tmp.Sub("a")).ok());
}

TEST(SigningKeys, JwksHasKidAndUseSig) {
  TempDir tmp;
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"));
  ASSERT_TRUE(keys.ok());
  Json jwks = (*keys)->Jwks();
  const Json* arr = jwks.FindArray("keys");
  ASSERT_NE(arr, nullptr);
  ASSERT_EQ(arr->as_array().size(), 1u);
  const Json& k = arr->as_array()[0];
  EXPECT_EQ(k.GetString("kty"), "OKP");
  EXPECT_EQ(k.GetString("crv"), "Ed25519");
  EXPECT_EQ(k.GetString("use"), "sig");
  EXPECT_EQ(k.GetString("alg"), "EdDSA");
  EXPECT_EQ(k.GetString("kid"), (*keys)->Active()->kid());
  EXPECT_EQ(core::Base64UrlDecode(k.GetString("x"))->size(), 32u);
  // kid is the RFC 7638 thumbprint of the public key, and nothing private is published.
  EXPECT_EQ(*JwkThumbprint(k), k.GetString("kid"));
  EXPECT_EQ(k.as_object().size(), 6u);
  EXPECT_EQ(k.Find("d"), nullptr);
  EXPECT_EQ(jwks.Dump().find(ReadFile(PemFiles(tmp.Sub("keys"))[0]).substr(30, 20)),
            std::string::npos);
}

TEST(SigningKeys, CreatesAndLoadsEs256Keys) {
  TempDir tmp;
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"), Alg::kES256);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ((*keys)->Active()->alg(), Alg::kES256);
  const Json jwks = (*keys)->Jwks();
  const Json& k = jwks.FindArray("keys")->as_array()[0];
  EXPECT_EQ(k.GetString("kty"), "EC");
  EXPECT_EQ(k.GetString("crv"), "P-256");
  EXPECT_EQ(k.GetString("alg"), "ES256");
  EXPECT_EQ(*JwkThumbprint(k), k.GetString("kid"));
  auto again = SigningKeys::LoadOrCreate(tmp.Sub("keys"), Alg::kES256);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->Active()->kid(), (*keys)->Active()->kid());
}

TEST(SigningKeys, RefusesAlgorithmSwitchWithoutRotation) {
  TempDir tmp;
  ASSERT_TRUE(SigningKeys::LoadOrCreate(tmp.Sub("keys"), Alg::kEdDSA).ok());
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"), Alg::kES256);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.error().code, ErrorCode::kConflict);
}

TEST(SigningKeys, RefusesADirectoryThatIsAFile) {
  TempDir tmp;
  std::ofstream(tmp.Sub("file")) << "x";
  EXPECT_FALSE(SigningKeys::LoadOrCreate(tmp.Sub("file")).ok());
  EXPECT_FALSE(SigningKeys::LoadOrCreate("").ok());
}

}  // namespace
}  // namespace mandate::identity

namespace mandate::identity {
namespace {

TEST(SigningKeys, RotationSignsWithTheNewKeyAndRetiresTheOldOneAfterItsTokensExpire) {
  TempDir tmp;
  const std::string dir = tmp.Sub("keys");
  core::FakeClock clock;
  clock.SetUnixSeconds(1'800'000'000);
  auto keys = SigningKeys::LoadOrCreate(dir, Alg::kEdDSA, clock);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  const std::string old_kid = (*keys)->Active()->kid();

  auto r = (*keys)->Rotate(Alg::kES256, 900 + 30);  // e.g. max_ttl 15 min + 30 s skew
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->previous_kid, old_kid);
  EXPECT_EQ(r->previous_retires_at, 1'800'000'930);
  EXPECT_EQ((*keys)->Active()->kid(), r->kid);
  EXPECT_EQ((*keys)->Active()->alg(), Alg::kES256);  // the new key has the algorithm asked for
  // Both verify, and the JWKS shows exactly them, the new signer first.
  EXPECT_NE((*keys)->Find(old_kid), nullptr);
  Json jwks = (*keys)->Jwks();
  ASSERT_EQ(jwks.FindArray("keys")->as_array().size(), 2u);
  EXPECT_EQ(jwks.FindArray("keys")->as_array()[0].GetString("kid"), r->kid);
  EXPECT_EQ(ReadFile(dir + "/active"), r->kid + "\n");
  EXPECT_EQ(ReadFile(dir + "/" + old_kid + ".retire"), "1800000930\n");
  auto list = (*keys)->List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_TRUE(list[0].active);
  EXPECT_FALSE(list[0].retires_at.has_value());
  EXPECT_EQ(list[1].retires_at.value_or(0), 1'800'000'930);

  // A restart in between keeps the same state.
  {
    auto reloaded = SigningKeys::LoadOrCreate(dir, Alg::kES256, clock);
    ASSERT_TRUE(reloaded.ok()) << reloaded.error().message;
    EXPECT_EQ((*reloaded)->Active()->kid(), r->kid);
    EXPECT_NE((*reloaded)->Find(old_kid), nullptr);
  }

  // Up to its retirement second the old key verifies; after it, it is gone from Find and JWKS.
  clock.SetUnixSeconds(1'800'000'930);
  EXPECT_NE((*keys)->Find(old_kid), nullptr);
  clock.SetUnixSeconds(1'800'000'931);
  EXPECT_EQ((*keys)->Find(old_kid), nullptr);
  EXPECT_EQ((*keys)->Jwks().FindArray("keys")->as_array().size(), 1u);
  EXPECT_EQ((*keys)->size(), 1u);
  // The next load deletes its files; the private key does not outlive its use.
  auto after = SigningKeys::LoadOrCreate(dir, Alg::kES256, clock);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ((*after)->size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + old_kid + ".pem"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + old_kid + ".retire"));
}

TEST(SigningKeys, RotationRefusesBadInputAndTooManyLiveKeys) {
  TempDir tmp;
  core::FakeClock clock;
  auto keys = SigningKeys::LoadOrCreate(tmp.Sub("keys"), Alg::kEdDSA, clock);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ((*keys)->Rotate(Alg::kEdDSA, -1).error().code, ErrorCode::kBadRequest);
  size_t rotations = 0;
  core::Result<SigningKeys::Rotation> r = (*keys)->Rotate(Alg::kEdDSA, 3600);
  while (r.ok() && rotations < core::kSigningKeysMax + 2) {
    ++rotations;
    r = (*keys)->Rotate(Alg::kEdDSA, 3600);
  }
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPayloadTooLarge);
  EXPECT_EQ((*keys)->size(), core::kSigningKeysMax);
  // Once the old ones retire, rotation works again and prunes them.
  clock.AdvanceSeconds(3601);
  auto again = (*keys)->Rotate(Alg::kEdDSA, 3600);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*keys)->size(), 2u);
  EXPECT_EQ(PemFiles(tmp.Sub("keys")).size(), 2u);
}

}  // namespace
}  // namespace mandate::identity
