#include "policy/extensions.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "mandate/core/clock.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;

constexpr ExtensionFunctionInfo kFunctions[] = {
    {ExtensionFunction::kIp, "ip", 1, false},
    {ExtensionFunction::kDecimal, "decimal", 1, false},
    {ExtensionFunction::kDatetime, "datetime", 1, false},
    {ExtensionFunction::kDuration, "duration", 1, false},
    {ExtensionFunction::kIsIpv4, "isIpv4", 1, true},
    {ExtensionFunction::kIsIpv6, "isIpv6", 1, true},
    {ExtensionFunction::kIsLoopback, "isLoopback", 1, true},
    {ExtensionFunction::kIsMulticast, "isMulticast", 1, true},
    {ExtensionFunction::kIsInRange, "isInRange", 2, true},
    {ExtensionFunction::kLessThan, "lessThan", 2, true},
    {ExtensionFunction::kLessThanOrEqual, "lessThanOrEqual", 2, true},
    {ExtensionFunction::kGreaterThan, "greaterThan", 2, true},
    {ExtensionFunction::kGreaterThanOrEqual, "greaterThanOrEqual", 2, true},
    {ExtensionFunction::kOffset, "offset", 2, true},
    {ExtensionFunction::kDurationSince, "durationSince", 2, true},
    {ExtensionFunction::kToDate, "toDate", 1, true},
    {ExtensionFunction::kToTime, "toTime", 1, true},
    {ExtensionFunction::kToDays, "toDays", 1, true},
    {ExtensionFunction::kToHours, "toHours", 1, true},
    {ExtensionFunction::kToMinutes, "toMinutes", 1, true},
    {ExtensionFunction::kToSeconds, "toSeconds", 1, true},
    {ExtensionFunction::kToMilliseconds, "toMilliseconds", 1, true},
};
// Invariant: kFunctions[i].function == ExtensionFunction(i), so InfoOf is an index.
static_assert(std::size(kFunctions) == static_cast<size_t>(ExtensionFunction::kToMilliseconds) + 1);
static_assert(std::all_of(std::begin(kFunctions), std::end(kFunctions), [](const auto& f) {
  return f.arity >= 1 && f.arity <= kExtensionArityMax;
}));

constexpr int64_t kDayMillis = 24 * 3600 * 1000;
constexpr int64_t kDecimalScale = 10000;  // 4 fractional digits
constexpr size_t kDecimalDigitsMax = 4;
// The longest ip() argument the reference accepts:
// len("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128").
constexpr size_t kIpStringBytesMax = 43;

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

core::Error Failed(std::string_view constructor, const std::string& message) {
  return MakeError(ErrorCode::kBadRequest, "error while evaluating `" + std::string(constructor) +
                                               "` extension function: " + message);
}

// ---- ipaddr ------------------------------------------------------------------------------------

// Rust's Ipv4Addr parser: four decimal octets of 1-3 digits, no leading zero ("0" is fine).
bool ParseIpv4(std::string_view s, uint32_t* out) {
  uint32_t addr = 0;
  size_t pos = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (pos >= s.size() || s[pos] != '.') return false;
      ++pos;
    }
    size_t start = pos;
    uint32_t value = 0;
    while (pos < s.size() && IsAsciiDigit(s[pos]) && pos - start < 4) {
      value = value * 10 + static_cast<uint32_t>(s[pos] - '0');
      ++pos;
    }
    size_t digits = pos - start;
    if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && s[start] == '0')) return false;
    addr = (addr << 8) | value;
  }
  if (pos != s.size()) return false;
  *out = addr;
  return true;
}

