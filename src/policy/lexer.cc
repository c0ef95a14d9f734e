#include "policy/lexer.h"

#include <cstdio>
#include <utility>

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// The length of the non-ASCII Unicode whitespace character (White_Space property, as the
// reference's lexer) starting at s[i], or 0: U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028,
// U+2029, U+202F, U+205F, U+3000.
size_t UnicodeSpaceLength(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  if (at(0) == 0xC2 && (at(1) == 0x85 || at(1) == 0xA0)) return 2;
  if (at(0) == 0xE1 && at(1) == 0x9A && at(2) == 0x80) return 3;
  if (at(0) == 0xE2 && at(1) == 0x80 &&
      ((at(2) >= 0x80 && at(2) <= 0x8A) || at(2) == 0xA8 || at(2) == 0xA9 || at(2) == 0xAF)) {
    return 3;
  }
  if (at(0) == 0xE2 && at(1) == 0x81 && at(2) == 0x9F) return 3;
  if (at(0) == 0xE3 && at(1) == 0x80 && at(2) == 0x80) return 3;
  return 0;
}

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when it is malformed
// (truncated, overlong, a surrogate, or above U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  Lexer(std::string_view src, std::string_view name) : src_(src), name_(name) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> tokens;
    for (;;) {
      SkipSpaceAndComments();
      Token t;
      t.line = line_;
      t.column = column_;
      size_t start = pos_;
      if (pos_ >= src_.size()) {
        t.kind = TokenKind::kEnd;
        tokens.push_back(t);
        return tokens;
      }
      char c = src_[pos_];
      if (IsIdentStart(c)) {
        while (pos_ < src_.size() && IsIdentChar(src_[pos_])) Advance();
        t.kind = TokenKind::kIdent;
      } else if (IsDigit(c)) {
        uint64_t n = 0;
        bool overflow = false;
        while (pos_ < src_.size() && IsDigit(src_[pos_])) {
          uint64_t d = static_cast<uint64_t>(src_[pos_] - '0');
          if (n > (UINT64_MAX - d) / 10) overflow = true;
          n = n * 10 + d;
          Advance();
        }
        if (overflow) {
          return ErrorAt(t, "integer literal " + std::string(src_.substr(start, pos_ - start)) +
                                " is too large");
        }
        t.kind = TokenKind::kInt;
        t.number = n;
      } else if (c == '"') {
        Advance();
        for (;;) {
          if (pos_ >= src_.size()) return ErrorAt(t, "unterminated string literal");
          char s = src_[pos_];
          if (s == '"') {
            Advance();
            break;
          }
          if (s == '\\') {
            Advance();
            if (pos_ >= src_.size()) return ErrorAt(t, "unterminated string literal");
          }
          Advance();
        }
        t.kind = TokenKind::kString;
      } else if (c == '?' && pos_ + 1 < src_.size() && IsIdentStart(src_[pos_ + 1])) {
        Advance();
        while (pos_ < src_.size() && IsIdentChar(src_[pos_])) Advance();
        t.kind = TokenKind::kSlot;
      } else {
        MANDATE_ASSIGN_OR_RETURN(t.kind, Punctuation(t));
      }
      t.text = src_.substr(start, pos_ - start);
      tokens.push_back(t);
    }
  }

 private:
  void Advance() {
    char c = src_[pos_++];
    if (c == '\n') {
      ++line_;
      column_ = 1;
    } else if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++column_;
    }
  }

  bool Next(char c) const { return pos_ + 1 < src_.size() && src_[pos_ + 1] == c; }

  void SkipSpaceAndComments() {
    while (pos_ < src_.size()) {
      char c = src_[pos_];
      if (IsSpace(c)) {
        Advance();
      } else if (size_t n = UnicodeSpaceLength(src_, pos_); n > 0) {
        // One character: Advance counts columns per UTF-8 lead byte.
        for (size_t k = 0; k < n; ++k) Advance();
      } else if (c == '/' && Next('/')) {
        while (pos_ < src_.size() && src_[pos_] != '\n' && src_[pos_] != '\r') Advance();
      } else {
        return;
      }
    }
  }

  Result<TokenKind> Punctuation(const Token& t) {
    char c = src_[pos_];
    auto one = [&](TokenKind k) {
      Advance();
      return k;
    };
    auto two = [&](TokenKind k) {
      Advance();
      Advance();
      return k;
    };
    switch (c) {
      case '(':
        return one(TokenKind::kLParen);
      case ')':
        return one(TokenKind::kRParen);
      case '[':
        return one(TokenKind::kLBracket);
      case ']':
        return one(TokenKind::kRBracket);
      case '{':
        return one(TokenKind::kLBrace);
      case '}':
        return one(TokenKind::kRBrace);
      case ',':
        return one(TokenKind::kComma);
      case ';':
        return one(TokenKind::kSemi);
      case '.':
        return one(TokenKind::kDot);
      case '@':
        return one(TokenKind::kAt);
      case '+':
        return one(TokenKind::kPlus);
      case '-':
        return one(TokenKind::kMinus);
      case '*':
        return one(TokenKind::kStar);
      case '/':
        return one(TokenKind::kSlash);
      case '%':
        return one(TokenKind::kPercent);
      case ':':
        return Next(':') ? two(TokenKind::kColonColon) : one(TokenKind::kColon);
      case '=':
        return Next('=') ? two(TokenKind::kEqEq) : one(TokenKind::kAssign);
      case '!':
        return Next('=') ? two(TokenKind::kNotEq) : one(TokenKind::kBang);
      case '<':
        return Next('=') ? two(TokenKind::kLe) : one(TokenKind::kLt);
      case '>':
        return Next('=') ? two(TokenKind::kGe) : one(TokenKind::kGt);
      case '&':
        if (Next('&')) return two(TokenKind::kAndAnd);
        return ErrorAt(t, "unexpected '&'; did you mean '&&'?");
      case '|':
        if (Next('|')) return two(TokenKind::kOrOr);
        return ErrorAt(t, "unexpected '|'; did you mean '||'?");
      default:
        break;
    }
    size_t n = Utf8SequenceLength(src_, pos_);
    std::string shown(src_.substr(pos_, n == 0 ? 1 : n));
    if (n == 1 && (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      shown = buf;
    }
    return ErrorAt(t, "unexpected character '" + shown + "'");
  }

  core::Error ErrorAt(const Token& t, const std::string& message) const {
    return MakeError(ErrorCode::kBadRequest, std::string(name_) + ":" + std::to_string(t.line) +
                                                 ":" + std::to_string(t.column) + ": " + message);
  }

  std::string_view src_;
  std::string_view name_;
  size_t pos_ = 0;
  uint32_t line_ = 1;
  uint32_t column_ = 1;
};

