#include "mandate/broker/credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "mandate/core/encoding.h"

namespace mandate::broker {
namespace {

const char* FakeEnv(const char* name) {
  std::string n(name);
  if (n == "GH") return "ghp_supersecret123";
  if (n == "SHORT") return "abc";
  if (n == "EMPTY") return "";
  return nullptr;
}

TEST(Credentials, LoadsFromEnvAndFile) {
  std::string path = testing::TempDir() + "/cred_ok";
  {
    std::ofstream f(path);
    f << "file-secret-value\n";
  }
  chmod(path.c_str(), 0600);
  auto store = CredentialStore::Load({{"gh", "GH", ""}, {"f", "", path}}, FakeEnv);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(*(*store)->Get("gh"), "ghp_supersecret123");
  EXPECT_EQ(*(*store)->Get("f"), "file-secret-value");
  EXPECT_EQ((*store)->Get("nope").error().code, core::ErrorCode::kNotFound);
}

TEST(Credentials, RefusesMissingShortOrExposedSecrets) {
  EXPECT_FALSE(CredentialStore::Load({{"x", "UNSET", ""}}, FakeEnv).ok());
  EXPECT_FALSE(CredentialStore::Load({{"x", "EMPTY", ""}}, FakeEnv).ok());
  auto short_secret = CredentialStore::Load({{"x", "SHORT", ""}}, FakeEnv);
  ASSERT_FALSE(short_secret.ok());
  EXPECT_NE(short_secret.error().message.find("shorter"), std::string::npos);
  EXPECT_FALSE(CredentialStore::Load({{"x", "", "/nonexistent/file"}}, FakeEnv).ok());
  std::string path = testing::TempDir() + "/cred_world";
  {
    std::ofstream f(path);
    f << "world-readable-secret";
  }
  chmod(path.c_str(), 0644);
  auto exposed = CredentialStore::Load({{"x", "", path}}, FakeEnv);
  ASSERT_FALSE(exposed.ok());
  EXPECT_NE(exposed.error().message.find("readable"), std::string::npos);
}

TEST(Scrubber, RemovesEveryEncodingOfEverySecret) {
  Scrubber s;
  s.Add("ghp_supersecret/123");
  std::string text = "raw=ghp_supersecret/123 b64=" + core::Base64Encode("ghp_supersecret/123") +
                     " url=" + core::Base64UrlEncode("ghp_supersecret/123") + " pct=ghp_supersecret%2F123";
  std::string out = s.Scrub(text);
  EXPECT_FALSE(s.ContainsSecret(out)) << out;
  EXPECT_EQ(out.find("supersecret"), std::string::npos) << out;
  EXPECT_NE(out.find("[REDACTED]"), std::string::npos);
}

TEST(Scrubber, ScrubsNestedJsonStringsAndKeys) {
  Scrubber s;
  s.Add("topsecret-token");
  auto j = core::Json::Parse(R"({"a":["x topsecret-token y",{"topsecret-token":1}],"n":5})");
  ASSERT_TRUE(j.ok());
  std::string out = s.ScrubJson(*j).Dump();
  EXPECT_EQ(out, R"({"a":["x [REDACTED] y",{"[REDACTED]":1}],"n":5})");
}

}  // namespace
}  // namespace mandate::broker
