#include "mandate/policy/policy_set.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "mandate/core/limits.h"

namespace mandate::policy {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class PolicyDir : public ::testing::Test {
 protected:
  PolicyDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("mandate_policy_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~PolicyDir() override { fs::remove_all(dir_); }

  void Write(const std::string& name, std::string_view text) {
    std::ofstream out(dir_ / name, std::ios::binary);
    out << text;
  }
  std::string dir() const { return dir_.string(); }

  fs::path dir_;
};

TEST_F(PolicyDir, LoadsEveryCedarFileInNameOrder) {
  Write("b.cedar", "permit(principal, action, resource);\nforbid(principal, action, resource);");
  Write("a.cedar", "@id(\"first\") permit(principal, action, resource);");
  Write("notes.txt", "not a policy");
  Write("c.cedar.bak", "garbage");
  fs::create_directories(dir_ / "sub.cedar");
  auto set = PolicySet::LoadDir(dir());
  ASSERT_TRUE(set.ok()) << set.error().message;
  ASSERT_EQ(set->size(), 3u);
  EXPECT_EQ(set->policies()[0].id, "first");
  EXPECT_EQ(set->policies()[1].id, "b.cedar:0");
  EXPECT_EQ(set->policies()[2].id, "b.cedar:1");
  // Locations name the file by its path; ids by its name only.
  EXPECT_EQ(set->policies()[2].location.ToString(), dir() + "/b.cedar:2:1");
}

TEST_F(PolicyDir, SourceDigestIsStableAndFollowsEveryByteAndName) {
  Write("a.cedar", "permit(principal, action, resource);");
  auto one = PolicySet::LoadDir(dir());
  auto two = PolicySet::LoadDir(dir());
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ(one->source_sha256().size(), 64u);
  EXPECT_EQ(one->source_sha256(), two->source_sha256());
  Write("a.cedar", "permit(principal, action, resource); ");  // one byte more
  auto edited = PolicySet::LoadDir(dir());
  ASSERT_TRUE(edited.ok());
  EXPECT_NE(edited->source_sha256(), one->source_sha256());
  fs::rename(dir_ / "a.cedar", dir_ / "b.cedar");  // same bytes, another name
  auto renamed = PolicySet::LoadDir(dir());
  ASSERT_TRUE(renamed.ok());
  EXPECT_NE(renamed->source_sha256(), edited->source_sha256());
  EXPECT_TRUE(PolicySet::Parse("permit(principal, action, resource);", "x.cedar")->source_sha256().empty());
}

TEST_F(PolicyDir, ParseErrorsNameTheFilePath) {
  Write("a.cedar", "permit(principal, action, resource);");
  Write("bad.cedar", "permit(principal, action, resource)\n  when { true ;");
  auto set = PolicySet::LoadDir(dir());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kBadRequest);
  EXPECT_EQ(set.error().message,
            dir() + "/bad.cedar:2:15: expected '}' after the condition, found ';'");
}

TEST_F(PolicyDir, RejectsDuplicateIdsAcrossFiles) {
  Write("a.cedar", "@id(\"x\") permit(principal, action, resource);");
  Write("b.cedar", "\n@id(\"x\") forbid(principal, action, resource);");
  auto set = PolicySet::LoadDir(dir());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kConflict);
  EXPECT_EQ(set.error().message,
            "duplicate policy id 'x' (" + dir() + "/a.cedar:1:1 and " + dir() + "/b.cedar:2:1)");
}

TEST_F(PolicyDir, RejectsAnOversizedFile) {
  Write("a.cedar", std::string(core::kPolicyFileBytesMax + 1, ' '));
  auto set = PolicySet::LoadDir(dir());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kPayloadTooLarge);
}

TEST_F(PolicyDir, RejectsADirectoryWithoutPolicies) {
  Write("readme.md", "no policies here");
  auto set = PolicySet::LoadDir(dir());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kNotFound);
  EXPECT_EQ(set.error().message, "no *.cedar files in policy directory " + dir());
}

TEST_F(PolicyDir, RejectsAMissingDirectory) {
  auto set = PolicySet::LoadDir(dir() + "/absent");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kNotFound);
}

TEST_F(PolicyDir, RejectsAnUnreadableFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  Write("a.cedar", "permit(principal, action, resource);");
  fs::permissions(dir_ / "a.cedar", fs::perms::none);
  auto set = PolicySet::LoadDir(dir());
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kInternal);
}

TEST(PolicySetMerge, AppendsPoliciesAndIndexesTheirIds) {
  auto a = PolicySet::Parse("@id(\"a\") permit(principal, action, resource);", "a.cedar");
  auto b = PolicySet::Parse("forbid(principal, action, resource);", "b.cedar");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->Merge(std::move(*b)).ok());
  EXPECT_EQ(a->size(), 2u);
  ASSERT_NE(a->Find("b.cedar:0"), nullptr);
  EXPECT_TRUE(a->Find("b.cedar:0")->is_forbid);
}

TEST(PolicySetMerge, LeavesTheSetUnchangedOnConflict) {
  auto a = PolicySet::Parse("@id(\"x\") permit(principal, action, resource);", "a.cedar");
  auto b = PolicySet::Parse(
      "@id(\"y\") permit(principal, action, resource);\n"
      "@id(\"x\") permit(principal, action, resource);",
      "b.cedar");
  ASSERT_TRUE(a.ok() && b.ok());
  auto merged = a->Merge(std::move(*b));
  ASSERT_FALSE(merged.ok());
  EXPECT_EQ(merged.error().code, core::ErrorCode::kConflict);
  EXPECT_EQ(a->size(), 1u);
  EXPECT_EQ(a->Find("y"), nullptr);
}

}  // namespace
}  // namespace mandate::policy
