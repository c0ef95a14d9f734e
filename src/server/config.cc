#include "server/config.h"

#include "mandate/core/encoding.h"
#include "mandate/audit/checkpoint.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <system_error>
#include <utility>

#include "mandate/core/json.h"
#include "mandate/net/http.h"

namespace mandate::server {
namespace {

using core::Error;
using core::ErrorCode;
using core::Result;
using core::Status;

// yaml-cpp gives plain (unquoted) scalars the non-specific tag "?". Integers and booleans must
// be plain: `max_connections: "2"` is a string, and accepting it would hide a typing mistake.
constexpr std::string_view kPlainScalarTag = "?";

std::string Quoted(std::string_view s) {
  // JSON string syntax shows any byte of untrusted text unambiguously and on one line.
  constexpr size_t kShownBytesMax = 80;
  std::string out;
  if (s.size() > kShownBytesMax) {
    core::AppendJsonString(s.substr(0, kShownBytesMax), &out);
    out.append("...");
  } else {
    core::AppendJsonString(s, &out);
  }
  return out;
}

std::string Join(const std::vector<std::string_view>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.append(", ");
    out.append(items[i]);
  }
  return out;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      return Quoted(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
  }
  return "an unknown node";
}

std::string FormatMillis(int64_t millis) {
  constexpr std::array<std::pair<int64_t, const char*>, 4> kUnits = {
      {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}}};
  for (const auto& [size, unit] : kUnits) {
    if (millis != 0 && millis % size == 0) return std::to_string(millis / size) + unit;
  }
  return std::to_string(millis) + "ms";
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAlnum(char c) { return IsAlpha(c) || IsDigit(c); }

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }


bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && core::AsciiEqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

// Upstream, tool, credential, budget and approval-group names: [A-Za-z0-9_.-]{1,64}.
// Invariant: never contains ':' (the separator of action ids) nor '/' (URL path segments).
bool IsConfigName(std::string_view s) {
  if (s.empty() || s.size() > core::kConfigNameBytesMax) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

constexpr std::string_view kConfigNameRule =
    "names are 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'";

bool IsEnvVarName(std::string_view s) {
  if (s.empty() || s.size() > core::kNameBytesMax) return false;
  if (!IsAlpha(s[0]) && s[0] != '_') return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '_') return false;
  }
  return true;
}

// Human and agent names in budget matches: any printable text without control characters.
bool IsPrincipalName(std::string_view s) {
  if (s.empty() || s.size() > core::kNameBytesMax) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// A header field name the config may set: an RFC 9110 token of bounded length.
bool IsHeaderName(std::string_view s) {
  return s.size() <= core::kConfigNameBytesMax && net::IsHttpToken(s);
}

bool IsCedarIdentifier(std::string_view s) {
  if (s.empty() || (!IsAlpha(s[0]) && s[0] != '_')) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '_') return false;
  }
  return true;
}

Error Invalid(std::string message) {
  return core::MakeError(ErrorCode::kBadRequest, std::move(message));
}

// A port: 1 to 5 decimal digits, value 0..65535.
Result<uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  if (text.empty() || text.size() > 5) {
    return Invalid("invalid address " + Quoted(whole) +
                   ": the port must be a number from 0 to 65535");
  }
  uint32_t port = 0;
  for (char c : text) {
    if (!IsDigit(c)) {
      return Invalid("invalid address " + Quoted(whole) +
                     ": the port must be a number from 0 to 65535");
    }
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) {
    return Invalid("invalid address " + Quoted(whole) + ": port " + std::to_string(port) +
                   " is out of range (0 to 65535)");
  }
  return static_cast<uint16_t>(port);
}

// A host: a DNS name or IPv4 literal ([A-Za-z0-9.-_]), or an IPv6 literal given in brackets.
// `bracketed_v6` is the text inside the brackets when the caller saw them.
Status CheckHost(std::string_view host, bool bracketed_v6, std::string_view whole) {
  constexpr size_t kHostBytesMax = 253;  // RFC 1035 name length
  if (host.empty()) {
    return Invalid("invalid address " + Quoted(whole) +
                   ": the host is missing (write 127.0.0.1:PORT, or 0.0.0.0:PORT for every "
                   "interface)");
  }
  if (host.size() > kHostBytesMax) {
    return Invalid("invalid address " + Quoted(whole) + ": the host is too long");
  }
  for (char c : host) {
    bool ok = bracketed_v6
                  ? (IsDigit(c) || (ToLower(c) >= 'a' && ToLower(c) <= 'f') || c == ':' || c == '.')
                  : (IsAlnum(c) || c == '.' || c == '-' || c == '_');
    if (!ok) {
      return Invalid("invalid address " + Quoted(whole) + ": invalid character " +
                     Quoted(std::string_view(&c, 1)) + " in the host");
    }
  }
  if (bracketed_v6 && host.find(':') == std::string_view::npos) {
    return Invalid("invalid address " + Quoted(whole) + ": brackets are only for IPv6 hosts");
  }
  return core::OkStatus();
}

// Splits "host:port" / "[v6]:port" / (when !port_required) "host" / "[v6]".
struct HostPort {
  std::string host;
  std::optional<uint16_t> port;
  bool ipv6 = false;
};

Result<HostPort> SplitHostPort(std::string_view text, bool port_required) {
  HostPort out;
  std::string_view host;
  std::optional<std::string_view> port_text;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return Invalid("invalid address " + Quoted(text) + ": missing ']' after the IPv6 host");
    }
    host = text.substr(1, close - 1);
    out.ipv6 = true;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        return Invalid("invalid address " + Quoted(text) + ": expected ':' and a port after ']'");
      }
      port_text = rest.substr(1);
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
      if (host.find(':') != std::string_view::npos) {
        return Invalid("invalid address " + Quoted(text) +
                       ": write IPv6 hosts in brackets, like [::1]:8080");
      }
    } else {
      host = text;
    }
  }
  MANDATE_RETURN_IF_ERROR(CheckHost(host, out.ipv6, text));
  out.host = std::string(host);
  if (port_text) {
    MANDATE_ASSIGN_OR_RETURN(out.port, ParsePort(*port_text, text));
  } else if (port_required) {
    return Invalid("invalid address " + Quoted(text) + ": expected host:port, like 127.0.0.1:8080");
  }
  return out;
}

// An upstream URL. Only plain http:// is accepted in this version.
Status CheckUpstreamUrl(std::string_view url) {
  if (url.size() > core::kConfigUrlBytesMax) {
    return Invalid("the url is longer than " + std::to_string(core::kConfigUrlBytesMax) + " bytes");
  }
  if (StartsWithIgnoreCase(url, "https://")) {
    return Invalid(
        "https upstream URLs are not supported in this version; use an http:// URL "
        "(for example to a local TLS-terminating proxy)");
  }
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Invalid("invalid url " + Quoted(url) + ": it must start with http://");
  }
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Invalid("invalid url " + Quoted(url) +
                     ": spaces, control and non-ASCII characters must be percent-encoded");
    }
  }
  if (url.find('#') != std::string_view::npos) {
    return Invalid("invalid url " + Quoted(url) + ": a fragment ('#') has no meaning here");
  }
  std::string_view rest = url.substr(kScheme.size());
  std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  if (authority.find('@') != std::string_view::npos) {
    return Invalid("invalid url " + Quoted(url) +
                   ": user info in a URL is not allowed; declare the secret under credentials "
                   "and reference it with credential");
  }
  MANDATE_ASSIGN_OR_RETURN(HostPort hp, SplitHostPort(authority, /*port_required=*/false));
  if (hp.port && *hp.port == 0) {
    return Invalid("invalid url " + Quoted(url) + ": port 0 cannot be connected to");
  }
  return core::OkStatus();
}