// Rust's Ipv6Addr parser (less the embedded IPv4 form, which the reference refuses before
// parsing): up to 8 groups of 1-4 hex digits; one "::" stands for one or more zero groups.
bool ParseIpv6(std::string_view s, uint16_t groups[8]) {
  size_t pos = 0;
  // Reads up to `limit` ':'-separated groups into `out`; a group that does not parse is left
  // unread along with its separator, as the reference's atomic reads do.
  auto read_groups = [&](uint16_t* out, size_t limit) {
    for (size_t i = 0; i < limit; ++i) {
      size_t p = pos;
      if (i > 0) {
        if (p >= s.size() || s[p] != ':') return i;
        ++p;
      }
      size_t start = p;
      uint32_t value = 0;
      while (p < s.size() && HexValue(s[p]) >= 0 && p - start < 5) {
        value = (value << 4) | static_cast<uint32_t>(HexValue(s[p]));
        ++p;
      }
      size_t digits = p - start;
      if (digits == 0 || digits > 4) return i;
      out[i] = static_cast<uint16_t>(value);
      pos = p;
    }
    return limit;
  };
  std::fill(groups, groups + 8, uint16_t{0});
  size_t head = read_groups(groups, 8);
  if (head == 8) return pos == s.size();
  if (pos + 2 > s.size() || s[pos] != ':' || s[pos + 1] != ':') return false;
  pos += 2;
  uint16_t tail[7] = {};
  size_t tail_size = read_groups(tail, 7 - head);
  std::copy(tail, tail + tail_size, groups + (8 - tail_size));
  return pos == s.size();
}

// std::net::IpAddr::from_str: IPv4, else IPv6.
bool ParseAddress(std::string_view s, ExtensionValue* out) {
  uint32_t v4;
  if (ParseIpv4(s, &v4)) {
    out->ip_v6 = false;
    out->ip_high = 0;
    out->ip_low = v4;
    return true;
  }
  uint16_t g[8];
  if (!ParseIpv6(s, g)) return false;
  out->ip_v6 = true;
  out->ip_high = 0;
  out->ip_low = 0;
  for (int i = 0; i < 4; ++i) out->ip_high = (out->ip_high << 16) | g[i];
  for (int i = 4; i < 8; ++i) out->ip_low = (out->ip_low << 16) | g[i];
  return true;
}

bool HasTwo(std::string_view s, char c) {
  size_t first = s.find(c);
  return first != std::string_view::npos && s.find(c, first + 1) != std::string_view::npos;
}

// The 128-bit address as (high, low); an IPv4 address in the low 32 bits.
struct U128 {
  uint64_t high;
  uint64_t low;
  bool operator<=(const U128& o) const { return high != o.high ? high < o.high : low <= o.low; }
};

// The network mask of a prefix of `prefix` bits in an address of `bits` bits (32 or 128).
U128 NetMask(uint8_t prefix, int bits) {
  if (bits == 32) {
    return {0, prefix == 0 ? 0 : (uint64_t{0xFFFFFFFF} << (32 - prefix)) & 0xFFFFFFFF};
  }
  if (prefix == 0) return {0, 0};
  if (prefix <= 64) return {~uint64_t{0} << (64 - prefix), 0};
  return {~uint64_t{0}, ~uint64_t{0} << (128 - prefix)};
}

bool IsInRange(const ExtensionValue& child, const ExtensionValue& parent) {
  if (child.ip_v6 != parent.ip_v6) return false;
  const int bits = child.ip_v6 ? 128 : 32;
  const U128 all = bits == 32 ? U128{0, 0xFFFFFFFF} : U128{~uint64_t{0}, ~uint64_t{0}};
  auto network = [&](const ExtensionValue& v) {
    U128 m = NetMask(v.ip_prefix, bits);
    return U128{v.ip_high & m.high, v.ip_low & m.low};
  };
  auto broadcast = [&](const ExtensionValue& v) {
    U128 m = NetMask(v.ip_prefix, bits);
    return U128{(v.ip_high | ~m.high) & all.high, (v.ip_low | ~m.low) & all.low};
  };
  return network(parent) <= network(child) && broadcast(child) <= broadcast(parent);
}

bool IsLoopback(const ExtensionValue& v) {
  if (!v.ip_v6) return (v.ip_low >> 24) == 127 && v.ip_prefix >= 8;
  return v.ip_high == 0 && v.ip_low == 1 && v.ip_prefix >= 128;
}

