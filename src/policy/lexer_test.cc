#include "policy/lexer.h"

#include <gtest/gtest.h>

namespace mandate::policy {
namespace {

std::vector<TokenKind> Kinds(std::string_view src) {
  auto tokens = Tokenize(src, "t.cedar");
  EXPECT_TRUE(tokens.ok()) << tokens.error().message;
  std::vector<TokenKind> kinds;
  if (tokens.ok()) {
    for (const Token& t : *tokens) kinds.push_back(t.kind);
  }
  return kinds;
}

std::string LexError(std::string_view src) {
  auto tokens = Tokenize(src, "t.cedar");
  EXPECT_FALSE(tokens.ok()) << src;
  if (tokens.ok()) return "";
  EXPECT_EQ(tokens.error().code, core::ErrorCode::kBadRequest);
  return tokens.error().message;
}

using K = TokenKind;

TEST(Lexer, TokenizesEveryPunctuator) {
  EXPECT_EQ(
      Kinds("( ) [ ] { } , ; . : :: @ == != < <= > >= && || + - * / % ! ="),
      (std::vector<K>{
          K::kLParen, K::kRParen, K::kLBracket, K::kRBracket,   K::kLBrace, K::kRBrace, K::kComma,
          K::kSemi,   K::kDot,    K::kColon,    K::kColonColon, K::kAt,     K::kEqEq,   K::kNotEq,
          K::kLt,     K::kLe,     K::kGt,       K::kGe,         K::kAndAnd, K::kOrOr,   K::kPlus,
          K::kMinus,  K::kStar,   K::kSlash,    K::kPercent,    K::kBang,   K::kAssign, K::kEnd}));
}

TEST(Lexer, TokenizesIdentifiersStringsIntegersAndSlots) {
  auto tokens = Tokenize(R"(permit _x9 "a\"b" 42 ?principal)", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 6u);
  EXPECT_EQ((*tokens)[0].kind, K::kIdent);
  EXPECT_EQ((*tokens)[0].text, "permit");
  EXPECT_EQ((*tokens)[1].text, "_x9");
  EXPECT_EQ((*tokens)[2].kind, K::kString);
  EXPECT_EQ((*tokens)[2].text, R"("a\"b")");
  EXPECT_EQ((*tokens)[3].kind, K::kInt);
  EXPECT_EQ((*tokens)[3].number, 42u);
  EXPECT_EQ((*tokens)[4].kind, K::kSlot);
  EXPECT_EQ((*tokens)[4].text, "?principal");
  EXPECT_EQ((*tokens)[5].kind, K::kEnd);
}

TEST(Lexer, AdjacentOperatorsSplitGreedily) {
  EXPECT_EQ(Kinds("a::\"b\""), (std::vector<K>{K::kIdent, K::kColonColon, K::kString, K::kEnd}));
  EXPECT_EQ(Kinds("!!x"), (std::vector<K>{K::kBang, K::kBang, K::kIdent, K::kEnd}));
  EXPECT_EQ(Kinds("1-2"), (std::vector<K>{K::kInt, K::kMinus, K::kInt, K::kEnd}));
}

TEST(Lexer, SkipsLineCommentsAndWhitespace) {
  EXPECT_EQ(Kinds("// only a comment"), (std::vector<K>{K::kEnd}));
  EXPECT_EQ(Kinds("a // comment ( \" \n b\t\r\n// another\nc"),
            (std::vector<K>{K::kIdent, K::kIdent, K::kIdent, K::kEnd}));
}

TEST(Lexer, SkipsUnicodeWhitespaceAsTheReferenceDoes) {
  // U+00A0, U+2028, U+3000, U+0085, U+1680, U+200A, U+202F, U+205F between tokens.
  EXPECT_EQ(Kinds("a\u00a0b\u2028c\u3000d\xc2\x85" "e\u1680f\u200ag\u202fh\u205fi"),
            Kinds("a b c d e f g h i"));
  auto tokens = Tokenize("a\u3000\u00a0b", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)[1].column, 4u);  // one column per character
  // Not whitespace in Unicode (the reference refuses them too): zero-width space, BOM.
  EXPECT_EQ(LexError("a\u200bb"), "t.cedar:1:2: unexpected character '\u200b'");
  EXPECT_EQ(LexError("\ufeffa"), "t.cedar:1:1: unexpected character '\ufeff'");
}

TEST(Lexer, CommentMarkersInsideStringsAreText) {
  auto tokens = Tokenize(R"("http://x" y)", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)[0].text, R"("http://x")");
  EXPECT_EQ((*tokens)[1].text, "y");
}

TEST(Lexer, TracksLinesAndColumnsInCharacters) {
  auto tokens = Tokenize("a\n  \"héé\" b\n\nc", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)[0].line, 1u);
  EXPECT_EQ((*tokens)[0].column, 1u);
  EXPECT_EQ((*tokens)[1].line, 2u);
  EXPECT_EQ((*tokens)[1].column, 3u);
  EXPECT_EQ((*tokens)[2].line, 2u);
  EXPECT_EQ((*tokens)[2].column, 9u);  // "héé" is 5 characters wide
  EXPECT_EQ((*tokens)[3].line, 4u);
  EXPECT_EQ((*tokens)[3].column, 1u);
}

TEST(Lexer, EndTokenCarriesTheEndPosition) {
  auto tokens = Tokenize("ab\ncd ", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(tokens->back().kind, K::kEnd);
  EXPECT_EQ(tokens->back().line, 2u);
  EXPECT_EQ(tokens->back().column, 4u);
}

TEST(Lexer, RejectsUnterminatedString) {
  EXPECT_EQ(LexError("x\n  \"abc"), "t.cedar:2:3: unterminated string literal");
  EXPECT_EQ(LexError("\"abc\\"), "t.cedar:1:1: unterminated string literal");
}

TEST(Lexer, RejectsLoneAmpersandAndPipe) {
  EXPECT_EQ(LexError("a & b"), "t.cedar:1:3: unexpected '&'; did you mean '&&'?");
  EXPECT_EQ(LexError("a | b"), "t.cedar:1:3: unexpected '|'; did you mean '||'?");
}

TEST(Lexer, RejectsUnexpectedCharacters) {
  EXPECT_EQ(LexError("a # b"), "t.cedar:1:3: unexpected character '#'");
  EXPECT_EQ(LexError("é"), "t.cedar:1:1: unexpected character 'é'");
  EXPECT_EQ(LexError("a\x01"), "t.cedar:1:2: unexpected character '\\x01'");
  EXPECT_EQ(LexError("? x"), "t.cedar:1:1: unexpected character '?'");
}

TEST(Lexer, RejectsIntegerAboveUint64) {
  EXPECT_EQ(LexError("99999999999999999999"),
            "t.cedar:1:1: integer literal 99999999999999999999 is too large");
  auto ok = Tokenize("18446744073709551615", "t.cedar");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)[0].number, UINT64_MAX);
}

