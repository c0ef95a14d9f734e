#include "mandate/revocation/revocation_set.h"

#include <algorithm>
#include <functional>
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
  set->FilterRebuildLocked(revocations.size() + revocations.size() / 2);
  for (const auto& r : revocations) {
    auto kind = KindFromName(r.kind);
    if (!kind) return core::MakeError(core::ErrorCode::kInternal, "store holds a revocation of unknown kind \"" + r.kind + "\"");
    set->AddLocked(*kind, r.subject);
  }
  return set;
}

namespace {
constexpr size_t kFilterCapacityMin = 1024;
constexpr size_t kFilterBitsPerEntry = 16;
}  // namespace

uint64_t RevocationSet::FilterHash(Kind kind, std::string_view subject) {
  // splitmix64's finalizer over the string hash and the kind: every bit usable below.
  uint64_t h = std::hash<std::string_view>{}(subject) ^ ((static_cast<uint64_t>(kind) + 1) * 0x9E3779B97F4A7C15ULL);
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
  return h ^ (h >> 31);
}

void RevocationSet::FilterAddLocked(uint64_t h) {
  Block& b = filter_[(h >> 36) & (filter_.size() - 1)];
  for (int i = 0; i < 4; ++i) {
    const unsigned pos = static_cast<unsigned>(h >> (9 * i)) & 511u;
    b.words[pos >> 6] |= uint64_t{1} << (pos & 63);
  }
  ++filter_entries_;
}

void RevocationSet::FilterRebuildLocked(size_t capacity) {
  filter_capacity_ = std::max(capacity, kFilterCapacityMin);
  size_t blocks = 1;  // a power of two, 512 bits each
  while (blocks * 512 < filter_capacity_ * kFilterBitsPerEntry) blocks *= 2;
  filter_.assign(blocks, Block{});
  filter_entries_ = 0;
  for (size_t k = 0; k < 4; ++k) {
    for (const std::string& subject : sets_[k]) FilterAddLocked(FilterHash(static_cast<Kind>(k), subject));
  }
}

void RevocationSet::AddLocked(Kind kind, std::string subject) {
  auto [it, inserted] = sets_[static_cast<size_t>(kind)].insert(std::move(subject));
  if (!inserted) return;
  if (filter_entries_ + 1 > filter_capacity_) {
    FilterRebuildLocked(2 * (filter_entries_ + 1));  // includes the new subject
  } else {
    FilterAddLocked(FilterHash(kind, *it));
  }
}

bool RevocationSet::HasLocked(Kind kind, std::string_view subject) const {
  if (subject.empty() || filter_.empty()) return false;
  const uint64_t h = FilterHash(kind, subject);
  const Block& b = filter_[(h >> 36) & (filter_.size() - 1)];
  for (int i = 0; i < 4; ++i) {
    const unsigned pos = static_cast<unsigned>(h >> (9 * i)) & 511u;
    if ((b.words[pos >> 6] & (uint64_t{1} << (pos & 63))) == 0) return false;
  }
  const auto& set = sets_[static_cast<size_t>(kind)];
  return set.find(subject) != set.end();
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
  auto has = [this](Kind k, std::string_view v) { return HasLocked(k, v); };
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