// Validates UTF-8 up front so that every later step (columns, unescaping, `like`) may assume it.
core::Status CheckUtf8(std::string_view src, std::string_view name) {
  uint32_t line = 1;
  uint32_t column = 1;
  for (size_t i = 0; i < src.size();) {
    size_t n = Utf8SequenceLength(src, i);
    if (n == 0) {
      return MakeError(ErrorCode::kBadRequest, std::string(name) + ":" + std::to_string(line) +
                                                   ":" + std::to_string(column) +
                                                   ": invalid UTF-8");
    }
    if (src[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += n;
  }
  return core::OkStatus();
}

// Shared by UnescapeString and UnescapePattern: appends the unescaped body to the last
// segment of `segments`, opening a new segment at each `*` when `pattern`: a star written
// `*`, `\x2a` or `\u{2a}` is a wildcard (as in the reference, which unescapes first and then
// treats every star as a wildcard); only `\*` is a literal star.
core::Status Unescape(std::string_view token_text, bool pattern,
                      std::vector<std::string>* segments) {
  std::string_view body = token_text.substr(1, token_text.size() - 2);
  segments->emplace_back();
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    std::string* out = &segments->back();
    if (c == '*' && pattern) {
      segments->emplace_back();
      continue;
    }
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    // Invariant (lexer): a backslash is never the last byte of a string body.
    char e = body[++i];
    switch (e) {
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case '0':
        out->push_back('\0');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '\'':
        out->push_back('\'');
        break;
      case '"':
        out->push_back('"');
        break;
      case '*':
        if (!pattern) {
          return MakeError(ErrorCode::kBadRequest,
                           "invalid escape '\\*' in a string (it is only valid in a 'like' "
                           "pattern)");
        }
        out->push_back('*');
        break;
      case 'x': {
        int hi = i + 1 < body.size() ? HexDigit(body[i + 1]) : -1;
        int lo = i + 2 < body.size() ? HexDigit(body[i + 2]) : -1;
        if (hi < 0 || lo < 0 || hi > 7) {
          return MakeError(ErrorCode::kBadRequest,
                           "invalid escape '\\x': expected two hex digits, at most 7f");
        }
        const char unescaped = static_cast<char>(hi * 16 + lo);
        // As the reference: a star written as an escape is still a wildcard; only `\*` is not.
        if (unescaped == '*' && pattern) {
          segments->emplace_back();
        } else {
          out->push_back(unescaped);
        }
        i += 2;
        break;
      }
      case 'u': {
        if (i + 1 >= body.size() || body[i + 1] != '{') {
          return MakeError(ErrorCode::kBadRequest, "invalid escape '\\u': expected '\\u{...}'");
        }
        size_t k = i + 2;
        uint32_t cp = 0;
        size_t digits = 0;
        while (k < body.size() && HexDigit(body[k]) >= 0 && digits < 7) {
          cp = cp * 16 + static_cast<uint32_t>(HexDigit(body[k]));
          ++digits;
          ++k;
        }
        if (k >= body.size() || body[k] != '}' || digits == 0 || digits > 6 || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
          return MakeError(ErrorCode::kBadRequest,
                           "invalid escape '\\u{...}': expected 1 to 6 hex digits naming a "
                           "Unicode scalar value");
        }
        if (cp == '*' && pattern) {
          segments->emplace_back();  // a wildcard, as for \x2a above
        } else {
          AppendUtf8(cp, out);
        }
        i = k;
        break;
      }
      default: {
        size_t n = Utf8SequenceLength(body, i);
        return MakeError(ErrorCode::kBadRequest,
                         "invalid escape '\\" + std::string(body.substr(i, n == 0 ? 1 : n)) + "'");
      }
    }
  }
  return core::OkStatus();
}

}  // namespace

