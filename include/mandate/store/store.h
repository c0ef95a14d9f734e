// The store: Mandate's durable registry of humans, agents, sessions (with their delegation
// tree) and revocations. One interface, two backends: SQLite (embedded, sqlite_store.h) and,
// later, PostgreSQL for several nodes (DESIGN.md section 9).
//
// Times are Unix seconds. Names (human, agent, group, task, session ids, revocation
// subjects) are validated the same way by every backend: non-empty, at most kNameBytesMax
// bytes of valid UTF-8, no control characters (C0, DEL, C1), no leading or trailing space.
// An invalid name or field is kBadRequest and nothing is written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::store {

struct Human {
  std::string name;
  std::vector<std::string> groups;  // a set: stored and returned sorted, without duplicates
  int64_t created_at = 0;
};

struct Agent {
  std::string name;
  std::string owner;                // a Human's name
  std::vector<std::string> groups;  // a set, as for Human
  int64_t created_at = 0;
};

// One running agent instance. Sessions form trees through delegation: a root session has
// parent_sid empty, root_sid == sid and depth 0; a child has its parent's root_sid and
// depth + 1.
struct Session {
  std::string sid;
  std::string parent_sid;  // empty for a root session
  std::string root_sid;
  std::string agent;               // a registered Agent
  std::string human;               // a registered Human
  std::string task;                // empty when the session has no task
  std::vector<std::string> scope;  // action patterns, in the order given
  core::Json model;                // null, or an object {provider, name, tier}
  uint32_t depth = 0;              // <= kDelegationDepthMax
  int64_t created_at = 0;
  int64_t expires_at = 0;
  std::optional<int64_t> revoked_at;
  std::string dpop_jkt;  // empty when the session is not DPoP-bound

  bool operator==(const Session&) const = default;
};

struct Revocation {
  std::string kind;  // "session" | "agent" | "human" | "task"
  std::string subject;
  int64_t at = 0;
  std::string reason;  // free text, <= kRevocationReasonBytesMax, no control characters

  bool operator==(const Revocation&) const = default;
};

// One audit record as the audit index holds it, so queries can find records by who and what
// without reading the log (docs/formats/audit.md, "Query, replay and export"). The index is
// derived from the log and can be rebuilt from it; the log stays the evidence.
// Text fields are empty when the record has no such member (stored as NULL); each is valid
// UTF-8 of at most kAuditIndexFieldBytesMax bytes.
struct AuditIndexRow {
  uint64_t seq = 0;    // < 2^63
  int64_t ts = 0;      // the record's "ts", Unix microseconds
  std::string type;    // "call.decided", "session.started", ...
  std::string run;     // the run (root session id)
  std::string sid;     // the session
  std::string agent;
  std::string human;
  std::string action;  // "<upstream>:<tool>"
  std::string decision;  // decision.decision of a call.decided record: allow | deny | ...
  uint64_t segment = 0;  // where the record's line starts (audit::RecordPosition), >= 1
  uint64_t offset = 0;

  bool operator==(const AuditIndexRow&) const = default;
};

// Which rows QueryAuditIndex returns: those matching every field that is set (text fields:
// equality), in seq order.
struct AuditIndexFilter {
  std::string run, sid, agent, human, action, type;  // empty: any
  std::optional<int64_t> since_us;     // ts >= since_us
  std::optional<int64_t> until_us;     // ts < until_us
  std::optional<uint64_t> after_seq;   // seq > after_seq
  std::optional<uint64_t> before_seq;  // seq < before_seq
  size_t limit = 100;                  // capped at kAuditIndexQueryRowsMax
  bool descending = false;             // newest first
};

// Thread safety: every method may be called concurrently from any thread. Every write is one
// transaction: it happens completely or not at all. Errors common to every method:
// kInternal when the database fails (I/O, lock timeout after kStoreBusyTimeoutMillis, a
// corrupt row).
class Store {
 public:
  virtual ~Store() = default;

  // Registers a human. Idempotent: putting a human that exists with the same set of groups
  // succeeds and changes nothing (the stored created_at stays). Errors: kBadRequest (a name,
  // or more than kGroupsPerPrincipalMax groups); kConflict when the human exists with other
  // groups (the message says which).
  virtual core::Status PutHuman(const Human& human) = 0;
  // Errors: kBadRequest (name); kNotFound.
  virtual core::Result<Human> GetHuman(const std::string& name) = 0;
  // Every human, ordered by name.
  virtual core::Result<std::vector<Human>> ListHumans() = 0;

