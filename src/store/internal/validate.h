// Input validation shared by every Store backend, so SQLite and PostgreSQL accept exactly
// the same values (store.h states the rules).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/store/store.h"

namespace mandate::store::internal {

// True when `s` is valid UTF-8 without control characters (C0, DEL, C1).
bool IsPrintableUtf8(std::string_view s);

// `what` names the field in the error, e.g. "human name".
core::Status ValidateName(std::string_view what, std::string_view name);

// Validates and returns the groups as a sorted set.
core::Result<std::vector<std::string>> NormalizeGroups(const std::vector<std::string>& groups);

core::Status ValidateHuman(const Human& human);
core::Status ValidateAgent(const Agent& agent);
// Checks the session on its own (not against its parent).
core::Status ValidateSession(const Session& session);
core::Status ValidateRevocation(const Revocation& revocation);

// A JSON array of strings, as stored in list columns.
std::string StringListJson(const std::vector<std::string>& items);
// Errors: kInternal (the column holds something else: a corrupt row).
core::Result<std::vector<std::string>> ParseStringListJson(std::string_view text);

}  // namespace mandate::store::internal
