#include "mandate/net/form.h"

#include <gtest/gtest.h>

#include <string>

#include "mandate/core/error_code.h"
#include "mandate/core/limits.h"

namespace mandate::net {
namespace {

TEST(Form, DecodesPairsPlusAndPercentEscapes) {
  auto f = ParseForm("grant_type=urn%3Aietf%3Aparams&scope=a%3Ab+c%3Ad&empty=&flag&&x=%2b%2B");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->at("grant_type"), "urn:ietf:params");
  EXPECT_EQ(f->at("scope"), "a:b c:d");
  EXPECT_EQ(f->at("empty"), "");
  EXPECT_EQ(f->at("flag"), "");
  EXPECT_EQ(f->at("x"), "++");
  EXPECT_EQ(f->size(), 5u);
  EXPECT_TRUE(ParseForm("")->empty());
  EXPECT_EQ(ParseForm("a=%00")->at("a"), std::string(1, '\0'));
}

TEST(Form, RefusesMalformedEscapesRepeatsAndTooManyParameters) {
  for (const char* bad : {"a=%", "a=%4", "a=%zz", "a=%4g", "%=1", "a=1&a=2", "a=1&a"}) {
    auto f = ParseForm(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.error().code, core::ErrorCode::kBadRequest) << bad;
  }
  std::string many;
  for (size_t i = 0; i <= core::kFormParamsMax; ++i) many += "p" + std::to_string(i) + "=1&";
  EXPECT_FALSE(ParseForm(many).ok());
}

}  // namespace
}  // namespace mandate::net