bool IsMulticast(const ExtensionValue& v) {
  if (!v.ip_v6) {
    uint64_t first = v.ip_low >> 24;
    return first >= 224 && first <= 239 && v.ip_prefix >= 4;
  }
  return (v.ip_high >> 56) == 0xFF && v.ip_prefix >= 8;
}

std::string FormatIp(const ExtensionValue& v) {
  std::string out;
  char buf[8];
  if (!v.ip_v6) {
    for (int i = 3; i >= 0; --i) {
      out.append(std::to_string((v.ip_low >> (8 * i)) & 0xFF));
      if (i > 0) out.push_back('.');
    }
  } else {
    // Full form, every group written: simple, and parsed back to the same address.
    for (int i = 0; i < 8; ++i) {
      uint64_t half = i < 4 ? v.ip_high : v.ip_low;
      unsigned group = static_cast<unsigned>((half >> (16 * (3 - i % 4))) & 0xFFFF);
      std::snprintf(buf, sizeof(buf), "%x", group);
      if (i > 0) out.push_back(':');
      out.append(buf);
    }
  }
  out.push_back('/');
  out.append(std::to_string(v.ip_prefix));
  return out;
}

// ---- datetime ----------------------------------------------------------------------------------

bool IsLeapYear(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}


void CivilFromDays(int64_t z, int64_t* y, int* m, int* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

// Reads `n` ASCII digits at s[pos]; false when they are not there.
bool Digits(std::string_view s, size_t pos, size_t n, int64_t* out) {
  if (pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!IsAsciiDigit(s[i])) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t RemEuclid(int64_t a, int64_t b) {
  int64_t r = a % b;
  return r < 0 ? r + b : r;
}

std::optional<std::string> FormatDatetime(int64_t epoch_millis) {
  // No multiplication back: days * kDayMillis overflows near INT64_MIN.
  const int64_t days = FloorDiv(epoch_millis, kDayMillis);
  const int64_t ms_of_day = RemEuclid(epoch_millis, kDayMillis);
  int64_t y;
  int m;
  int d;
  CivilFromDays(days, &y, &m, &d);
  if (y < 0 || y > 9999) return std::nullopt;
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", static_cast<int>(y), m, d,
                static_cast<int>(ms_of_day / 3600000), static_cast<int>(ms_of_day / 60000 % 60),
                static_cast<int>(ms_of_day / 1000 % 60), static_cast<int>(ms_of_day % 1000));
  return std::string(buf);
}

// ---- Calls -------------------------------------------------------------------------------------

core::Error ExtensionTypeError(ExtensionType expected, const Value& got) {
  std::string message = "type error: expected " + std::string(ExtensionTypeName(expected)) +
                        ", got " + std::string(TypeName(got));
  if (got.is_string()) {
    message += " (maybe you forgot to apply the `" + std::string(ConstructorName(expected)) +
               "` constructor?)";
  }
  return MakeError(ErrorCode::kBadRequest, message);
}

Result<const ExtensionValue*> As(const Value& v, ExtensionType type) {
  if (!v.is_extension(type)) return ExtensionTypeError(type, v);
  return &v.as_extension();
}

Result<const std::string*> AsString(const Value& v) {
  if (!v.is_string()) {
    return MakeError(ErrorCode::kBadRequest,
                     "type error: expected string, got " + std::string(TypeName(v)));
  }
  return &v.as_string();
}

ExtensionValue Datetime(int64_t ms) {
  ExtensionValue e;
  e.type = ExtensionType::kDatetime;
  e.number = ms;
  return e;
}

ExtensionValue Duration(int64_t ms) {
  ExtensionValue e;
  e.type = ExtensionType::kDuration;
  e.number = ms;
  return e;
}

core::Error Overflow(std::string_view function, const std::string& what) {
  return Failed(function, "overflows when " + what);
}

}  // namespace

