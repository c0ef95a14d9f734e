#include "audit/internal/canonical.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <system_error>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mandate/core/json.h"

namespace mandate::audit::internal {
namespace {

static_assert(core::kJsonDepthMax >= 2, "the record's own members sit at depth 2");

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighBits = 0x8080808080808080ull;

// For 8 bytes loaded little-endian: the high bit of each byte that ends a run of plain string
// bytes ('"', '\\' or a control byte below 0x20). Borrows in the subtractions can only flag
// bytes *above* a real match, so the lowest set bit is always exact, which is all the caller
// uses.
inline uint64_t StringStopBits(uint64_t w) {
  const uint64_t quote = w ^ (kOnes * '"');
  const uint64_t backslash = w ^ (kOnes * '\\');
  const uint64_t is_quote = (quote - kOnes) & ~quote;
  const uint64_t is_backslash = (backslash - kOnes) & ~backslash;
  const uint64_t is_control = (w - kOnes * 0x20) & ~w;
  return (is_quote | is_backslash | is_control) & kHighBits;
}

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

inline int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase is not what the writer emits
}

// The text core::Json writes for the double `d` (AppendNumber in src/core/json.cc; the
// differential test fails if the two drift apart). Returns its length in `buf`.
size_t WriteCanonicalDouble(double d, char (&buf)[64]) {
  if (!std::isfinite(d)) {
    std::memcpy(buf, "null", 4);
    return 4;
  }
  constexpr double kTwoPow53 = 9007199254740992.0;
  std::to_chars_result res;
  if (std::floor(d) == d && std::fabs(d) < kTwoPow53) {
    res = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(d));
  } else if (std::fabs(d) >= kTwoPow53) {
    res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  } else {
    res = std::to_chars(buf, buf + sizeof(buf), d);
  }
  return static_cast<size_t>(res.ptr - buf);
}

