#include "mandate/broker/credentials.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "mandate/core/encoding.h"

namespace mandate::broker {
namespace {

using core::ErrorCode;
using core::MakeError;

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

void ReplaceAll(std::string* text, std::string_view needle) {
  size_t pos = 0;
  while ((pos = text->find(needle, pos)) != std::string::npos) {
    text->replace(pos, needle.size(), kRedacted);
    pos += kRedacted.size();
  }
}

}  // namespace

void Scrubber::Add(std::string_view secret) {
  std::string raw(secret);
  for (std::string form : {raw, core::Base64Encode(raw), core::Base64UrlEncode(raw), PercentEncode(raw)}) {
    // Trailing base64 padding varies with context; match the unpadded body.
    while (!form.empty() && form.back() == '=') form.pop_back();
    if (form.size() >= kSecretBytesMin && std::find(needles_.begin(), needles_.end(), form) == needles_.end()) {
      needles_.push_back(std::move(form));
    }
  }
  std::sort(needles_.begin(), needles_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string Scrubber::Scrub(std::string_view text) const {
  std::string out(text);
  for (const std::string& n : needles_) ReplaceAll(&out, n);
  return out;
}

bool Scrubber::ContainsSecret(std::string_view text) const {
  for (const std::string& n : needles_) {
    if (text.find(n) != std::string_view::npos) return true;
  }
  return false;
}

core::Json Scrubber::ScrubJson(const core::Json& value) const {
  if (needles_.empty()) return value;
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
      std::ifstream in(src.file, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      if (!in.good() && !in.eof()) {
        return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\": cannot read " + src.file);
      }
      secret = ss.str();
      while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    } else {
      return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" has neither env nor file");
    }
    if (secret.size() < kSecretBytesMin) {
      return MakeError(ErrorCode::kBadRequest, "credential \"" + src.name + "\" is shorter than " +
                                                   std::to_string(kSecretBytesMin) + " bytes");
    }
    store->scrubber_.Add(secret);
    store->secrets_[src.name] = std::move(secret);
  }
  return store;
}

core::Result<std::string> CredentialStore::Get(std::string_view name) const {
  auto it = secrets_.find(name);
  if (it == secrets_.end()) return MakeError(ErrorCode::kNotFound, "no credential named \"" + std::string(name) + "\"");
  return it->second;
}

}  // namespace mandate::broker
