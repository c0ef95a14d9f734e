#include "mandate/broker/credentials.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <unordered_map>
#include <utility>

#include "broker/internal/multi_match.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"

namespace mandate::broker {

struct Scrubber::State {
  std::vector<internal::Pattern> forms;  // no two with the same bytes
  internal::MultiMatcher matcher;        // of `forms`
};

namespace {

using core::ErrorCode;
using core::MakeError;

bool IsAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// Either base64 alphabet (RFC 4648 sections 4 and 5); '=' carries no bits.
bool IsBase64Char(unsigned char c) {
  return IsAsciiAlnum(c) || c == '+' || c == '/' || c == '-' || c == '_';
}

// One percent-encoder's choices: which bytes besides ASCII letters and digits it keeps, and
// whether it writes a space as '+'.
struct PercentStyle {
  std::string_view kept;
  bool space_as_plus;
};
constexpr PercentStyle kPercentStyles[] = {
    {"-_.~", false},       // RFC 3986 unreserved; Python quote(safe=''), Go PathEscape
    {"-_.~", true},        // Python quote_plus, Go QueryEscape
    {"-_.!~*'()", false},  // JavaScript encodeURIComponent
    {"*-._", true},        // WHATWG x-www-form-urlencoded (URLSearchParams), Java URLEncoder
    {"-_.~/", false},      // Python quote (safe='/')
};

std::string PercentEncode(std::string_view s, const PercentStyle& style, bool lowercase) {
  std::string_view hex = lowercase ? "0123456789abcdef" : "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool kept = style.kept.find(static_cast<char>(c)) != std::string_view::npos;
    if (IsAsciiAlnum(c) || kept) {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ' && style.space_as_plus) {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// The inside of a JSON string as core::Json::Dump (and JSON.stringify) writes it; with
// escape_slash, every '/' as "\/" too (PHP json_encode's default). The writer never escapes
// '/', so every '/' in its output is a literal one.
std::string JsonEscape(std::string_view s, bool escape_slash) {
  std::string quoted;
  core::AppendJsonString(s, &quoted);
  std::string out = quoted.substr(1, quoted.size() - 2);
  if (!escape_slash) return out;
  std::string slashed;
  for (char c : out) {
    if (c == '/') slashed.push_back('\\');
    slashed.push_back(c);
  }
  return slashed;
}

std::string ToUpper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

// Where the core of the base64 of (k filler bytes + a secret of `secret_bytes` bytes) lies,
// in characters of that encoding. Character j carries bits [6j, 6j + 6) of the bytes: it
// depends on the filler while 6j < 8k, and it is complete (does not depend on what follows
// the secret) while 6j + 6 <= 8(k + secret_bytes).
constexpr size_t Base64CoreBegin(size_t k) { return (8 * k + 5) / 6; }
constexpr size_t Base64CoreEnd(size_t k, size_t secret_bytes) { return 8 * (k + secret_bytes) / 6; }
constexpr size_t Base64CoreChars(size_t k, size_t secret_bytes) {
  return Base64CoreEnd(k, secret_bytes) - Base64CoreBegin(k);
}
constexpr bool AllBase64CoresReach(size_t secret_bytes, size_t chars) {
  return Base64CoreChars(0, secret_bytes) >= chars && Base64CoreChars(1, secret_bytes) >= chars &&
         Base64CoreChars(2, secret_bytes) >= chars;
}
static_assert(AllBase64CoresReach(kSecretBytesMin, 10), "the header promises 10 characters");
static_assert(AllBase64CoresReach(7, kScrubFormCharsMin) && !AllBase64CoresReach(6, kScrubFormCharsMin),
              "from 7 bytes on, and only from there, all three cores are matched");

// Every form of the secret that Scrubber matches (the header lists them), duplicates included.
std::vector<internal::Pattern> FormsOf(std::string_view secret) {
  std::vector<internal::Pattern> forms;
  forms.push_back({std::string(secret), 0, 0});  // the raw form: matched at any length
  std::vector<internal::Pattern> derived;
  for (const PercentStyle& style : kPercentStyles) {
    derived.push_back({PercentEncode(secret, style, /*lowercase=*/false), 0, 0});
    derived.push_back({PercentEncode(secret, style, /*lowercase=*/true), 0, 0});
  }
  std::string json = JsonEscape(secret, /*escape_slash=*/false);
  derived.push_back({JsonEscape(secret, /*escape_slash=*/true), 0, 0});
  derived.push_back({JsonEscape(json, /*escape_slash=*/false), 0, 0});
  derived.push_back({std::move(json), 0, 0});
  std::string hex = core::HexEncode(secret);
  derived.push_back({ToUpper(hex), 0, 0});
  derived.push_back({std::move(hex), 0, 0});
  for (size_t k = 0; k < 3; ++k) {
    std::string shifted(k, '\0');
    shifted.append(secret);
    size_t begin = Base64CoreBegin(k);
    size_t end = Base64CoreEnd(k, secret.size());
    // Widen over the character that mixes filler bits with the secret's first bits (there is
    // one iff k != 0: 8k is not a multiple of 6) and over the one that mixes the secret's
    // last bits with whatever follows (iff the secret's bits do not end on a character).
    uint8_t slack_left = (8 * k) % 6 != 0 ? 1 : 0;
    uint8_t slack_right = (8 * (k + secret.size())) % 6 != 0 ? 1 : 0;
    for (const std::string& enc : {core::Base64Encode(shifted), core::Base64UrlEncode(shifted)}) {
      derived.push_back({enc.substr(begin, end - begin), slack_left, slack_right});
    }
  }
  for (internal::Pattern& p : derived) {
    if (p.bytes.size() >= kScrubFormCharsMin) forms.push_back(std::move(p));
  }
  return forms;
}

}  // namespace

void Scrubber::Add(std::string_view secret) { AddAll({secret}); }

void Scrubber::AddAll(const std::vector<std::string_view>& secrets) {
  auto next = std::make_shared<State>();
  if (state_ != nullptr) next->forms = state_->forms;
  // Forms often coincide (most percent-encodings of a plain token are the token itself):
  // one copy each, with the largest slacks, keeps the matcher small.
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < next->forms.size(); ++i) index.emplace(next->forms[i].bytes, i);
  for (std::string_view secret : secrets) {
    if (secret.empty()) continue;
    for (internal::Pattern& form : FormsOf(secret)) {
      auto [it, inserted] = index.emplace(form.bytes, next->forms.size());
      if (inserted) {
        next->forms.push_back(std::move(form));
      } else {
        internal::Pattern& same = next->forms[it->second];
        same.slack_left = std::max(same.slack_left, form.slack_left);
        same.slack_right = std::max(same.slack_right, form.slack_right);
      }
    }
  }
  if (next->forms.empty()) return;  // nothing but empty secrets so far
  next->matcher = internal::MultiMatcher(next->forms);
  state_ = std::move(next);
}

std::string Scrubber::Scrub(std::string_view text) const {
  if (state_ == nullptr) return std::string(text);
  // The union of the (widened) matches, as disjoint [begin, end) spans in text order. Hits
  // come in increasing `end` order but a later one may start earlier (it is longer), so it
  // swallows the spans it reaches back to. Each span is pushed and popped at most once:
  // linear in the number of hits. Spans are at least a byte apart and a byte long, so there
  // are at most half as many as bytes, fewer the longer the shortest form.
  auto is_base64_at = [&](size_t i) { return IsBase64Char(static_cast<unsigned char>(text[i])); };
  std::vector<std::pair<size_t, size_t>> spans;
  state_->matcher.Scan(text, [&](const internal::Hit& h) {
    size_t begin = h.begin;
    size_t end = h.end;
    // Widen over the base64 characters that mix a secret's first or last bits with the bits
    // of its neighbours (FormsOf). A byte outside the alphabets carries no bits: stop there.
    for (uint8_t i = 0; i < h.slack_left && begin > 0 && is_base64_at(begin - 1); ++i) --begin;
    for (uint8_t i = 0; i < h.slack_right && end < text.size() && is_base64_at(end); ++i) ++end;
    while (!spans.empty() && spans.back().second >= begin) {
      begin = std::min(begin, spans.back().first);
      end = std::max(end, spans.back().second);
      spans.pop_back();
    }
    spans.emplace_back(begin, end);
    return true;
  });
  if (spans.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t copied = 0;
  for (const auto& [begin, end] : spans) {
    out.append(text.substr(copied, begin - copied));
    out.append(kRedacted);
    copied = end;
  }
  out.append(text.substr(copied));
  return out;
}

bool Scrubber::ContainsSecret(std::string_view text) const {
  return state_ != nullptr && state_->matcher.ContainsAny(text);
}

core::Json Scrubber::ScrubJson(const core::Json& value) const {
  if (state_ == nullptr) return value;
  switch (value.type()) {
    case core::Json::Type::kString:
      return core::Json(Scrub(std::string_view(value.as_string())));
    case core::Json::Type::kArray: {
      core::Json::Array out;
      out.reserve(value.as_array().size());
      for (const auto& e : value.as_array()) out.push_back(ScrubJson(e));
      return core::Json(std::move(out));
    }
    case core::Json::Type::kObject: {
      core::Json::Object out;
      out.reserve(value.as_object().size());
      for (const auto& [k, v] : value.as_object()) out.emplace_back(Scrub(std::string_view(k)), ScrubJson(v));
      return core::Json(std::move(out));
    }
    default:
      return value;
  }
}

core::Result<std::unique_ptr<CredentialStore>> CredentialStore::Load(const std::vector<CredentialSource>& sources,
                                                                    const Getenv& getenv_fn) {
  auto store = std::make_unique<CredentialStore>();
  std::vector<std::string> loaded;
  for (const CredentialSource& src : sources) {
    std::string secret;
    if (!src.env.empty()) {
      const char* v = getenv_fn(src.env.c_str());
      if (v == nullptr || *v == '\0') {
        return MakeError(ErrorCode::kBadRequest,
                         "credential \"" + src.name + "\": environment variable " + src.env + " is not set");
      }
      secret = v;
    } else if (!src.file.empty()) {
      struct stat st{};
      if (stat(src.file.c_str(), &st) != 0) {
        return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\": cannot read " + src.file);
      }
      if ((st.st_mode & 077) != 0) {
        return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\": " + src.file +
                                                     " is readable by group or others (chmod 600 it)");
      }
      // Bounded read (the file may be a FIFO or a device, whose st_size says nothing): room
      // for the longest secret, a CRLF after it, and one byte to tell that it is longer.
      std::ifstream in(src.file, std::ios::binary);
      secret.resize(kSecretBytesMax + 3);
      in.read(secret.data(), static_cast<std::streamsize>(secret.size()));
      if (in.bad() || (in.fail() && !in.eof())) {
        return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\": cannot read " + src.file);
      }
      if (static_cast<size_t>(in.gcount()) == secret.size()) {
        return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" is longer than " +
                                                     std::to_string(kSecretBytesMax) + " bytes");
      }
      secret.resize(static_cast<size_t>(in.gcount()));
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    } else {
      return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" has neither env nor file");
    }
    if (secret.size() < kSecretBytesMin) {
      return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" is shorter than " +
                                                   std::to_string(kSecretBytesMin) + " bytes");
    }
    if (secret.size() > kSecretBytesMax) {
      return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" is longer than " +
                                                   std::to_string(kSecretBytesMax) + " bytes");
    }
    loaded.push_back(secret);
    store->secrets_[src.name] = std::move(secret);
  }
  // Every secret read, even one a later source of the same name replaced in secrets_; one
  // matcher build for all of them (each Add would rebuild it).
  store->scrubber_.AddAll(std::vector<std::string_view>(loaded.begin(), loaded.end()));
  return store;
}

core::Result<std::string> CredentialStore::Get(std::string_view name) const {
  auto it = secrets_.find(name);
  if (it == secrets_.end()) return MakeError(ErrorCode::kNotFound, "no credential named \"" + std::string(name) + "\"");
  return it->second;
}

}  // namespace mandate::broker