// Splits `Type::"id template"` into ("Type", "id template").
Result<std::pair<std::string, std::string>> ParseResourceTemplate(std::string_view text) {
  constexpr std::string_view kShape =
      ": expected Type::\"id\", where the id may use {args.NAME} placeholders, like "
      "Repo::\"{args.owner}/{args.repo}\"";
  if (text.size() > core::kResourceTemplateBytesMax) {
    return Invalid("the resource template is longer than " +
                   std::to_string(core::kResourceTemplateBytesMax) + " bytes");
  }
  size_t sep = text.find("::\"");
  if (sep == std::string_view::npos || text.size() < sep + 4 || text.back() != '"') {
    return Invalid("invalid resource " + Quoted(text) + std::string(kShape));
  }
  std::string_view type = text.substr(0, sep);
  std::string_view id = text.substr(sep + 3, text.size() - sep - 4);
  // The type may be namespaced: Ns::Type.
  for (std::string_view t = type;;) {
    size_t colons = t.find("::");
    std::string_view segment = t.substr(0, colons);
    if (!IsCedarIdentifier(segment)) {
      return Invalid("invalid resource " + Quoted(text) + ": " + Quoted(type) +
                     " is not a Cedar entity type name");
    }
    if (colons == std::string_view::npos) break;
    t = t.substr(colons + 2);
  }
  // The id is filled from agent-supplied arguments. With one of Mandate's own entity types the
  // agent could name, say, Upstream::"prod" and inherit policies written for that upstream.
  for (std::string_view reserved : {"Upstream", "Human", "Agent", "Group", "Action"}) {
    if (type == reserved) {
      return Invalid("invalid resource " + Quoted(text) + ": the type " + Quoted(type) +
                     " is reserved by Mandate; use a type of your own, like Repo");
    }
  }
  if (id.empty()) {
    return Invalid("invalid resource " + Quoted(text) + ": the id is empty");
  }
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return Invalid("invalid resource " + Quoted(text) +
                     ": quotes, backslashes and control characters are not allowed in the id");
    }
    if (c == '}') {
      return Invalid("invalid resource " + Quoted(text) + ": '}' without a matching '{'");
    }
    if (c != '{') continue;
    size_t close = id.find('}', i);
    if (close == std::string_view::npos) {
      return Invalid("invalid resource " + Quoted(text) + ": '{' without a matching '}'");
    }
    std::string_view placeholder = id.substr(i + 1, close - i - 1);
    constexpr std::string_view kArgs = "args.";
    bool ok = placeholder.substr(0, kArgs.size()) == kArgs;
    for (std::string_view p = ok ? placeholder.substr(kArgs.size()) : ""; ok;) {
      size_t dot = p.find('.');
      ok = IsCedarIdentifier(p.substr(0, dot));
      if (dot == std::string_view::npos) break;
      p = p.substr(dot + 1);
    }
    if (!ok) {
      return Invalid("invalid resource " + Quoted(text) + ": placeholder {" +
                     std::string(placeholder) + "} must name an argument, like {args.owner}");
    }
    i = close;
  }
  return std::make_pair(std::string(type), std::string(id));
}

// Header names the credential may not be put in: they frame the HTTP message, or carry
// Mandate's own protocol state, so overwriting them would break or forge the request.
bool IsReservedHeader(std::string_view name) {
  for (std::string_view reserved :
       {"host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive",
        "proxy-connection", "te", "trailer", "upgrade", "accept", "txn-token", "dpop",
        "mcp-session-id", "mcp-protocol-version", "last-event-id"}) {
    if (core::AsciiEqualsIgnoreCase(name, reserved)) return true;
  }
  return false;
}

// One key/value pair of a YAML mapping, with the key already checked to be a string.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

const Entry* Find(const std::vector<Entry>& entries, std::string_view key) {
  for (const Entry& e : entries) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

class ConfigParser {
 public:
  ConfigParser(std::string source, std::filesystem::path base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  Result<Config> Parse(const YAML::Node& root);

 private:
  // --- Errors -------------------------------------------------------------------------------
  Error At(const YAML::Mark& mark, std::string_view message) const {
    std::string out = source_;
    if (!mark.is_null() && mark.line >= 0 && mark.column >= 0) {
      out += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    }
    out += ": ";
    out += message;
    return Invalid(std::move(out));
  }
  // At the key of `e` (for problems with the key or the entry as a whole).
  Error AtKey(const Entry& e, std::string_view message) const {
    return At(e.key_node.Mark(), message);
  }
  // At the value of `e`; a null value has no place of its own, so it is reported at its key.
  Error AtValue(const Entry& e, std::string_view message) const {
    if (e.value.IsNull() || e.value.Mark().is_null()) return AtKey(e, message);
    return At(e.value.Mark(), message);
  }
  Error Expected(const Entry& e, std::string_view path, std::string_view what) const {
    return AtValue(
        e, std::string(path) + ": expected " + std::string(what) + ", got " + Describe(e.value));
  }

  // --- Structure ----------------------------------------------------------------------------
  // The entries of a mapping (null counts as empty). Keys must be unique strings.
  Result<std::vector<Entry>> Entries(const Entry& e, std::string_view path, size_t max_entries) {
    return Entries(e.value, &e, path, max_entries);
  }
  Result<std::vector<Entry>> Entries(const YAML::Node& node, const Entry* parent,
                                     std::string_view path, size_t max_entries);
  // Fails on the first key not in `allowed`.
  Status CheckKeys(const std::vector<Entry>& entries, std::string_view where,
                   const std::vector<std::string_view>& allowed);

  // --- Typed values -------------------------------------------------------------------------
  Result<std::string> String(const Entry& e, std::string_view path);
  Result<int64_t> Integer(const Entry& e, std::string_view path, int64_t min, int64_t max);
  Result<bool> Bool(const Entry& e, std::string_view path);
  Result<int64_t> DurationMillis(const Entry& e, std::string_view path, int64_t min_millis,
                                 int64_t max_millis);
  Result<std::vector<std::string>> StringList(const Entry& e, std::string_view path,
                                              size_t max_items);
  Result<std::string> Path(const Entry& e, std::string_view path);
  Result<ListenAddress> Listen(const Entry& e, std::string_view path);
  std::string Resolve(const std::string& p) const;

  // --- Sections -----------------------------------------------------------------------------
  Status ParseTokens(const Entry& e, Config* config);
  Status ParseCredentials(const Entry& e, Config* config);
  Status ParseUpstreams(const Entry& e, Config* config);
  Result<UpstreamConfig> ParseUpstream(const Entry& e, const Config& config);
  Result<AuditPayloadConfig> ParseAuditPayload(const Entry& e, const std::string& path);
  Status ParseTools(const Entry& e, const std::string& path, const std::string& upstream,
                    UpstreamConfig* upstream_config);
  Status ParseBudgets(const Entry& e, Config* config);
  Result<BudgetMatch> ParseBudgetMatch(const Entry& e, const std::string& path,
                                       const Config& config);
  Status ParseApprovals(const Entry& e, Config* config);

  std::string source_;
  std::filesystem::path base_dir_;
  size_t tools_total_ = 0;  // over all upstreams, against kConfigToolsMax
};

Result<std::vector<Entry>> ConfigParser::Entries(const YAML::Node& node, const Entry* parent,
                                                 std::string_view path, size_t max_entries) {
  std::vector<Entry> out;
  if (node.IsNull()) return out;
  if (!node.IsMap()) {
    if (parent != nullptr) return Expected(*parent, path, "a mapping");
    return At(node.Mark(),
              "the top level must be a mapping of keys to values, got " + Describe(node));
  }
  if (node.size() > max_entries) {
    std::string what = parent != nullptr ? std::string(path) : "the top level";
    return At(node.Mark(), what + ": more than " + std::to_string(max_entries) + " entries");
  }
  std::set<std::string, std::less<>> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // By value: the iterator's pair is a temporary proxy, references into it would dangle.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      return At(key.Mark(), std::string(path.empty() ? "top level" : path) +
                                ": keys must be strings, got " + Describe(key));
    }
    // yaml-cpp keeps duplicate keys; which one wins would be up to the reader, so refuse.
    if (!seen.insert(key.Scalar()).second) {
      return At(key.Mark(), "duplicate key " + Quoted(key.Scalar()) +
                                (path.empty() ? std::string() : " in " + std::string(path)));
    }
    out.push_back(Entry{key.Scalar(), key, value});
  }
  return out;
}