  // Registers an agent, idempotently as PutHuman. Errors: kBadRequest; kNotFound when the
  // owner is not a registered human; kConflict when the agent exists with another owner or
  // other groups (the message says which).
  virtual core::Status PutAgent(const Agent& agent) = 0;
  virtual core::Result<Agent> GetAgent(const std::string& name) = 0;
  virtual core::Result<std::vector<Agent>> ListAgents() = 0;  // ordered by name

  // Records a new session. Errors: kBadRequest (a field, more than kScopeEntriesMax scope
  // entries, a model that is neither null nor an object, expires_at < created_at, root_sid or
  // depth inconsistent with the parent, depth > kDelegationDepthMax); kNotFound when the
  // agent, the human or the parent session does not exist; kConflict when the sid exists or
  // the parent session is revoked (so no child can slip in after a tree revocation).
  virtual core::Status CreateSession(const Session& session) = 0;
  // Errors: kBadRequest (sid); kNotFound.
  virtual core::Result<Session> GetSession(const std::string& sid) = 0;
  // One page of sessions ordered by (created_at, sid). `limit` is capped at
  // kStoreListLimitMax.
  virtual core::Result<std::vector<Session>> ListSessions(size_t limit, size_t offset) = 0;
  // The direct children (delegations) of `sid`, ordered by (created_at, sid).
  // Errors: kBadRequest (sid); kNotFound when `sid` does not exist.
  virtual core::Result<std::vector<Session>> ListChildren(const std::string& sid) = 0;

  // Records a revocation. For kind "session" it also sets revoked_at = at on the session and
  // every descendant not revoked yet, in the same transaction (see RevokeSessionTree).
  // Errors: kBadRequest (unknown kind, subject, reason); kNotFound for kind "session" when
  // the session does not exist. Subjects of other kinds need not exist (revoking ahead of
  // registration is allowed).
  virtual core::Status AddRevocation(const Revocation& revocation) = 0;
  // Every revocation, oldest first (loaded at start to build the in-memory revocation set).
  virtual core::Result<std::vector<Revocation>> ListRevocations() = 0;

  // Revokes `sid` and its whole delegation subtree: records a "session" revocation and sets
  // revoked_at = at on each of those sessions not revoked yet (an earlier revoked_at stays).
  // Returns every sid of the subtree, `sid` first, then by depth (breadth first), including
  // ones revoked earlier, so the caller can cancel calls in flight for all of them.
  // Errors: kBadRequest (sid, reason); kNotFound when `sid` does not exist.
  virtual core::Result<std::vector<std::string>> RevokeSessionTree(const std::string& sid,
                                                                   int64_t at,
                                                                   const std::string& reason) = 0;

  // --- The audit index (see AuditIndexRow) ---

  // Adds rows, all in one transaction. Rows must be in increasing seq order, each seq new.
  // The index is derived from the audit log: the transaction need not be synced on its own (a
  // power loss may lose the last rows added, never leave part of a transaction), and the
  // indexer adds lost rows again from the log. With `pace_every` > 0, `pace` is called after
  // every `pace_every` rows written, inside the transaction (other users of the store wait
  // for it meanwhile): a background caller's point to let other threads have the CPU.
  // Errors: kBadRequest (seqs out of order or >= 2^63, segment 0, a text field too long or
  // not UTF-8), nothing written; kConflict when a seq is already indexed, nothing written.
  virtual core::Status IndexAuditRecords(const std::vector<AuditIndexRow>& rows,
                                         size_t pace_every = 0,
                                         const std::function<void()>& pace = {}) = 0;
  // One past the highest indexed seq: the seq to index next (0 for an empty index).
  virtual core::Result<uint64_t> AuditIndexedUpTo() = 0;
  // The matching rows, at most filter.limit (capped at kAuditIndexQueryRowsMax), in increasing
  // seq order (decreasing with `descending`). Errors: kBadRequest when limit is 0 or a seq
  // bound is >= 2^63.
  virtual core::Result<std::vector<AuditIndexRow>> QueryAuditIndex(const AuditIndexFilter& filter) = 0;
  // Removes every row with seq >= `from_seq` (to rebuild the index after the log changed
  // underneath it, e.g. was restored from a backup).
  virtual core::Status DeleteAuditIndexFrom(uint64_t from_seq) = 0;
};

}  // namespace mandate::store