// Yields the bytes of a string's value from its canonical escaped text (already checked).
class EscapedBytes {
 public:
  explicit EscapedBytes(std::string_view raw) : p_(raw.data()), end_(raw.data() + raw.size()) {}
  bool Next(unsigned char* out) {
    if (p_ == end_) return false;
    if (*p_ != '\\') {
      *out = static_cast<unsigned char>(*p_++);
      return true;
    }
    switch (p_[1]) {
      case 'b':
        *out = '\b';
        break;
      case 'f':
        *out = '\f';
        break;
      case 'n':
        *out = '\n';
        break;
      case 'r':
        *out = '\r';
        break;
      case 't':
        *out = '\t';
        break;
      case 'u':
        *out = static_cast<unsigned char>(LowerHexValue(p_[4]) * 16 + LowerHexValue(p_[5]));
        p_ += 6;
        return true;
      default:  // '"' or '\\'
        *out = static_cast<unsigned char>(p_[1]);
        break;
    }
    p_ += 2;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

struct StringToken {
  std::string_view raw;  // between the quotes, as written
  bool escaped = false;  // contains a backslash
};

// Whether the value of `a` sorts strictly before the value of `b`, byte-wise (as
// std::string::operator< does in core::Json's canonical writer).
bool KeyLess(const StringToken& a, const StringToken& b) {
  if (!a.escaped && !b.escaped) {
    // Keys are short: a byte loop beats a call to memcmp.
    const size_t n = std::min(a.raw.size(), b.raw.size());
    for (size_t i = 0; i < n; ++i) {
      const auto x = static_cast<unsigned char>(a.raw[i]);
      const auto y = static_cast<unsigned char>(b.raw[i]);
      if (x != y) return x < y;
    }
    return a.raw.size() < b.raw.size();
  }
  EscapedBytes x(a.raw);
  EscapedBytes y(b.raw);
  for (;;) {
    unsigned char cx = 0;
    unsigned char cy = 0;
    const bool has_x = x.Next(&cx);
    const bool has_y = y.Next(&cy);
    if (!has_y) return false;  // b is a prefix of a, or they are equal
    if (!has_x) return true;   // a is a proper prefix of b
    if (cx != cy) return cx < cy;
  }
}

class Scanner {
 public:
  explicit Scanner(std::string_view line)
      : begin_(line.data()), p_(line.data()), end_(line.data() + line.size()) {}

  CanonicalScan Run(size_t max_bytes) {
    const std::string_view line(begin_, static_cast<size_t>(end_ - begin_));
    if (max_bytes == 0) max_bytes = core::kJsonBytesMax;  // as core::Json::Parse
    if (line.size() > max_bytes) {
      Fail("line longer than the record size limit");
    } else if (p_ == end_ || *p_ != '{') {
      Fail("line is not a JSON object");
    } else if (Object(1) && p_ != end_) {
      Fail("bytes after the record's closing brace");
    }
    // Outside strings the grammar admits ASCII only and escapes stand for ASCII only, so the
    // line is valid UTF-8 exactly when every string value is. Skipped when no string held a
    // byte >= 0x80 (all-ASCII text is valid UTF-8).
    if (result_.problem.empty() && ((high_ & kHighBits) != 0 || non_ascii_ != 0) &&
        !core::IsValidUtf8(line)) {
      p_ = begin_;
      Fail("invalid UTF-8");
    }
    result_.ok = result_.problem.empty();
    return result_;
  }

 private:
  bool Fail(std::string_view problem) {
    if (result_.problem.empty()) {
      result_.problem = problem;
      result_.offset = static_cast<size_t>(p_ - begin_);
    }
    return false;
  }

  bool At(char c) const { return p_ != end_ && *p_ == c; }

  // depth: that of the value starting at p_ (the root is 1, as in core::Json::Parse).
  bool Value(size_t depth) {
    if (depth > core::kJsonDepthMax) return Fail("JSON nested deeper than kJsonDepthMax");
    if (p_ == end_) return Fail("line ends where a value should start");
    switch (*p_) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"': {
        StringToken ignored;
        return String(&ignored);
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default: {
        bool is_int = false;
        int64_t ignored = 0;
        return Number(&is_int, &ignored);
      }
    }
  }

  bool Literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return Fail("invalid literal");
    }
    p_ += word.size();
    return true;
  }

  // p_ at '{'; depth is the object's own.
  bool Object(size_t depth) {
    const bool top = depth == 1;
    ++p_;
    if (At('}')) {
      ++p_;
      return true;
    }
    StringToken last_key;
    bool first = true;
    for (;;) {
      if (!At('"')) return Fail("expected an object key (no whitespace in canonical form)");
      StringToken key;
      if (!String(&key)) return false;
      // Invariant: keys strictly increase, so a duplicate (which Parse refuses) fails here.
      if (!first && !KeyLess(last_key, key)) {
        p_ = key.raw.data();
        return Fail("object keys out of canonical order or duplicated");
      }
      first = false;
      last_key = key;
      if (!At(':')) return Fail("expected ':' after an object key");
      ++p_;
      const bool extract = top && !key.escaped && IsExtracted(key.raw);
      if (!(extract ? Member(key.raw) : Value(depth + 1))) return false;
      if (At(',')) {
        ++p_;
        continue;
      }
      if (At('}')) {
        ++p_;
        return true;
      }
      return Fail("expected ',' or '}' in an object");
    }
  }

  static bool IsExtracted(std::string_view key) {
    return key == "seq" || key == "ts" || key == "prev";
  }

  // The value of a top-level member the verifier needs (at depth 2, which never exceeds the
  // limit), taken when it has the expected type and otherwise checked like any value.
  bool Member(std::string_view key) {
    if (p_ == end_) return Fail("line ends where a value should start");
    if (key == "prev") {
      if (*p_ != '"') return Value(2);
      StringToken s;
      if (!String(&s)) return false;
      result_.has_prev = true;
      result_.prev = s.raw;
      return true;
    }
    if (*p_ != '-' && !IsDigit(*p_)) return Value(2);
    bool is_int = false;
    int64_t v = 0;
    if (!Number(&is_int, &v)) return false;
    if (is_int) {
      if (key == "seq") {
        result_.has_seq = true;
        result_.seq = v;
      } else {
        result_.has_ts = true;
        result_.ts = v;
      }
    }
    return true;
  }

  // p_ at '['; depth is the array's own.
  bool Array(size_t depth) {
    ++p_;
    if (At(']')) {
      ++p_;
      return true;
    }
    for (;;) {
      if (!Value(depth + 1)) return false;
      if (At(',')) {
        ++p_;
        continue;
      }
      if (At(']')) {
        ++p_;
        return true;
      }
      return Fail("expected ',' or ']' in an array");
    }
  }

  // p_ at the opening quote. Accepts only what core::AppendJsonString writes: raw bytes
  // other than '"', '\\' and controls, the escapes \" \\ \b \f \n \r \t, and \u00xx (lowercase
  // hex) for the other controls. UTF-8 validity is checked once per line (Run).
  bool String(StringToken* out) {
    ++p_;
    const char* start = p_;
    bool escaped = false;
    for (;;) {
      p_ = FindStringStop(p_);
      if (p_ == end_) return Fail("line ends inside a string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out->raw = std::string_view(start, static_cast<size_t>(p_ - start));
        out->escaped = escaped;
        ++p_;
        return true;
      }
      if (c != '\\') return Fail("unescaped control byte in a string");
      escaped = true;
      if (end_ - p_ < 2) return Fail("line ends inside a string escape");
      switch (p_[1]) {
        case '"':
        case '\\':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
          p_ += 2;
          break;
        case 'u': {
          if (end_ - p_ < 6 || p_[2] != '0' || p_[3] != '0' || (p_[4] != '0' && p_[4] != '1')) {
            return Fail("\\u escape of a character that needs none");
          }
          const int low = LowerHexValue(p_[5]);
          if (low < 0) return Fail("\\u escape not in lowercase hex");
          const int v = (p_[4] - '0') * 16 + low;
          if (v == '\b' || v == '\t' || v == '\n' || v == '\f' || v == '\r') {
            return Fail("\\u escape where a short escape is canonical");
          }
          p_ += 6;
          break;
        }
        default:
          return Fail("escape not in canonical form");
      }
    }
  }

  // The first '"', '\\' or control byte at or after p, or end_. Records which bytes went by
  // in high_ (only their high bits matter).
  const char* FindStringStop(const char* p) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i control_max = _mm_set1_epi8(0x1f);
    while (end_ - p >= 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      // Bytes past the stop may count too: at worst an unneeded UTF-8 check.
      non_ascii_ |= static_cast<unsigned>(_mm_movemask_epi8(v));
      const __m128i is_control = _mm_cmpeq_epi8(_mm_min_epu8(v, control_max), v);  // unsigned <=
      const __m128i stop = _mm_or_si128(
          _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), is_control);
      const auto stop_bits = static_cast<unsigned>(_mm_movemask_epi8(stop));
      if (stop_bits != 0) return p + std::countr_zero(stop_bits);
      p += 16;
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
      while (end_ - p >= 8) {
        uint64_t w;
        std::memcpy(&w, p, sizeof(w));
        high_ |= w;  // may include bytes past the stop: at worst an unneeded UTF-8 check
        const uint64_t stop = StringStopBits(w);
        if (stop != 0) return p + (std::countr_zero(stop) >> 3);
        p += 8;
      }
    }
    for (; p != end_; ++p) {
      const unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"' || c == '\\' || c < 0x20) return p;
      high_ |= c;
    }
    return p;
  }

  // A JSON number at p_. Integers (no fraction or exponent) are canonical when they fit
  // int64 and are not "-0" (Parse turns larger ones into doubles, which the writer prints
  // with an exponent); others when they are what the writer prints for their double.
  bool Number(bool* is_int, int64_t* int_value) {
    const char* start = p_;
    const bool negative = At('-');
    if (negative) ++p_;
    // The integer part's value, kept while it has at most 19 digits (every int64 has at most
    // 19, and 19 digits cannot overflow a uint64).
    uint64_t magnitude = 0;
    size_t digit_count = 0;
    if (At('0')) {
      ++p_;
      digit_count = 1;
    } else {
      for (; p_ != end_ && IsDigit(*p_); ++p_, ++digit_count) {
        if (digit_count < 19) magnitude = magnitude * 10 + static_cast<uint64_t>(*p_ - '0');
      }
    }
    if (digit_count == 0) return Fail("invalid value");
    bool fraction_or_exponent = false;
    if (At('.')) {
      fraction_or_exponent = true;
      ++p_;
      const char* frac = p_;
      while (p_ != end_ && IsDigit(*p_)) ++p_;
      if (p_ == frac) return Fail("invalid number");
    }
    if (At('e') || At('E')) {
      fraction_or_exponent = true;
      ++p_;
      if (At('+') || At('-')) ++p_;
      const char* exp = p_;
      while (p_ != end_ && IsDigit(*p_)) ++p_;
      if (p_ == exp) return Fail("invalid number");
    }
    if (!fraction_or_exponent) {
      if (digit_count > 19) return FailAt(start, "integer out of int64 range");
      constexpr uint64_t kInt64Max = static_cast<uint64_t>(INT64_MAX);
      if (negative) {
        if (magnitude == 0) return FailAt(start, "negative zero is not canonical");
        if (magnitude > kInt64Max + 1) return FailAt(start, "integer out of int64 range");
        *int_value = magnitude == kInt64Max + 1 ? INT64_MIN : -static_cast<int64_t>(magnitude);
      } else {
        if (magnitude > kInt64Max) return FailAt(start, "integer out of int64 range");
        *int_value = static_cast<int64_t>(magnitude);
      }
      *is_int = true;
      return true;
    }
    // Rare in records: parse and print again. from_chars and simdjson both round correctly,
    // and a canonical text is shortest round-trip output, so they agree on the double.
    double d = 0;
    const auto parsed = std::from_chars(start, p_, d);
    if (parsed.ec != std::errc() || parsed.ptr != p_) {
      return FailAt(start, "number out of double range");
    }
    char buf[64];
    const size_t len = WriteCanonicalDouble(d, buf);
    if (std::string_view(buf, len) != std::string_view(start, static_cast<size_t>(p_ - start))) {
      return FailAt(start, "number not in canonical form");
    }
    *is_int = false;
    return true;
  }

  bool FailAt(const char* at, std::string_view problem) {
    p_ = at;
    return Fail(problem);
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  uint64_t high_ = 0;       // OR of string bytes seen; bit 7 of any byte set means non-ASCII
  unsigned non_ascii_ = 0;  // OR of the SSE2 loop's high-bit masks
  CanonicalScan result_;
};

}  // namespace

CanonicalScan ScanCanonicalRecord(std::string_view line, size_t max_bytes) {
  return Scanner(line).Run(max_bytes);
}

}  // namespace mandate::audit::internal
