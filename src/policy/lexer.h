// The Cedar lexer: source text -> tokens with 1-based line and column (columns count Unicode
// characters). Comments (`// ...` to end of line) and whitespace (ASCII, and the Unicode
// White_Space characters U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
// U+205F and U+3000, as the reference) are skipped. String bodies are kept raw; the parser
// unescapes them as a string or as a `like` pattern.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/result.h"
#include "policy/ast.h"

namespace mandate::policy {

enum class TokenKind : uint8_t {
  kIdent,   // [_a-zA-Z][_a-zA-Z0-9]*, keywords included
  kString,  // "..."; text includes the quotes
  kInt,     // [0-9]+; number holds the value
  kSlot,    // ?principal, ?resource, ?other (template slots; rejected by the parser)
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kLBrace,
  kRBrace,
  kComma,
  kSemi,
  kDot,
  kColon,
  kColonColon,
  kAt,
  kEqEq,
  kNotEq,
  kLt,
  kLe,
  kGt,
  kGe,
  kAndAnd,
  kOrOr,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kBang,
  kAssign,
  kEnd,
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string_view text;  // the token's source bytes (empty for kEnd)
  uint32_t line = 0;
  uint32_t column = 0;
  uint64_t number = 0;  // kInt only
};

// Tokenizes `source`; the last token is always kEnd. Errors (kBadRequest), prefixed with
// "<display_name>:<line>:<column>: ": invalid UTF-8, an unexpected character, an
// unterminated string, an integer literal above 2^64-1, a lone '&' or '|'.
core::Result<std::vector<Token>> Tokenize(std::string_view source, std::string_view display_name);

// Unescapes a string token's text (with its quotes). Supported escapes: \n \r \t \\ \0 \' \"
// \xHH (at most 7f) and \u{H...} (1 to 6 hex digits, a Unicode scalar value). Error
// (kBadRequest, message without location): any other escape.
core::Result<std::string> UnescapeString(std::string_view token_text);

// As UnescapeString, and every `*` is a wildcard, also when written as an escape (`\x2a`,
// `\u{2a}`), as in the Cedar reference; only `\*` is a literal star.
core::Result<Pattern> UnescapePattern(std::string_view token_text);

// How a token is named in "found ..." of parse errors: 'when', '"abc"', end of file.
std::string DescribeToken(const Token& t);

// Whether `s` may be written bare as an attribute name (`e.name`, `e has name`) or as a
// component of a type name: an identifier that is not one of Cedar's reserved words (true,
// false, if, then, else, in, has, like, is) nor `__cedar`. Otherwise it must be quoted
// (`e["name"]`, `e has "name"`) and cannot name a type.
bool IsBareName(std::string_view s);

}  // namespace mandate::policy