Status ConfigParser::CheckKeys(const std::vector<Entry>& entries, std::string_view where,
                               const std::vector<std::string_view>& allowed) {
  for (const Entry& e : entries) {
    bool known = false;
    for (std::string_view a : allowed) known = known || e.key == a;
    if (!known) {
      return AtKey(e, "unknown key " + Quoted(e.key) + " in " + std::string(where) +
                          " (expected one of: " + Join(allowed) + ")");
    }
  }
  return core::OkStatus();
}

Result<std::string> ConfigParser::String(const Entry& e, std::string_view path) {
  if (!e.value.IsScalar()) return Expected(e, path, "a string");
  const std::string& s = e.value.Scalar();
  if (s.find('\0') != std::string::npos) {
    return AtValue(e, std::string(path) + ": NUL characters are not allowed");
  }
  return s;
}

Result<int64_t> ConfigParser::Integer(const Entry& e, std::string_view path, int64_t min,
                                      int64_t max) {
  std::string what = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (!e.value.IsScalar() || e.value.Tag() != kPlainScalarTag) return Expected(e, path, what);
  const std::string& s = e.value.Scalar();
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || s[0] == '+') {
    return Expected(e, path, what);
  }
  if (v < min || v > max) return Expected(e, path, what);
  return v;
}

Result<bool> ConfigParser::Bool(const Entry& e, std::string_view path) {
  // Only YAML 1.2 `true` and `false`: yes/no/on/off are a classic source of surprises.
  if (e.value.IsScalar() && e.value.Tag() == kPlainScalarTag) {
    if (e.value.Scalar() == "true") return true;
    if (e.value.Scalar() == "false") return false;
  }
  return Expected(e, path, "true or false");
}

Result<int64_t> ConfigParser::DurationMillis(const Entry& e, std::string_view path,
                                             int64_t min_millis, int64_t max_millis) {
  if (!e.value.IsScalar()) {
    return Expected(e, path, "a duration like 500ms, 10s, 15m, 24h or 1d");
  }
  auto millis = ParseDurationMillis(e.value.Scalar());
  if (!millis.ok()) return AtValue(e, std::string(path) + ": " + millis.error().message);
  if (*millis < min_millis || *millis > max_millis) {
    return AtValue(e, std::string(path) + ": must be from " + FormatMillis(min_millis) + " to " +
                          FormatMillis(max_millis) + ", got " + Quoted(e.value.Scalar()));
  }
  return *millis;
}

Result<std::vector<std::string>> ConfigParser::StringList(const Entry& e, std::string_view path,
                                                          size_t max_items) {
  if (!e.value.IsSequence()) return Expected(e, path, "a list of strings");
  if (e.value.size() > max_items) {
    return AtValue(e, std::string(path) + ": more than " + std::to_string(max_items) + " items");
  }
  std::vector<std::string> out;
  size_t i = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++i) {
    Entry item{std::to_string(i), e.key_node, *it};
    MANDATE_ASSIGN_OR_RETURN(std::string s,
                             String(item, std::string(path) + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(s));
  }
  return out;
}

