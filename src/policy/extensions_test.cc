// The extension functions against the behaviour of the Cedar reference (cedar-wasm 4.13); every
// expectation below was checked against it. tests/differential covers random inputs.
#include "policy/extensions.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mandate::policy {
namespace {

ExtensionValue Ip(std::string_view s) {
  auto v = ParseIp(s);
  EXPECT_TRUE(v.ok()) << s << ": " << v.error().message;
  return v.ok() ? *v : ExtensionValue();
}

std::string IpError(std::string_view s) {
  auto v = ParseIp(s);
  EXPECT_FALSE(v.ok()) << s;
  if (v.ok()) return "";
  EXPECT_EQ(v.error().code, core::ErrorCode::kBadRequest);
  return v.error().message;
}

int64_t Number(core::Result<ExtensionValue> v, std::string_view s) {
  EXPECT_TRUE(v.ok()) << s << ": " << v.error().message;
  return v.ok() ? v->number : 0;
}

int64_t Decimal(std::string_view s) { return Number(ParseDecimal(s), s); }
int64_t Datetime(std::string_view s) { return Number(ParseDatetime(s), s); }
int64_t Duration(std::string_view s) { return Number(ParseDuration(s), s); }

// Calls `name` on `args`; the result or the error message.
core::Result<Value> Call(std::string_view name, std::vector<Value> args) {
  const ExtensionFunctionInfo* info = FindExtensionFunction(name);
  EXPECT_NE(info, nullptr) << name;
  std::vector<const Value*> pointers;
  for (const Value& v : args) pointers.push_back(&v);
  return CallExtensionFunction(info->function, pointers);
}

Value Ext(ExtensionValue v) { return Value::Extension(v); }

bool CallBool(std::string_view name, std::vector<Value> args) {
  auto r = Call(name, std::move(args));
  EXPECT_TRUE(r.ok()) << name << ": " << r.error().message;
  return r.ok() && r->is_bool() && r->as_bool();
}

TEST(Extensions, FindsEveryFunctionByItsCedarName) {
  const ExtensionFunctionInfo* ip = FindExtensionFunction("ip");
  ASSERT_NE(ip, nullptr);
  EXPECT_FALSE(ip->is_method);
  EXPECT_EQ(ip->arity, 1u);
  const ExtensionFunctionInfo* range = FindExtensionFunction("isInRange");
  ASSERT_NE(range, nullptr);
  EXPECT_TRUE(range->is_method);
  EXPECT_EQ(range->arity, 2u);
  EXPECT_EQ(&InfoOf(ExtensionFunction::kToMilliseconds), FindExtensionFunction("toMilliseconds"));
  EXPECT_EQ(FindExtensionFunction("contains"), nullptr);
  EXPECT_EQ(FindExtensionFunction("IP"), nullptr);
}

TEST(Extensions, ParsesIpv4AddressesAndRanges) {
  ExtensionValue a = Ip("10.1.2.3");
  EXPECT_FALSE(a.ip_v6);
  EXPECT_EQ(a.ip_low, 0x0A010203u);
  EXPECT_EQ(a.ip_prefix, 32);
  EXPECT_EQ(Ip("10.1.2.3/32"), a);
  EXPECT_EQ(Ip("10.0.0.0/8").ip_prefix, 8);
  EXPECT_EQ(Ip("0.0.0.0/0").ip_prefix, 0);
  EXPECT_EQ(Ip("255.255.255.255").ip_low, 0xFFFFFFFFu);
  // The host bits are kept: 10.0.0.1/24 is not 10.0.0.0/24.
  EXPECT_NE(Ip("10.0.0.1/24"), Ip("10.0.0.0/24"));
}

TEST(Extensions, ParsesIpv6AsRustDoes) {
  ExtensionValue loopback = Ip("::1");
  EXPECT_TRUE(loopback.ip_v6);
  EXPECT_EQ(loopback.ip_high, 0u);
  EXPECT_EQ(loopback.ip_low, 1u);
  EXPECT_EQ(loopback.ip_prefix, 128);
  EXPECT_EQ(Ip("0:0:0:0:0:0:0:1"), loopback);
  EXPECT_EQ(Ip("0000::1"), loopback);
  EXPECT_EQ(Ip("::").ip_low, 0u);
  EXPECT_EQ(Ip("FF02::1").ip_high, 0xFF02000000000000u);
  EXPECT_EQ(Ip("1:2:3:4:5:6:7::").ip_low, 0x0005000600070000u);
  EXPECT_EQ(Ip("::2:3:4:5:6:7:8").ip_high, 0x0000000200030004u);
  EXPECT_EQ(Ip("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128").ip_prefix, 128);  // 43 bytes
}

TEST(Extensions, RejectsWhatTheReferenceRejectsInIpAddresses) {
  for (const char* bad : {"",
                          "bad",
                          "1.2.3",
                          "1.2.3.4.5",
                          "01.2.3.4",
                          "1.2.3.04",
                          "256.1.1.1",
                          " 1.2.3.4",
                          "1.2.3.4 ",
                          "1.2.3.4%eth0",
                          "fe80::1%eth0",
                          "1::2::3",
                          ":::",
                          ":1::",
                          "00000::1",
                          "1:2:3:4:5:6:7:8:9",
                          "1:2:3:4:5:6:7::8",
                          "::1:2:3:4:5:6:7:8",
                          "1.2.3.4/",
                          "1.2.3.4/33",
                          "1.2.3.4/08",
                          "1.2.3.4/00",
                          "1.2.3.4/+8",
                          "1.2.3.4/ 8",
                          "1.2.3.4/8/8",
                          "1.2.3.4/032",
                          "::/129",
                          "::1/0128",
                          "::1/1.2",
                          "a:1.2.3.4",
                          "1.2.3.4/1.2"}) {
    EXPECT_NE(IpError(bad).find("error while evaluating `ipaddr` extension function"),
              std::string::npos)
        << bad;
  }
  // IPv4 embedded in IPv6 is refused even when well formed.
  EXPECT_NE(IpError("::ffff:1.2.3.4").find("We do not accept IPv4 embedded in IPv6"),
            std::string::npos);
  EXPECT_NE(IpError("1:2:3:4:5:6:1.2.3.4").find("IPv4 embedded"), std::string::npos);
  // Longer than "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128".
  EXPECT_NE(IpError("0ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128").find("too large"),
            std::string::npos);
}

TEST(Extensions, IpPredicatesConsiderThePrefix) {
  auto is = [](std::string_view method, std::string_view ip) {
    return CallBool(method, {Ext(Ip(ip))});
  };
  EXPECT_TRUE(is("isIpv4", "1.2.3.4"));
  EXPECT_FALSE(is("isIpv6", "1.2.3.4"));
  EXPECT_TRUE(is("isIpv6", "::1"));
  EXPECT_TRUE(is("isLoopback", "127.9.9.9"));
  EXPECT_TRUE(is("isLoopback", "127.0.0.0/8"));
  EXPECT_FALSE(is("isLoopback", "127.9.9.9/7"));
  EXPECT_TRUE(is("isLoopback", "::1"));
  EXPECT_FALSE(is("isLoopback", "::1/127"));
  EXPECT_FALSE(is("isLoopback", "::ffff:7f00:1"));
  EXPECT_TRUE(is("isMulticast", "224.0.0.1/4"));
  EXPECT_FALSE(is("isMulticast", "224.0.0.1/3"));
  EXPECT_TRUE(is("isMulticast", "239.255.255.255"));
  EXPECT_FALSE(is("isMulticast", "240.0.0.1"));
  EXPECT_TRUE(is("isMulticast", "ff00::1/8"));
  EXPECT_FALSE(is("isMulticast", "ff00::1/7"));
}

TEST(Extensions, IsInRangeComparesNetworks) {
  auto in = [](std::string_view a, std::string_view b) {
    return CallBool("isInRange", {Ext(Ip(a)), Ext(Ip(b))});
  };
  EXPECT_TRUE(in("10.1.2.3", "10.0.0.0/8"));
  EXPECT_FALSE(in("11.1.2.3", "10.0.0.0/8"));
  EXPECT_TRUE(in("10.0.0.1/24", "10.0.0.0/24"));
  EXPECT_TRUE(in("10.0.0.0/24", "10.0.0.1/24"));
  EXPECT_FALSE(in("10.0.0.0/24", "10.0.0.1"));
  EXPECT_TRUE(in("1.2.3.4", "0.0.0.0/0"));
  EXPECT_FALSE(in("10.0.0.0/0", "::/0"));  // never across versions
  EXPECT_TRUE(in("2001:db8::1", "2001:db8::/32"));
  EXPECT_TRUE(in("2001:db8:0:0:8000::/65", "2001:db8::/64"));
  EXPECT_FALSE(in("2001:db8::/63", "2001:db8::/64"));
  EXPECT_TRUE(in("::/0", "::/0"));
}

TEST(Extensions, ParsesDecimalsWithFourFractionalDigits) {
  EXPECT_EQ(Decimal("1.0"), 10000);
  EXPECT_EQ(Decimal("1.0"), Decimal("1.0000"));
  EXPECT_EQ(Decimal("-1.5"), -15000);
  EXPECT_EQ(Decimal("-0.5"), -5000);  // the sign of a zero integer part is kept
  EXPECT_EQ(Decimal("-0.0"), 0);
  EXPECT_EQ(Decimal("0001.5"), 15000);
  EXPECT_EQ(Decimal("922337203685477.5807"), INT64_MAX);
  EXPECT_EQ(Decimal("-922337203685477.5808"), INT64_MIN);
}

TEST(Extensions, RejectsMalformedAndOutOfRangeDecimals) {
  for (const char* bad : {"1", "1.", ".5", "+1.5", "--1.0", "1.0 ", " 1.0", "1e3", "-", "1.2.3",
                          "\xd9\xa1.5" /* Arabic-Indic digit one */}) {
    auto v = ParseDecimal(bad);
    EXPECT_FALSE(v.ok()) << bad;
  }
  EXPECT_NE(ParseDecimal("1.23456").error().message.find("too many digits"), std::string::npos);
  for (const char* big : {"922337203685477.5808", "-922337203685477.5809",
                          "99999999999999999999999.0", "9223372036854775808.0"}) {
    auto v = ParseDecimal(big);
    ASSERT_FALSE(v.ok()) << big;
    EXPECT_NE(v.error().message.find("overflow"), std::string::npos) << big;
  }
}

TEST(Extensions, DecimalMethodsCompareByValue) {
  Value one = Ext(*ParseDecimal("1.0"));
  Value more = Ext(*ParseDecimal("1.0001"));
  EXPECT_TRUE(CallBool("lessThan", {one, more}));
  EXPECT_FALSE(CallBool("lessThan", {one, one}));
  EXPECT_TRUE(CallBool("lessThanOrEqual", {one, one}));
  EXPECT_TRUE(CallBool("greaterThan", {more, one}));
  EXPECT_TRUE(CallBool("greaterThanOrEqual", {one, one}));
  EXPECT_TRUE(CallBool("lessThan", {Ext(*ParseDecimal("-0.5")), Ext(*ParseDecimal("-0.4"))}));
}

TEST(Extensions, ParsesDatetimesInEveryFormat) {
  constexpr int64_t kDay = 86400000;
  EXPECT_EQ(Datetime("1970-01-01"), 0);
  EXPECT_EQ(Datetime("1970-01-02"), kDay);
  EXPECT_EQ(Datetime("1969-12-31T23:00:00Z"), -3600000);
  EXPECT_EQ(Datetime("2024-10-15T11:38:02.101Z"), 1728992282101);
  // An offset is subtracted: 11:38:02.101+11:34 is 00:04:02.101 UTC.
  EXPECT_EQ(Datetime("2024-10-15T11:38:02.101+1134"), Datetime("2024-10-15T00:04:02.101Z"));
  EXPECT_EQ(Datetime("2024-10-15T11:38:02-1134"), Datetime("2024-10-15T23:12:02Z"));
  EXPECT_EQ(Datetime("2024-01-01T00:00:00+2359"), Datetime("2023-12-31T00:01:00Z"));
  EXPECT_EQ(Datetime("2024-02-29"), Datetime("2024-03-01") - kDay);
  EXPECT_EQ(Datetime("0000-01-01"), -62167219200000);
  EXPECT_EQ(Datetime("9999-12-31T23:59:59.999Z"), 253402300799999);
}

TEST(Extensions, RejectsMalformedDatetimes) {
  for (const char* bad : {"",
                          "a",
                          "-1",
                          "2024-1-01",
                          "+2024-01-01",
                          "10000-01-01",
                          "2024-01-01Z",
                          "2024-01-01T",
                          "2024-01-01T10:00Z",
                          "2024-01-01 10:00:00Z",
                          "2024-01-01t10:00:00Z",
                          "2024-01-01T10:00:00",
                          "2024-01-01T10:00:00z",
                          "2024-01-01T10:00:00.1Z",
                          "2024-01-01T10:00:00+01:00",
                          "2024-01-01T10:00:00ZZ",
                          "2023-02-29",
                          "2024-00-01",
                          "2024-13-01",
                          "2024-04-31",
                          "2024-01-00",
                          "2024-01-01T24:00:00Z",
                          "2024-01-01T01:60:00Z",
                          "2016-12-31T23:59:60Z",
                          "2024-01-01T10:00:00+2400",
                          "2024-01-01T10:00:00+2360"}) {
    auto v = ParseDatetime(bad);
    EXPECT_FALSE(v.ok()) << bad;
    if (!v.ok()) {
      EXPECT_NE(v.error().message.find("`datetime` extension function"), std::string::npos);
    }
  }
}

TEST(Extensions, ParsesDurations) {
  EXPECT_EQ(Duration("0ms"), 0);
  EXPECT_EQ(Duration("-0ms"), 0);
  EXPECT_EQ(Duration("1d2h3m4s5ms"), 93784005);
  EXPECT_EQ(Duration("-1d1h"), -25 * 3600000);
  EXPECT_EQ(Duration("1m1ms"), 60001);
  EXPECT_EQ(Duration("01d"), 86400000);
  EXPECT_EQ(Duration("9223372036854775807ms"), INT64_MAX);
  EXPECT_EQ(Duration("-9223372036854775808ms"), INT64_MIN);
  EXPECT_EQ(Duration("-106751991167d7h12m55s808ms"), INT64_MIN);
}

TEST(Extensions, RejectsMalformedAndOverflowingDurations) {
  for (const char* bad : {"", "-", "1", "d", "1D", "1h1d", "1d-1h", "1ms1s", "1d1d", "1.5h", " 1h",
                          "1hh", "+1h", "--1h"}) {
    auto v = ParseDuration(bad);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_NE(v.error().message.find("invalid duration pattern"), std::string::npos) << bad;
  }
  for (const char* big :
       {"9223372036854775808ms", "106751991167d7h12m55s808ms", "-106751991167d7h12m55s809ms",
        "106751991168d", "18446744073709551615ms", "99999999999999999999s"}) {
    auto v = ParseDuration(big);
    ASSERT_FALSE(v.ok()) << big;
    EXPECT_NE(v.error().message.find("overflows"), std::string::npos) << big;
  }
}

TEST(Extensions, DatetimeAndDurationMethods) {
  Value dt = Ext(*ParseDatetime("1969-12-31T23:00:00.500Z"));
  EXPECT_EQ(Call("toDate", {dt})->as_extension().number, Datetime("1969-12-31"));
  EXPECT_EQ(Call("toTime", {dt})->as_extension().number, Duration("23h500ms"));
  Value day = Ext(*ParseDuration("1d"));
  EXPECT_EQ(Call("offset", {dt, day})->as_extension().number, Datetime("1970-01-01T23:00:00.500Z"));
  EXPECT_EQ(Call("durationSince", {Ext(*ParseDatetime("1970-01-02")), dt})->as_extension().number,
            Duration("1d1h") - 500);
  Value negative = Ext(*ParseDuration("-1d1h1m1s1500ms"));
  EXPECT_EQ(Call("toDays", {negative})->as_long(), -1);  // truncated toward zero
  EXPECT_EQ(Call("toHours", {negative})->as_long(), -25);
  EXPECT_EQ(Call("toMinutes", {negative})->as_long(), -1501);
  EXPECT_EQ(Call("toSeconds", {negative})->as_long(), -90062);
  EXPECT_EQ(Call("toMilliseconds", {negative})->as_long(), -90062500);
}

TEST(Extensions, DatetimeArithmeticOverflowIsAnError) {
  Value epoch = Ext(*ParseDatetime("1970-01-01"));
  Value max = Ext(*ParseDuration("9223372036854775807ms"));
  Value min = Ext(*ParseDuration("-9223372036854775808ms"));
  auto far_past = Call("offset", {epoch, min});
  ASSERT_TRUE(far_past.ok());
  EXPECT_EQ(far_past->as_extension().number, INT64_MIN);
  EXPECT_NE(
      Call("offset", {Ext(*ParseDatetime("1970-01-02")), max}).error().message.find("overflows"),
      std::string::npos);
  EXPECT_FALSE(Call("toDate", {*far_past}).ok());
  // Time of day is never negative: -2^63 ms is 16:47:04.192 on its day.
  EXPECT_EQ(Call("toTime", {*far_past})->as_extension().number, 60424192);
  auto later = Call("offset", {epoch, Ext(*ParseDuration("1ms"))});
  EXPECT_FALSE(Call("durationSince", {*far_past, *later}).ok());
}

TEST(Extensions, ChecksArgumentCountsAndTypes) {
  EXPECT_EQ(Call("ip", {}).error().message,
            "wrong number of arguments provided to extension function `ip`: expected 1, got 0");
  EXPECT_EQ(Call("isInRange", {Ext(Ip("::1"))}).error().message,
            "wrong number of arguments provided to extension function `isInRange`: expected 2, "
            "got 1");
  EXPECT_EQ(Call("ip", {Value::Long(1)}).error().message, "type error: expected string, got long");
  EXPECT_EQ(Call("isIpv4", {Value::String("1.2.3.4")}).error().message,
            "type error: expected ipaddr, got string (maybe you forgot to apply the `ip` "
            "constructor?)");
  EXPECT_EQ(Call("lessThan", {Ext(*ParseDecimal("1.0")), Ext(Ip("::1"))}).error().message,
            "type error: expected decimal, got ipaddr");
  EXPECT_EQ(Call("offset", {Ext(*ParseDuration("1s")), Ext(*ParseDuration("1s"))}).error().message,
            "type error: expected datetime, got duration");
  EXPECT_EQ(Call("toHours", {Value::Long(1)}).error().message,
            "type error: expected duration, got long");
}

TEST(Extensions, ConstructorArgumentsParseBackToEqualValues) {
  for (const char* ip : {"10.0.0.1", "10.0.0.0/8", "::1", "ff00::/8", "2001:db8::1:0:0:1/100"}) {
    ExtensionValue v = Ip(ip);
    EXPECT_EQ(Ip(*ConstructorArgument(v)), v) << ip;
  }
  EXPECT_EQ(*ConstructorArgument(Ip("10.0.0.1")), "10.0.0.1/32");
  EXPECT_EQ(*ConstructorArgument(Ip("::1")), "0:0:0:0:0:0:0:1/128");
  for (const char* d : {"1.5", "-0.5", "-922337203685477.5808", "0.0"}) {
    EXPECT_EQ(Decimal(*ConstructorArgument(*ParseDecimal(d))), Decimal(d)) << d;
  }
  EXPECT_EQ(*ConstructorArgument(*ParseDecimal("-0.05")), "-0.0500");
  EXPECT_EQ(*ConstructorArgument(*ParseDatetime("2024-10-15T11:38:02.101+1134")),
            "2024-10-15T00:04:02.101Z");
  EXPECT_EQ(*ConstructorArgument(*ParseDatetime("0000-01-01")), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(*ConstructorArgument(*ParseDuration("-1d")), "-86400000ms");
  EXPECT_EQ(Duration(*ConstructorArgument(*ParseDuration("-9223372036854775808ms"))), INT64_MIN);
  // Beyond year 9999 no datetime string exists.
  ExtensionValue far;
  far.type = ExtensionType::kDatetime;
  for (int64_t ms : {INT64_MAX, INT64_MIN, int64_t{253402300800000}, int64_t{-62167219200001}}) {
    far.number = ms;
    EXPECT_FALSE(ConstructorArgument(far).has_value()) << ms;
  }
}

}  // namespace
}  // namespace mandate::policy
