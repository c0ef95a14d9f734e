#include "mandate/revocation/revocation_set.h"

#include <mutex>

namespace mandate::revocation {

std::string_view KindName(Kind k) {
  switch (k) {
    case Kind::kSession:
      return "session";
    case Kind::kAgent:
      return "agent";
    case Kind::kHuman:
      return "human";
    case Kind::kTask:
      return "task";
  }
  return "session";
}

std::optional<Kind> KindFromName(std::string_view name) {
  if (name == "session") return Kind::kSession;
  if (name == "agent") return Kind::kAgent;
  if (name == "human") return Kind::kHuman;
  if (name == "task") return Kind::kTask;
  return std::nullopt;
}

core::Result<std::unique_ptr<RevocationSet>> RevocationSet::Load(store::Store& store) {
  MANDATE_ASSIGN_OR_RETURN(auto revocations, store.ListRevocations());
  auto set = std::make_unique<RevocationSet>();
  std::unique_lock lock(set->mu_);
  for (const auto& r : revocations) {
    auto kind = KindFromName(r.kind);
    if (!kind) return core::MakeError(core::ErrorCode::kInternal, "store holds a revocation of unknown kind \"" + r.kind + "\"");
    set->AddLocked(*kind, r.subject);
  }
  return set;
}

void RevocationSet::AddLocked(Kind kind, std::string subject) {
  sets_[static_cast<size_t>(kind)].insert(std::move(subject));
}

core::Result<std::vector<std::string>> RevocationSet::Revoke(store::Store& store, Kind kind,
                                                            const std::string& subject,
                                                            const std::string& reason,
                                                            int64_t at_unix_seconds) {
  std::vector<std::string> affected;
  if (kind == Kind::kSession) {
    MANDATE_ASSIGN_OR_RETURN(affected, store.RevokeSessionTree(subject, at_unix_seconds, reason));
  } else {
    MANDATE_RETURN_IF_ERROR(store.AddRevocation(
        store::Revocation{std::string(KindName(kind)), subject, at_unix_seconds, reason}));
  }
  // Invariant: published only after it is durable, so a restart never forgets a revocation
  // that a caller was told succeeded.
  std::unique_lock lock(mu_);
  AddLocked(kind, subject);
  return affected;
}

bool RevocationSet::Contains(Kind kind, std::string_view subject) const {
  std::shared_lock lock(mu_);
  const auto& set = sets_[static_cast<size_t>(kind)];
  return set.find(subject) != set.end();
}

std::optional<Kind> RevocationSet::Check(const Subjects& s) const {
  std::shared_lock lock(mu_);
  auto has = [this](Kind k, std::string_view v) {
    if (v.empty()) return false;
    const auto& set = sets_[static_cast<size_t>(k)];
    return set.find(v) != set.end();
  };
  if (has(Kind::kSession, s.sid)) return Kind::kSession;
  for (std::string_view a : s.ancestor_sids) {
    if (has(Kind::kSession, a)) return Kind::kSession;
  }
  if (has(Kind::kAgent, s.agent)) return Kind::kAgent;
  if (has(Kind::kHuman, s.human)) return Kind::kHuman;
  if (has(Kind::kTask, s.task)) return Kind::kTask;
  return std::nullopt;
}

}  // namespace mandate::revocation