TEST(Lexer, RejectsInvalidUtf8WithItsPosition) {
  EXPECT_EQ(LexError("ab\n\"c\xff\""), "t.cedar:2:3: invalid UTF-8");
  EXPECT_EQ(LexError("\xc0\x80"), "t.cedar:1:1: invalid UTF-8");          // overlong
  EXPECT_EQ(LexError("\"\xed\xa0\x80\""), "t.cedar:1:2: invalid UTF-8");  // surrogate
  EXPECT_EQ(LexError("\"\xe2\x82"), "t.cedar:1:2: invalid UTF-8");        // truncated
}

TEST(Lexer, UnescapesEveryStringEscape) {
  auto s = UnescapeString(R"("a\nb\rc\td\\e\"f\'g\0h\x41\u{e9}\u{1F600}")");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(*s, std::string("a\nb\rc\td\\e\"f'g\0hA\xc3\xa9\xf0\x9f\x98\x80", 22));
  EXPECT_EQ(*UnescapeString(R"("")"), "");
  EXPECT_EQ(*UnescapeString(R"("*")"), "*");
}

TEST(Lexer, RejectsInvalidEscapes) {
  for (const char* bad :
       {R"("\q")", R"("\x80")", R"("\x4")", R"("\u{}")", R"("\u{D800}")", R"("\u{110000}")",
        R"("\u{1234567}")", R"("\u1234")", R"("\u{12")", R"("\*")"}) {
    auto s = UnescapeString(bad);
    EXPECT_FALSE(s.ok()) << bad;
    if (!s.ok()) {
      EXPECT_NE(s.error().message.find("invalid escape"), std::string::npos) << bad;
    }
  }
  EXPECT_EQ(UnescapeString(R"("\q")").error().message, "invalid escape '\\q'");
}

TEST(Lexer, UnescapesPatternsIntoSegments) {
  auto p = UnescapePattern(R"("a*b\*c**\n")");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->segments, (std::vector<std::string>{"a", "b*c", "", "\n"}));
  EXPECT_EQ(UnescapePattern(R"("abc")")->segments, (std::vector<std::string>{"abc"}));
  EXPECT_EQ(UnescapePattern(R"("*")")->segments, (std::vector<std::string>{"", ""}));
  EXPECT_FALSE(UnescapePattern(R"("\q")").ok());
}

// Found by differential testing (tests/differential): the reference unescapes a pattern and
// then treats every star as a wildcard, so `"a" like "\u{2a}"` is true; only `\*` is literal.
TEST(Lexer, EscapedStarsInPatternsAreWildcards) {
  EXPECT_EQ(UnescapePattern(R"("a\x2ab")")->segments, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(UnescapePattern(R"("a\u{2a}b")")->segments, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(UnescapePattern(R"("a\u{00002A}\*")")->segments, (std::vector<std::string>{"a", "*"}));
  // In a plain string an escaped star is just a star.
  EXPECT_EQ(*UnescapeString(R"("\x2a\u{2a}")"), "**");
}

TEST(Lexer, DescribesTokensForErrors) {
  auto tokens = Tokenize("when \"a very long string literal indeed\"", "t.cedar");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ(DescribeToken((*tokens)[0]), "'when'");
  EXPECT_EQ(DescribeToken((*tokens)[1]), "'\"a very long string lite...'");
  EXPECT_EQ(DescribeToken((*tokens)[2]), "end of file");
}

}  // namespace
}  // namespace mandate::policy