Result<std::vector<Token>> Tokenize(std::string_view source, std::string_view display_name) {
  MANDATE_RETURN_IF_ERROR(CheckUtf8(source, display_name));
  return Lexer(source, display_name).Run();
}

Result<std::string> UnescapeString(std::string_view token_text) {
  std::vector<std::string> segments;
  MANDATE_RETURN_IF_ERROR(Unescape(token_text, /*pattern=*/false, &segments));
  return std::move(segments.front());
}

Result<Pattern> UnescapePattern(std::string_view token_text) {
  Pattern p;
  MANDATE_RETURN_IF_ERROR(Unescape(token_text, /*pattern=*/true, &p.segments));
  return p;
}

std::string DescribeToken(const Token& t) {
  if (t.kind == TokenKind::kEnd) return "end of file";
  constexpr size_t kShownMax = 24;
  if (t.text.size() > kShownMax) {
    size_t cut = kShownMax;
    // Never cut a character in two.
    while (cut > 0 && (static_cast<unsigned char>(t.text[cut]) & 0xC0) == 0x80) --cut;
    return "'" + std::string(t.text.substr(0, cut)) + "...'";
  }
  return "'" + std::string(t.text) + "'";
}

bool IsBareName(std::string_view s) {
  if (s.empty() || !IsIdentStart(s[0])) return false;
  for (char c : s) {
    if (!IsIdentChar(c)) return false;
  }
  for (std::string_view reserved : {"true", "false", "if", "then", "else", "in", "has", "like", "is", "__cedar"}) {
    if (s == reserved) return false;
  }
  return true;
}

}  // namespace mandate::policy