std::string ConfigParser::Resolve(const std::string& p) const {
  std::filesystem::path path(p);
  if (path.is_relative()) path = base_dir_ / path;
  std::string out = path.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

Result<std::string> ConfigParser::Path(const Entry& e, std::string_view path) {
  MANDATE_ASSIGN_OR_RETURN(std::string s, String(e, path));
  if (s.empty()) return AtValue(e, std::string(path) + ": the path is empty");
  return Resolve(s);
}

Result<ListenAddress> ConfigParser::Listen(const Entry& e, std::string_view path) {
  MANDATE_ASSIGN_OR_RETURN(std::string s, String(e, path));
  auto address = ParseListenAddress(s);
  if (!address.ok()) return AtValue(e, std::string(path) + ": " + address.error().message);
  return *std::move(address);
}

// --- Sections -------------------------------------------------------------------------------

Status ConfigParser::ParseTokens(const Entry& e, Config* config) {
  MANDATE_ASSIGN_OR_RETURN(auto entries, Entries(e, "tokens", 16));
  MANDATE_RETURN_IF_ERROR(
      CheckKeys(entries, "tokens", {"issuer", "audience", "ttl", "max_ttl", "alg", "max_delegation_depth"}));
  TokensConfig& t = config->tokens;
  if (const Entry* x = Find(entries, "issuer")) {
    MANDATE_ASSIGN_OR_RETURN(t.issuer, String(*x, "tokens.issuer"));
    bool scheme_ok = t.issuer.starts_with("https://") || t.issuer.starts_with("http://");
    bool chars_ok = t.issuer.size() <= core::kConfigUrlBytesMax;
    for (char c : t.issuer) {
      chars_ok = chars_ok && static_cast<unsigned char>(c) > 0x20 && c != 0x7f;
    }
    if (!scheme_ok || !chars_ok) {
      return AtValue(*x, "tokens.issuer: expected an http:// or https:// URL without spaces, got " +
                             Quoted(t.issuer));
    }
  }
  if (const Entry* x = Find(entries, "audience")) {
    MANDATE_ASSIGN_OR_RETURN(t.audience, String(*x, "tokens.audience"));
    if (!IsPrincipalName(t.audience)) {
      return AtValue(*x, "tokens.audience: expected 1 to " + std::to_string(core::kNameBytesMax) +
                             " printable characters, got " + Quoted(t.audience));
    }
  }
  // Token lifetimes are whole seconds: JWT "exp" and "iat" are NumericDate seconds.
  auto seconds = [&](const Entry& x, std::string_view path) -> Result<int64_t> {
    MANDATE_ASSIGN_OR_RETURN(int64_t millis,
                             DurationMillis(x, path, 1000, core::kTokenTtlSecondsMax * 1000));
    if (millis % 1000 != 0) {
      return AtValue(x, std::string(path) + ": must be a whole number of seconds, got " +
                            Quoted(x.value.Scalar()));
    }
    return millis / 1000;
  };
  if (const Entry* x = Find(entries, "max_ttl")) {
    MANDATE_ASSIGN_OR_RETURN(t.max_ttl_seconds, seconds(*x, "tokens.max_ttl"));
  }
  if (const Entry* x = Find(entries, "ttl")) {
    MANDATE_ASSIGN_OR_RETURN(t.ttl_seconds, seconds(*x, "tokens.ttl"));
    if (t.ttl_seconds > t.max_ttl_seconds) {
      return AtValue(*x, "tokens.ttl: " + FormatMillis(t.ttl_seconds * 1000) +
                             " is longer than tokens.max_ttl (" +
                             FormatMillis(t.max_ttl_seconds * 1000) + ")");
    }
  } else if (t.ttl_seconds > t.max_ttl_seconds) {
    t.ttl_seconds = t.max_ttl_seconds;  // a shorter max_ttl caps the default ttl
  }
  if (const Entry* x = Find(entries, "alg")) {
    MANDATE_ASSIGN_OR_RETURN(std::string alg, String(*x, "tokens.alg"));
    if (alg == "EdDSA") {
      t.alg = TokenAlg::kEdDSA;
    } else if (alg == "ES256") {
      t.alg = TokenAlg::kES256;
    } else {
      return AtValue(*x, "tokens.alg: expected EdDSA or ES256, got " + Quoted(alg));
    }
  }
  if (const Entry* x = Find(entries, "max_delegation_depth")) {
    MANDATE_ASSIGN_OR_RETURN(int64_t n, Integer(*x, "tokens.max_delegation_depth", 1,
                                                static_cast<int64_t>(core::kDelegationDepthMax)));
    t.max_delegation_depth = static_cast<uint32_t>(n);
  }
  return core::OkStatus();
}

Status ConfigParser::ParseCredentials(const Entry& e, Config* config) {
  MANDATE_ASSIGN_OR_RETURN(auto entries, Entries(e, "credentials", core::kCredentialsMax));
  for (const Entry& c : entries) {
    if (!IsConfigName(c.key)) {
      return AtKey(
          c, "invalid credential name " + Quoted(c.key) + ": " + std::string(kConfigNameRule));
    }
    std::string path = "credentials." + c.key;
    std::string where = "credential " + Quoted(c.key);
    MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(c, path, 4));
    MANDATE_RETURN_IF_ERROR(CheckKeys(fields, where, {"env", "file"}));
    const Entry* env = Find(fields, "env");
    const Entry* file = Find(fields, "file");
    if ((env == nullptr) == (file == nullptr)) {
      return AtKey(c, path +
                          ": needs exactly one of env (an environment variable of Mandate "
                          "holding the secret) or file (a file holding it)");
    }
    CredentialConfig cred;
    cred.name = c.key;
    if (env != nullptr) {
      cred.source = CredentialSource::kEnv;
      MANDATE_ASSIGN_OR_RETURN(cred.env_var, String(*env, path + ".env"));
      if (!IsEnvVarName(cred.env_var)) {
        return AtValue(*env, path +
                                 ".env: expected an environment variable name like "
                                 "GITHUB_TOKEN, got " +
                                 Quoted(cred.env_var));
      }
    } else {
      cred.source = CredentialSource::kFile;
      MANDATE_ASSIGN_OR_RETURN(cred.file_path, Path(*file, path + ".file"));
    }
    config->credentials.emplace(c.key, std::move(cred));
  }
  return core::OkStatus();
}

Status ConfigParser::ParseUpstreams(const Entry& e, Config* config) {
  MANDATE_ASSIGN_OR_RETURN(auto entries, Entries(e, "upstreams", core::kUpstreamsMax));
  for (const Entry& u : entries) {
    MANDATE_ASSIGN_OR_RETURN(UpstreamConfig upstream, ParseUpstream(u, *config));
    config->upstreams.emplace(u.key, std::move(upstream));
  }
  return core::OkStatus();
}

