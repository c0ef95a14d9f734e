#include "mandate/policy/policy_set.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"
#include "policy/ast.h"
#include "policy/parser.h"
#include "policy/scope_index.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;
using core::Result;

std::string_view BaseName(std::string_view path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

core::Error DuplicateId(const Policy& first, const Policy& second) {
  return MakeError(ErrorCode::kConflict, "duplicate policy id '" + second.id + "' (" +
                                             first.location.ToString() + " and " +
                                             second.location.ToString() + ")");
}

}  // namespace

std::string SourceLocation::ToString() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const std::string* Policy::FindAnnotation(std::string_view key) const {
  auto it = annotations.find(key);
  return it == annotations.end() ? nullptr : &it->second;
}

Result<PolicySet> PolicySet::ParseNamed(std::string_view text, std::string_view display_name,
                                        std::string_view id_file) {
  if (text.size() > core::kPolicyFileBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     std::string(display_name) + ": policy file is larger than " +
                         std::to_string(core::kPolicyFileBytesMax) + " bytes");
  }
  PolicySet parsed;
  MANDATE_ASSIGN_OR_RETURN(parsed.policies_, ParsePolicies(text, display_name, id_file));
  // Merging into an empty set builds the indexes and checks ids are unique within the file.
  PolicySet set;
  MANDATE_RETURN_IF_ERROR(set.Merge(std::move(parsed)));
  return set;
}

Result<PolicySet> PolicySet::Parse(std::string_view text, std::string_view filename) {
  return ParseNamed(text, filename, BaseName(filename));
}

Result<PolicySet> PolicySet::LoadDir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return MakeError(ErrorCode::kNotFound,
                     "cannot list policy directory " + dir + ": " + ec.message());
  }
  std::vector<std::string> names;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::directory_entry& entry = *it;
    std::string name = entry.path().filename().string();
    if (name.size() <= 6 || name.substr(name.size() - 6) != ".cedar") continue;
    std::error_code type_ec;
    if (!entry.is_regular_file(type_ec)) continue;  // follows symlinks
    if (names.size() >= core::kPolicyFilesMax) {
      return MakeError(ErrorCode::kPayloadTooLarge,
                       "policy directory " + dir + " holds more than " +
                           std::to_string(core::kPolicyFilesMax) + " *.cedar files");
    }
    names.push_back(std::move(name));
  }
  if (ec) {
    return MakeError(ErrorCode::kNotFound,
                     "cannot list policy directory " + dir + ": " + ec.message());
  }
  if (names.empty()) {
    return MakeError(ErrorCode::kNotFound, "no *.cedar files in policy directory " + dir);
  }
  std::sort(names.begin(), names.end());

  PolicySet set;
  std::string text;
  // What was loaded, for the audit log's policy.loaded: name, length and bytes of each file.
  std::string digest_input;
  for (const std::string& name : names) {
    std::string path = (fs::path(dir) / name).string();
    std::ifstream in(path, std::ios::binary);
    if (!in) return MakeError(ErrorCode::kInternal, "cannot read policy file " + path);
    // Read at most one byte past the limit: enough to reject an oversize file (even one that
    // grows while we read) without reading all of it.
    text.assign(core::kPolicyFileBytesMax + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) return MakeError(ErrorCode::kInternal, "cannot read policy file " + path);
    text.resize(static_cast<size_t>(in.gcount()));
    MANDATE_ASSIGN_OR_RETURN(PolicySet file_set, ParseNamed(text, path, name));
    MANDATE_RETURN_IF_ERROR(set.Append(std::move(file_set)));
    digest_input.append(name).push_back('\0');
    digest_input.append(std::to_string(text.size())).push_back('\0');
    digest_input.append(text);
  }
  set.source_sha256_ = core::Sha256Hex(digest_input);
  set.BuildScopeIndex();
  return set;
}

core::Status PolicySet::Merge(PolicySet other) {
  MANDATE_RETURN_IF_ERROR(Append(std::move(other)));
  BuildScopeIndex();
  return core::OkStatus();
}

void PolicySet::BuildScopeIndex() {
  scope_index_ = policies_.empty() ? nullptr : std::make_shared<const ScopeIndex>(policies_);
}

core::Status PolicySet::Append(PolicySet other) {
  if (policies_.size() + other.policies_.size() > core::kPoliciesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "more than " + std::to_string(core::kPoliciesMax) + " policies");
  }
  // Check every id before changing anything, so that a failed merge leaves this set as it was.
  std::map<std::string_view, const Policy*, std::less<>> incoming;
  for (const Policy& p : other.policies_) {
    if (const Policy* existing = Find(p.id)) return DuplicateId(*existing, p);
    auto [pos, inserted] = incoming.emplace(p.id, &p);
    if (!inserted) return DuplicateId(*pos->second, p);
  }
  policies_.reserve(policies_.size() + other.policies_.size());
  for (Policy& p : other.policies_) {
    index_.emplace(p.id, policies_.size());
    policies_.push_back(std::move(p));
  }
  return core::OkStatus();
}

const Policy* PolicySet::Find(std::string_view id) const {
  auto it = index_.find(id);
  return it == index_.end() ? nullptr : &policies_[it->second];
}

}  // namespace mandate::policy
