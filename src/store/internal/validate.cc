#include "store/internal/validate.h"

#include <algorithm>

#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::store::internal {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr std::string_view kKinds[] = {"session", "agent", "human", "task"};

core::Status ValidateText(std::string_view what, std::string_view text, size_t bytes_max,
                          bool allow_empty) {
  if (text.empty()) {
    if (allow_empty) return core::OkStatus();
    return MakeError(ErrorCode::kBadRequest, std::string(what) + " must not be empty");
  }
  if (text.size() > bytes_max) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + " is longer than " + std::to_string(bytes_max) + " bytes");
  }
  if (!IsPrintableUtf8(text)) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + " must be UTF-8 without control characters");
  }
  return core::OkStatus();
}

}  // namespace

bool IsPrintableUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      len = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      len = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMinForLen[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLen[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) return false;
    i += len;
  }
  return true;
}

core::Status ValidateName(std::string_view what, std::string_view name) {
  MANDATE_RETURN_IF_ERROR(ValidateText(what, name, core::kNameBytesMax, false));
  if (name.front() == ' ' || name.back() == ' ') {
    // "alice" and "alice " must not be two principals that look the same.
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + " must not start or end with a space");
  }
  return core::OkStatus();
}

core::Result<std::vector<std::string>> NormalizeGroups(const std::vector<std::string>& groups) {
  if (groups.size() > core::kGroupsPerPrincipalMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "more than " + std::to_string(core::kGroupsPerPrincipalMax) + " groups");
  }
  for (const std::string& g : groups) MANDATE_RETURN_IF_ERROR(ValidateName("group name", g));
  std::vector<std::string> out = groups;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

core::Status ValidateHuman(const Human& human) {
  MANDATE_RETURN_IF_ERROR(ValidateName("human name", human.name));
  MANDATE_RETURN_IF_ERROR(NormalizeGroups(human.groups));
  return core::OkStatus();
}

core::Status ValidateAgent(const Agent& agent) {
  MANDATE_RETURN_IF_ERROR(ValidateName("agent name", agent.name));
  MANDATE_RETURN_IF_ERROR(ValidateName("agent owner", agent.owner));
  MANDATE_RETURN_IF_ERROR(NormalizeGroups(agent.groups));
  return core::OkStatus();
}

core::Status ValidateSession(const Session& s) {
  MANDATE_RETURN_IF_ERROR(ValidateName("session id", s.sid));
  if (!s.parent_sid.empty())
    MANDATE_RETURN_IF_ERROR(ValidateName("parent session id", s.parent_sid));
  MANDATE_RETURN_IF_ERROR(ValidateName("root session id", s.root_sid));
  MANDATE_RETURN_IF_ERROR(ValidateName("session agent", s.agent));
  MANDATE_RETURN_IF_ERROR(ValidateName("session human", s.human));
  if (!s.task.empty()) MANDATE_RETURN_IF_ERROR(ValidateName("session task", s.task));
  if (s.scope.size() > core::kScopeEntriesMax) {
    return MakeError(ErrorCode::kBadRequest,
                     "more than " + std::to_string(core::kScopeEntriesMax) + " scope entries");
  }
  for (const std::string& entry : s.scope) {
    MANDATE_RETURN_IF_ERROR(ValidateText("scope entry", entry, core::kScopeEntryBytesMax, false));
  }
  if (!s.model.is_null() && !s.model.is_object()) {
    return MakeError(ErrorCode::kBadRequest, "session model must be null or an object");
  }
  if (s.model.Canonical().size() > core::kTokenBytesMax) {
    return MakeError(ErrorCode::kBadRequest, "session model is larger than a token may be");
  }
  if (s.depth > core::kDelegationDepthMax) {
    return MakeError(ErrorCode::kBadRequest, "delegation depth " + std::to_string(s.depth) +
                                                 " exceeds " +
                                                 std::to_string(core::kDelegationDepthMax));
  }
  if (s.parent_sid.empty() && (s.root_sid != s.sid || s.depth != 0)) {
    return MakeError(ErrorCode::kBadRequest,
                     "a root session must have root_sid == sid and depth 0");
  }
  if (!s.parent_sid.empty() && (s.depth == 0 || s.parent_sid == s.sid)) {
    return MakeError(ErrorCode::kBadRequest,
                     "a delegated session must have depth > 0 and a parent other than itself");
  }
  if (s.expires_at < s.created_at) {
    return MakeError(ErrorCode::kBadRequest, "session expires before it is created");
  }
  MANDATE_RETURN_IF_ERROR(
      ValidateText("session dpop_jkt", s.dpop_jkt, core::kDpopJktBytesMax, true));
  return core::OkStatus();
}

core::Status ValidateRevocation(const Revocation& r) {
  if (std::find(std::begin(kKinds), std::end(kKinds), r.kind) == std::end(kKinds)) {
    return MakeError(ErrorCode::kBadRequest,
                     "revocation kind must be session, agent, human or task");
  }
  MANDATE_RETURN_IF_ERROR(ValidateName("revocation subject", r.subject));
  MANDATE_RETURN_IF_ERROR(
      ValidateText("revocation reason", r.reason, core::kRevocationReasonBytesMax, true));
  return core::OkStatus();
}

std::string StringListJson(const std::vector<std::string>& items) {
  core::Json arr = core::Json::MakeArray();
  for (const std::string& s : items) arr.Push(s);
  return arr.Canonical();
}

core::Result<std::vector<std::string>> ParseStringListJson(std::string_view text) {
  auto parsed = core::Json::Parse(text);
  if (!parsed.ok() || !parsed->is_array()) {
    return MakeError(ErrorCode::kInternal, "corrupt list column in the store");
  }
  std::vector<std::string> out;
  for (const core::Json& e : parsed->as_array()) {
    if (!e.is_string()) return MakeError(ErrorCode::kInternal, "corrupt list column in the store");
    out.push_back(e.as_string());
  }
  return out;
}

}  // namespace mandate::store::internal