Result<UpstreamConfig> ConfigParser::ParseUpstream(const Entry& u, const Config& config) {
  if (!IsConfigName(u.key)) {
    return AtKey(u, "invalid upstream name " + Quoted(u.key) + ": " + std::string(kConfigNameRule) +
                        " (it becomes the <upstream> of action ids \"<upstream>:<tool>\")");
  }
  // Action::"<upstream>" and Action::"<class>" share one name space in policies: an upstream
  // named like a class would make its every tool a member of that class.
  if (core::ActionClassFromName(u.key).has_value()) {
    return AtKey(u, "invalid upstream name " + Quoted(u.key) +
                        ": read, write and destructive are reserved for action classes");
  }
  // Mandate's own actions (mandate:delegate, mandate:plan) must never be an upstream's tool.
  if (u.key == "mandate") {
    return AtKey(u, "invalid upstream name \"mandate\": reserved for Mandate's own actions (mandate:delegate, "
                    "mandate:plan)");
  }
  const std::string path = "upstreams." + u.key;
  const std::string where = "upstream " + Quoted(u.key);
  MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(u, path, 32));

  UpstreamConfig up;
  up.name = u.key;
  // The kind decides which keys exist, so it is checked before them: an http upstream's
  // `routes` must be reported as an unsupported kind, not as an unknown key.
  if (const Entry* x = Find(fields, "kind")) {
    MANDATE_ASSIGN_OR_RETURN(std::string kind, String(*x, path + ".kind"));
    if (kind == "http" || kind == "llm") {
      return AtValue(*x, path + ".kind: kind " + kind + " is not supported in this version " +
                             "(only mcp upstreams are)");
    }
    if (kind != "mcp") return AtValue(*x, path + ".kind: expected mcp, got " + Quoted(kind));
    up.kind = UpstreamKind::kMcp;
  }
  MANDATE_RETURN_IF_ERROR(
      CheckKeys(fields, where,
                {"kind", "command", "url", "env", "cwd", "credential", "credential_env",
                 "credential_header", "timeout", "max_inflight", "tools", "resource", "audit", "circuit_breaker",
                 "txn_token", "txn_token_audience"}));

  const Entry* command = Find(fields, "command");
  const Entry* url = Find(fields, "url");
  if ((command == nullptr) == (url == nullptr)) {
    return AtKey(u, path +
                        (command != nullptr ? ": has both command and url"
                                            : ": has neither "
                                              "command nor url") +
                        "; an mcp upstream needs exactly one: command (a list: program and "
                        "arguments of a stdio server) or url (an http:// MCP endpoint)");
  }
  if (command != nullptr) {
    up.transport = UpstreamTransport::kStdio;
    MANDATE_ASSIGN_OR_RETURN(
        up.command, StringList(*command, path + ".command", core::kUpstreamCommandArgsMax));
    if (up.command.empty() || up.command[0].empty()) {
      return AtValue(*command, path + ".command: needs at least the program to run");
    }
    up.cwd = base_dir_.string();
  } else {
    up.transport = UpstreamTransport::kHttp;
    MANDATE_ASSIGN_OR_RETURN(up.url, String(*url, path + ".url"));
    auto ok = CheckUpstreamUrl(up.url);
    if (!ok.ok()) return AtValue(*url, path + ".url: " + ok.error().message);
  }
  const bool stdio = up.transport == UpstreamTransport::kStdio;

  if (const Entry* x = Find(fields, "env")) {
    if (!stdio) return AtKey(*x, path + ".env: only stdio upstreams (command) have an environment");
    MANDATE_ASSIGN_OR_RETURN(auto vars, Entries(*x, path + ".env", core::kUpstreamEnvVarsMax));
    for (const Entry& v : vars) {
      if (!IsEnvVarName(v.key)) {
        return AtKey(v, path + ".env: invalid environment variable name " + Quoted(v.key));
      }
      MANDATE_ASSIGN_OR_RETURN(std::string value, String(v, path + ".env." + v.key));
      up.env.emplace(v.key, std::move(value));
    }
  }
  if (const Entry* x = Find(fields, "cwd")) {
    if (!stdio) return AtKey(*x, path + ".cwd: only stdio upstreams (command) have a directory");
    MANDATE_ASSIGN_OR_RETURN(up.cwd, Path(*x, path + ".cwd"));
  }

  const Entry* credential = Find(fields, "credential");
  const Entry* credential_env = Find(fields, "credential_env");
  const Entry* credential_header = Find(fields, "credential_header");
  if (credential != nullptr) {
    MANDATE_ASSIGN_OR_RETURN(up.credential, String(*credential, path + ".credential"));
    if (config.credentials.count(up.credential) == 0) {
      std::vector<std::string_view> declared;
      for (const auto& [name, unused] : config.credentials) declared.push_back(name);
      return AtValue(*credential, path + ".credential: unknown credential " +
                                      Quoted(up.credential) +
                                      (declared.empty() ? " (no credentials are declared)"
                                                        : " (declared: " + Join(declared) + ")"));
    }
  }
  if (credential_env != nullptr) {
    if (!stdio) {
      return AtKey(*credential_env, path +
                                        ".credential_env: only for stdio upstreams (command); "
                                        "an url upstream uses credential_header");
    }
    if (credential == nullptr) {
      return AtKey(*credential_env, path + ".credential_env: needs credential");
    }
    MANDATE_ASSIGN_OR_RETURN(up.credential_env, String(*credential_env, path + ".credential_env"));
    if (!IsEnvVarName(up.credential_env)) {
      return AtValue(*credential_env, path +
                                          ".credential_env: expected an environment variable "
                                          "name, got " +
                                          Quoted(up.credential_env));
    }
    if (up.env.count(up.credential_env) != 0) {
      return AtValue(*credential_env, path + ".credential_env: " + up.credential_env +
                                          " is also set under env; the secret needs it alone");
    }
  }
  if (credential_header != nullptr) {
    if (stdio) {
      return AtKey(*credential_header, path +
                                           ".credential_header: only for url upstreams; a "
                                           "stdio upstream uses credential_env");
    }
    if (credential == nullptr) {
      return AtKey(*credential_header, path + ".credential_header: needs credential");
    }
    MANDATE_ASSIGN_OR_RETURN(up.credential_header,
                             String(*credential_header, path + ".credential_header"));
    if (!IsHeaderName(up.credential_header)) {
      return AtValue(*credential_header, path +
                                             ".credential_header: expected an HTTP header "
                                             "name, got " +
                                             Quoted(up.credential_header));
    }
    if (IsReservedHeader(up.credential_header)) {
      return AtValue(*credential_header,
                     path + ".credential_header: " + Quoted(up.credential_header) +
                         " is reserved (it frames the request or carries Mandate's own state)");
    }
  } else if (!stdio && credential != nullptr) {
    up.credential_header = "Authorization";
  }
  if (stdio && credential != nullptr && credential_env == nullptr) {
    // Fail closed: a credential that reaches nobody would look configured but be ignored.
    return AtKey(*credential, path +
                                  ".credential: a stdio upstream needs credential_env, the "
                                  "environment variable of the child that receives the secret");
  }
  if (!up.credential_header.empty() && core::AsciiEqualsIgnoreCase(up.credential_header, "Authorization")) {
    up.credential_header_prefix = "Bearer ";
  }

  if (const Entry* x = Find(fields, "timeout")) {
    MANDATE_ASSIGN_OR_RETURN(up.timeout_millis, DurationMillis(*x, path + ".timeout", 1,
                                                               core::kUpstreamTimeoutMillisMax));
  }
  if (const Entry* x = Find(fields, "max_inflight")) {
    MANDATE_ASSIGN_OR_RETURN(int64_t n, Integer(*x, path + ".max_inflight", 1,
                                                static_cast<int64_t>(core::kUpstreamInflightMax)));
    up.max_inflight = static_cast<uint32_t>(n);
  }
  if (const Entry* x = Find(fields, "tools")) {
    MANDATE_RETURN_IF_ERROR(ParseTools(*x, path + ".tools", u.key, &up));
  }
  if (const Entry* x = Find(fields, "audit")) {
    MANDATE_ASSIGN_OR_RETURN(up.audit, ParseAuditPayload(*x, path + ".audit"));
  }
  if (const Entry* x = Find(fields, "circuit_breaker")) {
    const std::string cb = path + ".circuit_breaker";
    MANDATE_ASSIGN_OR_RETURN(auto cb_fields, Entries(*x, cb, 4));
    MANDATE_RETURN_IF_ERROR(CheckKeys(cb_fields, cb, {"failures", "cool_down"}));
    if (const Entry* f = Find(cb_fields, "failures")) {
      MANDATE_ASSIGN_OR_RETURN(int64_t n, Integer(*f, cb + ".failures", 0, core::kBreakerFailuresMax));
      up.breaker_failures = static_cast<uint32_t>(n);
    }
    if (const Entry* d = Find(cb_fields, "cool_down")) {
      MANDATE_ASSIGN_OR_RETURN(up.breaker_cool_down_millis,
                               DurationMillis(*d, cb + ".cool_down", 1, core::kBreakerCoolDownMillisMax));
    }
  }
  if (const Entry* x = Find(fields, "txn_token")) {
    MANDATE_ASSIGN_OR_RETURN(up.txn_token, Bool(*x, path + ".txn_token"));
  }
  up.txn_token_audience = u.key;
  if (const Entry* x = Find(fields, "txn_token_audience")) {
    MANDATE_ASSIGN_OR_RETURN(up.txn_token_audience, String(*x, path + ".txn_token_audience"));
    if (up.txn_token_audience.empty() || up.txn_token_audience.size() > core::kTxnTokenFieldBytesMax) {
      return AtValue(*x, path + ".txn_token_audience: must be 1 to " + std::to_string(core::kTxnTokenFieldBytesMax) +
                             " bytes");
    }
  }
  if (const Entry* x = Find(fields, "resource")) {
    MANDATE_ASSIGN_OR_RETURN(std::string text, String(*x, path + ".resource"));
    auto parsed = ParseResourceTemplate(text);
    if (!parsed.ok()) return AtValue(*x, path + ".resource: " + parsed.error().message);
    up.resource_type = std::move(parsed->first);
    up.resource_id_template = std::move(parsed->second);
  }
  return up;
}

