// The in-memory revocation set every call is checked against (DESIGN.md invariant 4).
// Revoke() persists first (store) and then publishes in memory, so once it returns, the next
// authentication of any affected session sees it: no cache outlives a revocation. The check
// is O(chain depth): a session is refused if its sid, any ancestor sid of its delegation
// chain, its agent, its human or its task is revoked; it never scans sessions.
// Thread safety: all methods may be called concurrently (readers share a lock).
#pragma once

#include <memory>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/store/store.h"

namespace mandate::revocation {

enum class Kind : uint8_t { kSession, kAgent, kHuman, kTask };
std::string_view KindName(Kind k);
std::optional<Kind> KindFromName(std::string_view name);

// What one authentication checks.
struct Subjects {
  std::string_view sid;
  std::vector<std::string_view> ancestor_sids;  // the delegation chain's session ids
  std::string_view agent;
  std::string_view human;
  std::string_view task;
};

class RevocationSet {
 public:
  // Builds the set from the store's revocations. Errors: as Store::ListRevocations.
  static core::Result<std::unique_ptr<RevocationSet>> Load(store::Store& store);

  // Persists the revocation (for a session: the whole subtree) and then publishes it.
  // Returns the affected session ids for kind session (subject first), else empty.
  // Errors: as Store::AddRevocation / RevokeSessionTree (kNotFound for an unknown session).
  core::Result<std::vector<std::string>> Revoke(store::Store& store, Kind kind, const std::string& subject,
                                                const std::string& reason, int64_t at_unix_seconds);

  // The kind that revokes these subjects, or nullopt when none is revoked.
  std::optional<Kind> Check(const Subjects& subjects) const;
  bool Contains(Kind kind, std::string_view subject) const;

 private:
  void AddLocked(Kind kind, std::string subject);
  // Whether (kind, subject) may be revoked: false is certain, true is confirmed in the set.
  bool HasLocked(Kind kind, std::string_view subject) const;
  static uint64_t FilterHash(Kind kind, std::string_view subject);
  void FilterAddLocked(uint64_t h);
  void FilterRebuildLocked(size_t capacity);

  // Transparent hashing: lookups by string_view, no allocation on the per-call path.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::shared_mutex mu_;
  std::unordered_set<std::string, Hash, std::equal_to<>> sets_[4];
  // A blocked Bloom filter over every (kind, subject) in front of the sets (guarded by mu_): a
  // caller with nothing revoked, the common case, touches one 64-byte block per subject of a
  // table of 2 bytes per revocation, which stays in the CPU caches at millions of revocations,
  // instead of a bucket and a string of a ~100 MB hash set (docs/performance.md, "Revocation
  // check at scale"). 16 bits per entry, 4 bits set in one block: ~0.3% false positives,
  // which the exact set then answers. Grows by doubling (rebuilt from the sets).
  struct Block {
    uint64_t words[8];
  };
  std::vector<Block> filter_;
  size_t filter_capacity_ = 0;  // entries the filter is sized for
  size_t filter_entries_ = 0;
};

}  // namespace mandate::revocation