const ExtensionFunctionInfo* FindExtensionFunction(std::string_view name) {
  for (const ExtensionFunctionInfo& f : kFunctions) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const ExtensionFunctionInfo& InfoOf(ExtensionFunction function) {
  return kFunctions[static_cast<size_t>(function)];
}

std::string_view ConstructorName(ExtensionType type) {
  switch (type) {
    case ExtensionType::kIpAddr:
      return "ip";
    case ExtensionType::kDecimal:
      return "decimal";
    case ExtensionType::kDatetime:
      return "datetime";
    case ExtensionType::kDuration:
      return "duration";
  }
  return "?";
}

Result<ExtensionValue> ParseIp(std::string_view s) {
  if (s.size() > kIpStringBytesMax) {
    return Failed("ipaddr", "error parsing IP address from string `" + std::string(s) +
                                "`: string length is too large");
  }
  if (HasTwo(s, ':') && HasTwo(s, '.')) {
    return Failed("ipaddr",
                  "error parsing IP address from string: We do not accept IPv4 embedded in IPv6 "
                  "(e.g., ::ffff:127.0.0.1). Found: `" +
                      std::string(s) + "`");
  }
  ExtensionValue v;
  v.type = ExtensionType::kIpAddr;
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) {
    if (!ParseAddress(s, &v)) return Failed("ipaddr", "invalid IP address: " + std::string(s));
    v.ip_prefix = v.ip_v6 ? 128 : 32;
    return v;
  }
  std::string_view addr = s.substr(0, slash);
  std::string_view prefix = s.substr(slash + 1);
  if (!ParseAddress(addr, &v)) {
    return Failed("ipaddr", "error parsing IP address from the string `" + std::string(addr) + "`");
  }
  const size_t max = v.ip_v6 ? 128 : 32;
  const size_t max_len = v.ip_v6 ? 3 : 2;
  if (prefix.size() > max_len) {
    return Failed("ipaddr", "error parsing prefix: string length " + std::to_string(prefix.size()) +
                                " is too large");
  }
  if (!std::all_of(prefix.begin(), prefix.end(), IsAsciiDigit)) {
    return Failed("ipaddr",
                  "error parsing prefix `" + std::string(prefix) + "`: encountered non-digit");
  }
  if (prefix.size() > 1 && prefix[0] == '0') {
    return Failed("ipaddr", "error parsing prefix `" + std::string(prefix) + "`: leading zero(s)");
  }
  if (prefix.empty()) {
    return Failed("ipaddr",
                  "error parsing prefix from the string ``: cannot parse integer from "
                  "empty string");
  }
  size_t n = 0;
  for (char c : prefix) n = n * 10 + static_cast<size_t>(c - '0');
  if (n > max) {
    return Failed("ipaddr", "error parsing prefix: " + std::to_string(n) +
                                " is larger than the limit " + std::to_string(max));
  }
  v.ip_prefix = static_cast<uint8_t>(n);
  return v;
}

Result<ExtensionValue> ParseDecimal(std::string_view s) {
  auto malformed = [&] {
    return Failed("decimal", "`" + std::string(s) + "` is not a well-formed decimal value");
  };
  size_t pos = 0;
  const bool negative = !s.empty() && s[0] == '-';
  if (negative) ++pos;
  size_t int_start = pos;
  while (pos < s.size() && IsAsciiDigit(s[pos])) ++pos;
  size_t int_end = pos;
  if (int_end == int_start || pos >= s.size() || s[pos] != '.') return malformed();
  ++pos;
  size_t frac_start = pos;
  while (pos < s.size() && IsAsciiDigit(s[pos])) ++pos;
  if (pos == frac_start || pos != s.size()) return malformed();
  const size_t frac_digits = s.size() - frac_start;
  if (frac_digits > kDecimalDigitsMax) {
    return Failed("decimal", "too many digits after the decimal in `" + std::string(s) + "`");
  }
  // The magnitude, at most 2^63 (the magnitude of the smallest value).
  constexpr uint64_t kMagnitudeMax = uint64_t{1} << 63;
  uint64_t magnitude = 0;
  auto overflow = [] { return Failed("decimal", "overflow when converting to decimal"); };
  for (size_t i = int_start; i < int_end; ++i) {
    if (__builtin_mul_overflow(magnitude, uint64_t{10}, &magnitude) ||
        __builtin_add_overflow(magnitude, static_cast<uint64_t>(s[i] - '0'), &magnitude) ||
        magnitude > kMagnitudeMax) {
      return overflow();
    }
  }
  uint64_t fraction = 0;
  for (size_t i = frac_start; i < s.size(); ++i) fraction = fraction * 10 + (s[i] - '0');
  for (size_t i = frac_digits; i < kDecimalDigitsMax; ++i) fraction *= 10;
  if (__builtin_mul_overflow(magnitude, static_cast<uint64_t>(kDecimalScale), &magnitude) ||
      __builtin_add_overflow(magnitude, fraction, &magnitude) ||
      magnitude > (negative ? kMagnitudeMax : kMagnitudeMax - 1)) {
    return overflow();
  }
  ExtensionValue v;
  v.type = ExtensionType::kDecimal;
  v.number = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
  return v;
}