Status ConfigParser::ParseTools(const Entry& e, const std::string& path,
                                const std::string& upstream, UpstreamConfig* up) {
  MANDATE_ASSIGN_OR_RETURN(auto tools, Entries(e, path, core::kToolsPerUpstreamMax));
  tools_total_ += tools.size();
  if (tools_total_ > core::kConfigToolsMax) {
    return AtKey(e, path + ": more than " + std::to_string(core::kConfigToolsMax) +
                        " tool entries over all upstreams");
  }
  for (const Entry& t : tools) {
    if (!IsConfigName(t.key)) {
      return AtKey(t, "invalid tool name " + Quoted(t.key) + ": " + std::string(kConfigNameRule) +
                          " (it becomes the <tool> of action ids \"<upstream>:<tool>\")");
    }
    std::string tool_path = path + "." + t.key;
    MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(t, tool_path, 4));
    MANDATE_RETURN_IF_ERROR(
        CheckKeys(fields, "tool " + Quoted(t.key) + " of upstream " + Quoted(upstream),
                  {"class", "audit", "timeout"}));
    const Entry* cls = Find(fields, "class");
    if (cls == nullptr) {
      return AtKey(t, tool_path + ": needs class (read, write or destructive)");
    }
    MANDATE_ASSIGN_OR_RETURN(std::string name, String(*cls, tool_path + ".class"));
    auto action_class = core::ActionClassFromName(name);
    if (!action_class) {
      return AtValue(
          *cls, tool_path + ".class: expected read, write or destructive, got " + Quoted(name));
    }
    ToolConfig tc;
    tc.action_class = *action_class;
    if (const Entry* a = Find(fields, "audit")) {
      MANDATE_ASSIGN_OR_RETURN(tc.audit, ParseAuditPayload(*a, tool_path + ".audit"));
    }
    if (const Entry* to = Find(fields, "timeout")) {
      MANDATE_ASSIGN_OR_RETURN(tc.timeout_millis, DurationMillis(*to, tool_path + ".timeout", 1,
                                                                 core::kUpstreamTimeoutMillisMax));
    }
    up->tools.emplace(t.key, std::move(tc));
  }
  return core::OkStatus();
}

Result<AuditPayloadConfig> ConfigParser::ParseAuditPayload(const Entry& e, const std::string& path) {
  AuditPayloadConfig out;
  MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(e, path, 4));
  MANDATE_RETURN_IF_ERROR(CheckKeys(fields, path, {"payload", "side_effects"}));
  if (const Entry* p = Find(fields, "payload")) {
    MANDATE_ASSIGN_OR_RETURN(std::string v, String(*p, path + ".payload"));
    if (v != "full" && v != "hash") {
      return AtValue(*p, path + ".payload: expected full or hash, got " + Quoted(v));
    }
    out.hash_only = v == "hash";
  }
  if (const Entry* se = Find(fields, "side_effects")) {
    MANDATE_ASSIGN_OR_RETURN(auto refs, Entries(*se, path + ".side_effects",
                                                core::kAuditSideEffectRulesMax));
    std::map<std::string, std::string> rules;
    for (const Entry& r : refs) {
      if (!IsConfigName(r.key)) {
        return AtKey(r, "invalid side-effect name " + Quoted(r.key) + ": " +
                            std::string(kConfigNameRule));
      }
      MANDATE_ASSIGN_OR_RETURN(std::string pointer, String(r, path + ".side_effects." + r.key));
      if (!pointer.empty() && pointer[0] != '/') {
        return AtValue(r, path + ".side_effects." + r.key +
                              ": expected a JSON pointer into the result such as "
                              "/structuredContent/html_url, got " + Quoted(pointer));
      }
      rules.emplace(r.key, std::move(pointer));
    }
    out.side_effects = std::move(rules);
  }
  return out;
}

Result<BudgetMatch> ConfigParser::ParseBudgetMatch(const Entry& e, const std::string& path,
                                                   const Config& config) {
  BudgetMatch m;
  MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(e, path, 8));
  MANDATE_RETURN_IF_ERROR(
      CheckKeys(fields, path, {"agent", "human", "upstream", "action", "class"}));
  auto upstream_known = [&](const Entry& x, std::string_view name) -> Status {
    if (config.upstreams.count(std::string(name)) != 0) return core::OkStatus();
    // A match on an upstream that does not exist would never match: a dead limit.
    return AtValue(x, path + "." + x.key + ": unknown upstream " + Quoted(name));
  };
  for (const Entry& x : fields) {
    std::string field_path = path + "." + x.key;
    MANDATE_ASSIGN_OR_RETURN(std::string value, String(x, field_path));
    if (x.key == "agent" || x.key == "human") {
      if (!IsPrincipalName(value)) {
        return AtValue(x, field_path + ": expected a name, got " + Quoted(value));
      }
      (x.key == "agent" ? m.agent : m.human) = std::move(value);
    } else if (x.key == "upstream") {
      MANDATE_RETURN_IF_ERROR(upstream_known(x, value));
      m.upstream = std::move(value);
    } else if (x.key == "action") {
      size_t colon = value.find(':');
      if (colon == std::string::npos || !IsConfigName(value.substr(0, colon)) ||
          !IsConfigName(value.substr(colon + 1))) {
        return AtValue(
            x, field_path + ": expected an action id <upstream>:<tool>, got " + Quoted(value));
      }
      MANDATE_RETURN_IF_ERROR(upstream_known(x, value.substr(0, colon)));
      m.action = std::move(value);
    } else {
      auto action_class = core::ActionClassFromName(value);
      if (!action_class) {
        return AtValue(x,
                       field_path + ": expected read, write or destructive, got " + Quoted(value));
      }
      m.action_class = *action_class;
    }
  }
  return m;
}