Result<ExtensionValue> ParseDatetime(std::string_view s) {
  auto failed = [](const std::string& why) { return Failed("datetime", why); };
  int64_t year, month, day;
  if (!Digits(s, 0, 4, &year) || s.size() < 10 || s[4] != '-' || !Digits(s, 5, 2, &month) ||
      s[7] != '-' || !Digits(s, 8, 2, &day)) {
    return failed("invalid date pattern");
  }
  auto valid_date = [&] {
    return month >= 1 && month <= 12 && day >= 1 &&
           day <= DaysInMonth(year, static_cast<int>(month));
  };
  std::string date_str(s.substr(0, 10));
  if (s.size() == 10) {
    if (!valid_date()) return failed("invalid date: " + date_str);
    return Datetime(core::DaysFromCivil(year, month, day) * kDayMillis);
  }
  int64_t h, m, sec;
  if (s[10] != 'T' || !Digits(s, 11, 2, &h) || s.size() < 19 || s[13] != ':' ||
      !Digits(s, 14, 2, &m) || s[16] != ':' || !Digits(s, 17, 2, &sec)) {
    return failed("invalid hour/minute/second pattern");
  }
  // (\.[0-9]{3})?(Z|(\+|-)[0-9]{2}[0-9]{2})$
  std::string_view rest = s.substr(19);
  int64_t millis = 0;
  if (!rest.empty() && rest[0] == '.') {
    if (!Digits(rest, 1, 3, &millis)) return failed("invalid millisecond and/or offset pattern");
    rest.remove_prefix(4);
  }
  int64_t offset_sign = 0, offset_h = 0, offset_m = 0;
  if (rest == "Z") {
    offset_sign = 0;
  } else if (rest.size() == 5 && (rest[0] == '+' || rest[0] == '-') &&
             Digits(rest, 1, 2, &offset_h) && Digits(rest, 3, 2, &offset_m)) {
    offset_sign = rest[0] == '+' ? 1 : -1;
  } else {
    return failed("invalid millisecond and/or offset pattern");
  }
  if (!valid_date()) return failed("invalid date: " + date_str);
  if (h >= 24 || m >= 60 || sec >= 60) {
    return failed("invalid hour/minute/second: " + std::string(s.substr(11, 8)));
  }
  if (offset_h >= 24 || offset_m >= 60) {
    return failed("invalid offset range: " + std::to_string(offset_h) + std::to_string(offset_m));
  }
  // Years 0000-9999 and offsets below a day keep this far inside 64 bits.
  int64_t ms = core::DaysFromCivil(year, month, day) * kDayMillis + h * 3600000 + m * 60000 + sec * 1000 +
               millis - offset_sign * (offset_h * 3600 + offset_m * 60) * 1000;
  return Datetime(ms);
}

Result<ExtensionValue> ParseDuration(std::string_view s) {
  auto invalid = [] { return Failed("duration", "invalid duration pattern"); };
  auto overflow = [] { return Failed("duration", "Duration overflows internal representation"); };
  if (s.empty() || s == "-") return invalid();
  const bool negative = s[0] == '-';
  size_t pos = negative ? 1 : 0;
  // Units in the only order allowed: d, h, m, s, ms; each at most once.
  static constexpr int64_t kUnitMillis[] = {kDayMillis, 3600000, 60000, 1000, 1};
  uint64_t amounts[5] = {};  // an absent unit counts 0, as in the reference
  bool amount_overflow[5] = {};
  int last_unit = -1;
  while (pos < s.size()) {
    size_t start = pos;
    uint64_t amount = 0;
    bool too_big = false;
    while (pos < s.size() && IsAsciiDigit(s[pos])) {
      if (__builtin_mul_overflow(amount, uint64_t{10}, &amount) ||
          __builtin_add_overflow(amount, static_cast<uint64_t>(s[pos] - '0'), &amount)) {
        too_big = true;
      }
      ++pos;
    }
    if (pos == start || pos >= s.size()) return invalid();
    int unit;
    switch (s[pos]) {
      case 'd':
        unit = 0;
        break;
      case 'h':
        unit = 1;
        break;
      case 'm':
        unit = pos + 1 < s.size() && s[pos + 1] == 's' ? 4 : 2;
        break;
      case 's':
        unit = 3;
        break;
      default:
        return invalid();
    }
    pos += unit == 4 ? 2 : 1;
    if (unit <= last_unit) return invalid();
    last_unit = unit;
    amounts[unit] = amount;
    amount_overflow[unit] = too_big;
  }
  // As the reference: the milliseconds first, then s, m, h, d, each step checked.
  for (bool o : amount_overflow) {
    if (o) return overflow();
  }
  int64_t total;
  uint64_t ms = amounts[4];
  if (negative) {
    if (ms > (uint64_t{1} << 63)) return overflow();
    total = static_cast<int64_t>(0 - ms);
  } else {
    if (ms > static_cast<uint64_t>(INT64_MAX)) return overflow();
    total = static_cast<int64_t>(ms);
  }
  for (int unit = 3; unit >= 0; --unit) {
    uint64_t amount = amounts[unit];
    if (amount > static_cast<uint64_t>(INT64_MAX)) return overflow();
    int64_t term;
    if (__builtin_mul_overflow(static_cast<int64_t>(amount), kUnitMillis[unit], &term)) {
      return overflow();
    }
    if (negative ? __builtin_sub_overflow(total, term, &total)
                 : __builtin_add_overflow(total, term, &total)) {
      return overflow();
    }
  }
  return Duration(total);
}

std::optional<std::string> ConstructorArgument(const ExtensionValue& v) {
  switch (v.type) {
    case ExtensionType::kIpAddr:
      return FormatIp(v);
    case ExtensionType::kDecimal: {
      uint64_t magnitude =
          v.number < 0 ? 0 - static_cast<uint64_t>(v.number) : static_cast<uint64_t>(v.number);
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%s%llu.%04llu", v.number < 0 ? "-" : "",
                    static_cast<unsigned long long>(magnitude / kDecimalScale),
                    static_cast<unsigned long long>(magnitude % kDecimalScale));
      return std::string(buf);
    }
    case ExtensionType::kDatetime:
      return FormatDatetime(v.number);
    case ExtensionType::kDuration:
      return std::to_string(v.number) + "ms";
  }
  return std::nullopt;
}

core::Error WrongArgumentCount(ExtensionFunction function, size_t got) {
  const ExtensionFunctionInfo& info = InfoOf(function);
  return MakeError(ErrorCode::kBadRequest,
                   "wrong number of arguments provided to extension function `" +
                       std::string(info.name) + "`: expected " + std::to_string(info.arity) +
                       ", got " + std::to_string(got));
}