Status ConfigParser::ParseBudgets(const Entry& e, Config* config) {
  if (e.value.IsNull()) return core::OkStatus();
  if (!e.value.IsSequence()) return Expected(e, "budgets", "a list of budgets");
  if (e.value.size() > core::kBudgetsMax) {
    return AtValue(e, "budgets: more than " + std::to_string(core::kBudgetsMax) + " budgets");
  }
  std::set<std::string> names;
  size_t i = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++i) {
    const std::string path = "budgets[" + std::to_string(i) + "]";
    Entry item{path, e.key_node, *it};
    MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(item, path, 8));
    MANDATE_RETURN_IF_ERROR(
        CheckKeys(fields, path, {"name", "metric", "limit", "window", "scope", "match"}));
    for (std::string_view required : {"name", "metric", "limit", "window", "scope"}) {
      if (Find(fields, required) == nullptr) {
        return AtValue(item, path + ": needs " + std::string(required) +
                                 " (a budget needs name, metric, limit, window and scope)");
      }
    }
    BudgetConfig b;
    const Entry& name = *Find(fields, "name");
    MANDATE_ASSIGN_OR_RETURN(b.name, String(name, path + ".name"));
    if (!IsConfigName(b.name)) {
      return AtValue(name, path + ".name: invalid budget name " + Quoted(b.name) + ": " +
                               std::string(kConfigNameRule));
    }
    if (!names.insert(b.name).second) {
      return AtValue(name, path + ".name: duplicate budget name " + Quoted(b.name));
    }

    const Entry& metric = *Find(fields, "metric");
    MANDATE_ASSIGN_OR_RETURN(b.metric, String(metric, path + ".metric"));
    bool builtin = b.metric == "calls" || b.metric == "writes" || b.metric == "input_tokens" ||
                   b.metric == "output_tokens" || b.metric == "spend_usd_micros";
    // A custom counter is a lower-case identifier, so it cannot be confused with a typo'd
    // built-in metric in another spelling ("Calls").
    bool custom = !b.metric.empty() && b.metric.size() <= core::kConfigNameBytesMax &&
                  b.metric[0] >= 'a' && b.metric[0] <= 'z';
    for (char c : b.metric) custom = custom && ((c >= 'a' && c <= 'z') || IsDigit(c) || c == '_');
    if (!builtin && !custom) {
      return AtValue(metric, path +
                                 ".metric: expected calls, writes, input_tokens, "
                                 "output_tokens, spend_usd_micros or a custom counter name "
                                 "([a-z][a-z0-9_]*), got " +
                                 Quoted(b.metric));
    }

    MANDATE_ASSIGN_OR_RETURN(b.limit, Integer(*Find(fields, "limit"), path + ".limit", 0,
                                              std::numeric_limits<int64_t>::max()));

    const Entry& window = *Find(fields, "window");
    MANDATE_ASSIGN_OR_RETURN(std::string window_text, String(window, path + ".window"));
    if (window_text == "run") {
      b.window_kind = BudgetWindowKind::kRun;
    } else if (window_text == "1d") {
      b.window_kind = BudgetWindowKind::kCalendarDay;
    } else {
      b.window_kind = BudgetWindowKind::kRolling;
      auto millis = ParseDurationMillis(window_text);
      if (!millis.ok() || *millis < 1000) {
        return AtValue(window, path +
                                   ".window: expected run, 1d (a calendar day, UTC) or a "
                                   "rolling duration of at least 1s like 1h, got " +
                                   Quoted(window_text));
      }
      b.window_millis = *millis;
    }

    const Entry& scope = *Find(fields, "scope");
    MANDATE_ASSIGN_OR_RETURN(std::string scope_text, String(scope, path + ".scope"));
    if (scope_text == "session") {
      b.scope = BudgetScope::kSession;
    } else if (scope_text == "session_tree") {
      b.scope = BudgetScope::kSessionTree;
    } else if (scope_text == "agent") {
      b.scope = BudgetScope::kAgent;
    } else if (scope_text == "human") {
      b.scope = BudgetScope::kHuman;
    } else if (scope_text == "task") {
      b.scope = BudgetScope::kTask;
    } else {
      return AtValue(scope, path +
                                ".scope: expected session, session_tree, agent, human or "
                                "task, got " +
                                Quoted(scope_text));
    }

    if (const Entry* match = Find(fields, "match")) {
      MANDATE_ASSIGN_OR_RETURN(b.match, ParseBudgetMatch(*match, path + ".match", *config));
    }
    config->budgets.push_back(std::move(b));
  }
  return core::OkStatus();
}

Status ConfigParser::ParseApprovals(const Entry& e, Config* config) {
  MANDATE_ASSIGN_OR_RETURN(auto groups, Entries(e, "approvals", core::kApprovalGroupsMax));
  for (const Entry& g : groups) {
    if (!IsConfigName(g.key)) {
      return AtKey(
          g, "invalid approval group name " + Quoted(g.key) + ": " + std::string(kConfigNameRule));
    }
    std::string path = "approvals." + g.key;
    MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(g, path, 8));
    MANDATE_RETURN_IF_ERROR(CheckKeys(fields, "approval group " + Quoted(g.key),
                                      {"min_approvers", "exclude_requester", "wait", "expiry"}));
    ApprovalGroupConfig a;
    a.name = g.key;
    if (const Entry* x = Find(fields, "min_approvers")) {
      MANDATE_ASSIGN_OR_RETURN(
          int64_t n, Integer(*x, path + ".min_approvers", 1, core::kApprovalMinApproversMax));
      a.min_approvers = static_cast<uint32_t>(n);
    }
    if (const Entry* x = Find(fields, "exclude_requester")) {
      MANDATE_ASSIGN_OR_RETURN(a.exclude_requester, Bool(*x, path + ".exclude_requester"));
    }
    if (const Entry* x = Find(fields, "wait")) {
      MANDATE_ASSIGN_OR_RETURN(
          a.wait_millis, DurationMillis(*x, path + ".wait", 1000, core::kApprovalWaitMillisMax));
    }
    if (const Entry* x = Find(fields, "expiry")) {
      MANDATE_ASSIGN_OR_RETURN(
          a.expiry_millis, DurationMillis(*x, path + ".expiry", core::kApprovalExpiryMicrosMin / 1000,
                                          core::kApprovalExpiryMicrosMax / 1000));
    }
    if (a.expiry_millis < a.wait_millis) {
      return AtKey(g, path + ": expiry must be at least wait (a parked call never outlives its request)");
    }
    config->approvals.emplace(g.key, std::move(a));
  }
  return core::OkStatus();
}

Result<Config> ConfigParser::Parse(const YAML::Node& root) {
  Config c;
  c.config_dir = base_dir_.string();
  MANDATE_ASSIGN_OR_RETURN(auto top, Entries(root, nullptr, "", 64));
  MANDATE_RETURN_IF_ERROR(
      CheckKeys(top, "the top level",
                {"listen", "admin_listen", "data_dir", "store", "policies", "tokens", "audit",
                 "max_connections", "upstreams", "credentials", "budgets", "approvals"}));

  if (const Entry* x = Find(top, "listen")) {
    MANDATE_ASSIGN_OR_RETURN(c.listen, Listen(*x, "listen"));
  }
  if (const Entry* x = Find(top, "admin_listen")) {
    MANDATE_ASSIGN_OR_RETURN(c.admin_listen, Listen(*x, "admin_listen"));
  }
  if (c.listen.port != 0 && c.listen.port == c.admin_listen.port) {
    auto wildcard = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
    if (c.listen.host == c.admin_listen.host || wildcard(c.listen.host) ||
        wildcard(c.admin_listen.host)) {
      const Entry* x = Find(top, "admin_listen");
      if (x == nullptr) x = Find(top, "listen");
      return AtValue(*x, "admin_listen: " + c.admin_listen.ToString() +
                             " collides with listen; the agent and admin listeners need "
                             "different ports");
    }
  }

  c.data_dir = Resolve("mandate-data");
  if (const Entry* x = Find(top, "data_dir")) {
    MANDATE_ASSIGN_OR_RETURN(c.data_dir, Path(*x, "data_dir"));
  }
  if (const Entry* x = Find(top, "store")) {
    MANDATE_ASSIGN_OR_RETURN(std::string store, String(*x, "store"));
    if (StartsWithIgnoreCase(store, "postgres://") ||
        StartsWithIgnoreCase(store, "postgresql://")) {
      return AtValue(*x,
                     "store: PostgreSQL (a postgres:// URL) is not supported in this "
                     "version; use store: sqlite");
    }
    if (store != "sqlite") return AtValue(*x, "store: expected sqlite, got " + Quoted(store));
    c.store = StoreKind::kSqlite;
  }
  c.policies_dir = Resolve("policies");
  if (const Entry* x = Find(top, "policies")) {
    MANDATE_ASSIGN_OR_RETURN(c.policies_dir, Path(*x, "policies"));
  }

  c.tokens.issuer = "http://" + c.listen.ToString();
  if (const Entry* x = Find(top, "tokens")) MANDATE_RETURN_IF_ERROR(ParseTokens(*x, &c));

  c.audit_dir = (std::filesystem::path(c.data_dir) / "audit").string();
  if (const Entry* x = Find(top, "audit")) {
    MANDATE_ASSIGN_OR_RETURN(auto fields, Entries(*x, "audit", 4));
    MANDATE_RETURN_IF_ERROR(CheckKeys(
        fields, "audit", {"dir", "origin", "checkpoint_records", "checkpoint_interval"}));
    if (const Entry* dir = Find(fields, "dir")) {
      MANDATE_ASSIGN_OR_RETURN(c.audit_dir, Path(*dir, "audit.dir"));
    }
    if (const Entry* o = Find(fields, "origin")) {
      MANDATE_ASSIGN_OR_RETURN(c.audit_origin, String(*o, "audit.origin"));
      if (!audit::ValidNoteName(c.audit_origin)) {
        return AtValue(*o, "audit.origin: must be 1-128 printable ASCII characters without "
                           "space or '+' (e.g. example.com/mandate/node-1)");
      }
    }
    if (const Entry* n = Find(fields, "checkpoint_records")) {
      MANDATE_ASSIGN_OR_RETURN(int64_t records,
                               Integer(*n, "audit.checkpoint_records", 1,
                                       static_cast<int64_t>(core::kAuditCheckpointRecordsMax)));
      c.audit_checkpoint_records = static_cast<uint64_t>(records);
    }
    if (const Entry* t = Find(fields, "checkpoint_interval")) {
      MANDATE_ASSIGN_OR_RETURN(int64_t millis,
                               DurationMillis(*t, "audit.checkpoint_interval",
                                              core::kAuditCheckpointIntervalMillisMin,
                                              core::kAuditCheckpointIntervalMillisMax));
      c.audit_checkpoint_interval_millis = millis;
    }
  }
  if (const Entry* x = Find(top, "max_connections")) {
    MANDATE_ASSIGN_OR_RETURN(int64_t n, Integer(*x, "max_connections", 1, core::kConnectionsMax));
    c.max_connections = static_cast<uint32_t>(n);
  }

  // Credentials first: upstreams refer to them, wherever they appear in the file.
  if (const Entry* x = Find(top, "credentials")) {
    MANDATE_RETURN_IF_ERROR(ParseCredentials(*x, &c));
  }
  if (const Entry* x = Find(top, "upstreams")) MANDATE_RETURN_IF_ERROR(ParseUpstreams(*x, &c));

  const Entry* budgets = Find(top, "budgets");
  if (budgets != nullptr) MANDATE_RETURN_IF_ERROR(ParseBudgets(*budgets, &c));
  const Entry* approvals = Find(top, "approvals");
  if (approvals != nullptr) MANDATE_RETURN_IF_ERROR(ParseApprovals(*approvals, &c));

  return c;
}

}  // namespace