Result<Value> CallExtensionFunction(ExtensionFunction function,
                                    std::span<const Value* const> args) {
  if (args.size() != InfoOf(function).arity) return WrongArgumentCount(function, args.size());
  const Value& a = *args[0];
  switch (function) {
    case ExtensionFunction::kIp:
    case ExtensionFunction::kDecimal:
    case ExtensionFunction::kDatetime:
    case ExtensionFunction::kDuration: {
      MANDATE_ASSIGN_OR_RETURN(const std::string* s, AsString(a));
      Result<ExtensionValue> v = function == ExtensionFunction::kIp         ? ParseIp(*s)
                                 : function == ExtensionFunction::kDecimal  ? ParseDecimal(*s)
                                 : function == ExtensionFunction::kDatetime ? ParseDatetime(*s)
                                                                            : ParseDuration(*s);
      if (!v.ok()) return v.error();
      return Value::Extension(*v);
    }
    case ExtensionFunction::kIsIpv4:
    case ExtensionFunction::kIsIpv6:
    case ExtensionFunction::kIsLoopback:
    case ExtensionFunction::kIsMulticast: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* ip, As(a, ExtensionType::kIpAddr));
      bool r = function == ExtensionFunction::kIsIpv4       ? !ip->ip_v6
               : function == ExtensionFunction::kIsIpv6     ? ip->ip_v6
               : function == ExtensionFunction::kIsLoopback ? IsLoopback(*ip)
                                                            : IsMulticast(*ip);
      return Value::Bool(r);
    }
    case ExtensionFunction::kIsInRange: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* child, As(a, ExtensionType::kIpAddr));
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* parent, As(*args[1], ExtensionType::kIpAddr));
      return Value::Bool(IsInRange(*child, *parent));
    }
    case ExtensionFunction::kLessThan:
    case ExtensionFunction::kLessThanOrEqual:
    case ExtensionFunction::kGreaterThan:
    case ExtensionFunction::kGreaterThanOrEqual: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* x, As(a, ExtensionType::kDecimal));
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* y, As(*args[1], ExtensionType::kDecimal));
      bool r = function == ExtensionFunction::kLessThan          ? x->number < y->number
               : function == ExtensionFunction::kLessThanOrEqual ? x->number <= y->number
               : function == ExtensionFunction::kGreaterThan     ? x->number > y->number
                                                                 : x->number >= y->number;
      return Value::Bool(r);
    }
    case ExtensionFunction::kOffset: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* dt, As(a, ExtensionType::kDatetime));
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* d, As(*args[1], ExtensionType::kDuration));
      int64_t r;
      if (__builtin_add_overflow(dt->number, d->number, &r)) {
        return Overflow("offset", "adding an offset");
      }
      return Value::Extension(Datetime(r));
    }
    case ExtensionFunction::kDurationSince: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* x, As(a, ExtensionType::kDatetime));
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* y, As(*args[1], ExtensionType::kDatetime));
      int64_t r;
      if (__builtin_sub_overflow(x->number, y->number, &r)) {
        return Overflow("durationSince", "computing the duration between two datetimes");
      }
      return Value::Extension(Duration(r));
    }
    case ExtensionFunction::kToDate: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* dt, As(a, ExtensionType::kDatetime));
      int64_t r;
      if (__builtin_sub_overflow(dt->number, RemEuclid(dt->number, kDayMillis), &r)) {
        return Overflow("toDate", "computing the date of a datetime");
      }
      return Value::Extension(Datetime(r));
    }
    case ExtensionFunction::kToTime: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* dt, As(a, ExtensionType::kDatetime));
      return Value::Extension(Duration(RemEuclid(dt->number, kDayMillis)));
    }
    case ExtensionFunction::kToDays:
    case ExtensionFunction::kToHours:
    case ExtensionFunction::kToMinutes:
    case ExtensionFunction::kToSeconds:
    case ExtensionFunction::kToMilliseconds: {
      MANDATE_ASSIGN_OR_RETURN(const ExtensionValue* d, As(a, ExtensionType::kDuration));
      // Truncating division, as the reference (duration("-1500ms").toSeconds() == -1).
      int64_t per = function == ExtensionFunction::kToDays      ? kDayMillis
                    : function == ExtensionFunction::kToHours   ? 3600000
                    : function == ExtensionFunction::kToMinutes ? 60000
                    : function == ExtensionFunction::kToSeconds ? 1000
                                                                : 1;
      return Value::Long(d->number / per);
    }
  }
  return MakeError(ErrorCode::kInternal, "unknown extension function");
}

}  // namespace mandate::policy