std::string ListenAddress::ToString() const {
  bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<int64_t> ParseDurationMillis(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Invalid("invalid duration " + Quoted(text) + ": " + std::string(why));
  };
  if (text.empty()) return bad("it is empty (write e.g. 500ms, 10s, 15m, 24h or 1d)");
  if (text[0] == '-') return bad("it must not be negative");
  size_t digits = 0;
  while (digits < text.size() && IsDigit(text[digits])) ++digits;
  if (digits == 0) return bad("expected a number followed by ms, s, m, h or d");
  constexpr size_t kDigitsMax = 15;  // keeps value * 86400000 far inside int64
  if (digits > kDigitsMax) return bad("it is too large");
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) value = value * 10 + (text[i] - '0');
  std::string_view unit = text.substr(digits);
  if (unit.empty()) return bad("it needs a unit: ms, s, m, h or d");
  if (unit[0] == '.') return bad("fractions are not supported; use a smaller unit, like 1500ms");
  int64_t unit_millis = 0;
  if (unit == "ms") {
    unit_millis = 1;
  } else if (unit == "s") {
    unit_millis = 1000;
  } else if (unit == "m") {
    unit_millis = 60 * 1000;
  } else if (unit == "h") {
    unit_millis = 60 * 60 * 1000;
  } else if (unit == "d") {
    unit_millis = 24 * 60 * 60 * 1000;
  } else {
    return bad("unknown unit " + Quoted(unit) + " (expected ms, s, m, h or d)");
  }
  if (value > std::numeric_limits<int64_t>::max() / unit_millis) return bad("it is too large");
  return value * unit_millis;
}

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  MANDATE_ASSIGN_OR_RETURN(HostPort hp, SplitHostPort(text, /*port_required=*/true));
  return ListenAddress{std::move(hp.host), *hp.port};
}

Result<Config> ParseConfig(std::string_view yaml_text, const std::string& source_name) {
  if (yaml_text.size() > core::kConfigBytesMax) {
    return core::MakeError(ErrorCode::kPayloadTooLarge,
                           source_name + ": the config is larger than " +
                               std::to_string(core::kConfigBytesMax) + " bytes");
  }
  if (yaml_text.find('\0') != std::string_view::npos) {
    return Invalid(source_name + ": the config contains a NUL byte; it must be UTF-8 text");
  }
  // Invariant: nothing below lets an exception escape (yaml-cpp and std::filesystem throw).
  try {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::path(source_name).parent_path();
    std::filesystem::path base =
        dir.empty() ? std::filesystem::current_path(ec) : std::filesystem::absolute(dir, ec);
    if (ec) {
      return core::MakeError(ErrorCode::kInternal, source_name +
                                                       ": cannot determine the config "
                                                       "directory: " +
                                                       ec.message());
    }
    std::string base_text = base.lexically_normal().string();
    while (base_text.size() > 1 && base_text.back() == '/') base_text.pop_back();

    std::vector<YAML::Node> documents = YAML::LoadAll(std::string(yaml_text));
    ConfigParser parser(source_name, std::filesystem::path(base_text));
    if (documents.size() > 1) {
      const YAML::Mark mark = documents[1].Mark();
      std::string where = source_name;
      if (!mark.is_null()) where += ":" + std::to_string(mark.line + 1);
      return Invalid(where + ": the config must be one YAML document; found a second one");
    }
    return parser.Parse(documents.empty() ? YAML::Node() : documents[0]);
  } catch (const YAML::DeepRecursion& e) {
    std::string where = source_name;
    if (!e.mark.is_null()) where += ":" + std::to_string(e.mark.line + 1);
    return Invalid(where + ": invalid YAML: nested too deeply");
  } catch (const YAML::Exception& e) {
    std::string where = source_name;
    if (!e.mark.is_null()) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    return Invalid(where + ": invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    return core::MakeError(ErrorCode::kInternal, source_name + ": " + e.what());
  } catch (...) {
    return core::MakeError(ErrorCode::kInternal, source_name + ": unexpected failure");
  }
}

Result<Config> LoadConfig(const std::string& path) {
  if (path.empty()) return core::MakeError(ErrorCode::kNotFound, "the config file path is empty");
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    return core::MakeError(ErrorCode::kNotFound,
                           "cannot open config file " + Quoted(path) + ": " +
                               std::error_code(errno, std::generic_category()).message());
  }
  // Read at most one byte past the limit: enough to tell "too large" without reading it all.
  std::string text;
  std::array<char, 64 * 1024> buffer;
  while (text.size() <= core::kConfigBytesMax) {
    size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    text.append(buffer.data(), n);
    if (n < buffer.size()) break;
  }
  if (std::ferror(file.get())) {
    return core::MakeError(ErrorCode::kNotFound,
                           "cannot read config file " + Quoted(path) + ": " +
                               std::error_code(errno, std::generic_category()).message());
  }
  if (text.size() > core::kConfigBytesMax) {
    return core::MakeError(
        ErrorCode::kPayloadTooLarge,
        path + ": the config is larger than " + std::to_string(core::kConfigBytesMax) + " bytes");
  }
  return ParseConfig(text, path);
}

}  // namespace mandate::server
