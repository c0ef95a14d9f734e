// SqliteStore: the embedded Store backend (one node; DESIGN.md section 8, `store: sqlite`).
//
// The database file is created with mode 0600 (an existing file is tightened to 0600: it
// names every principal and session). On first open the schema is created and recorded in a
// `schema_version` table (kSchemaVersion); a later version of Mandate migrates forward from the
// version found, and a database newer than this build is refused.
//
// Settings and why:
//   journal_mode=WAL    readers never block the writer, and a crash cannot corrupt the file;
//   synchronous=FULL    a revocation or session that Put/Create/Revoke reported written must
//                       survive power loss (invariant 4: a revocation that silently
//                       disappears would re-admit a revoked agent). NORMAL in WAL mode can
//                       lose the last commits on power failure; these writes are rare
//                       (admin actions, session starts), so the extra fsync is cheap;
//   busy_timeout        kStoreBusyTimeoutMillis, when another process holds the write lock;
//   foreign_keys=ON     agents reference their owner, sessions their agent, human, parent.
// Every statement is prepared once and every input is bound as a parameter.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mandate/core/limits.h"
#include "mandate/core/result.h"
#include "mandate/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace mandate::store {

class SqliteStore final : public Store {
 public:
  // The schema version this build creates and understands.
  // 1: humans, agents, sessions, revocations. 2: the audit index (audit_index). 3: the audit
  // index's text values kept once each (audit_terms) and referred to by id.
  static constexpr int kSchemaVersion = 3;

  // How the connection is tuned. The defaults are the server's; bench/audit_index.cc also
  // opens a store with SQLite's own (2,000 KiB, 1,000 pages) to measure against.
  struct Options {
    int cache_kib = core::kStoreCacheKib;                      // PRAGMA cache_size = -N, >= 1
    int wal_checkpoint_pages = core::kStoreWalCheckpointPages;  // PRAGMA wal_autocheckpoint, >= 1
  };

  // Opens (creating if needed) the database at `path`; its directory must exist.
  // Errors: kInternal when the file cannot be created or opened, is not a database, cannot be
  // switched to WAL mode, or has a schema newer than kSchemaVersion; kBadRequest when an
  // option is below 1.
  static core::Result<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  static core::Result<std::unique_ptr<SqliteStore>> Open(const std::string& path, Options options);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  core::Status PutHuman(const Human& human) override;
  core::Result<Human> GetHuman(const std::string& name) override;
  core::Result<std::vector<Human>> ListHumans() override;
  core::Status PutAgent(const Agent& agent) override;
  core::Result<Agent> GetAgent(const std::string& name) override;
  core::Result<std::vector<Agent>> ListAgents() override;
  core::Status CreateSession(const Session& session) override;
  core::Result<Session> GetSession(const std::string& sid) override;
  core::Result<std::vector<Session>> ListSessions(size_t limit, size_t offset) override;
  core::Result<std::vector<Session>> ListChildren(const std::string& sid) override;
  core::Status AddRevocation(const Revocation& revocation) override;
  core::Result<std::vector<Revocation>> ListRevocations() override;
  core::Result<std::vector<std::string>> RevokeSessionTree(const std::string& sid, int64_t at,
                                                           const std::string& reason) override;
  core::Status IndexAuditRecords(const std::vector<AuditIndexRow>& rows, size_t pace_every = 0,
                                 const std::function<void()>& pace = {}) override;
  core::Result<uint64_t> AuditIndexedUpTo() override;
  core::Result<std::vector<AuditIndexRow>> QueryAuditIndex(const AuditIndexFilter& filter) override;
  core::Status DeleteAuditIndexFrom(uint64_t from_seq) override;

 private:
  friend struct SqliteStoreTestPeer;  // sqlite_store_test.cc: reads connection settings
  class Statement;
  class Transaction;

  explicit SqliteStore(sqlite3* db);
  core::Status Migrate();
  // The cached prepared statement for `sql` (a string literal: cached by its address).
  core::Result<Statement> Prepare(const char* sql);
  // The cached prepared statement for `sql` assembled from fixed fragments (never from
  // input), cached by its text.
  core::Result<Statement> PrepareAssembled(const std::string& sql);
  core::Status Exec(const char* sql);  // fixed SQL only: never built from input
  core::Error DbError(const std::string& what) const;
  // Bodies of the public methods; mu_ is held.
  core::Status IndexAuditRecordsLocked(const std::vector<AuditIndexRow>& rows, size_t pace_every,
                                       const std::function<void()>& pace);
  // The id of `term` (not empty) in audit_terms, added if new; inside the caller's transaction.
  core::Result<int64_t> AuditTermIdLocked(const std::string& term);
  core::Result<std::optional<Human>> FindHumanLocked(const std::string& name);
  core::Result<std::optional<Agent>> FindAgentLocked(const std::string& name);
  core::Result<std::optional<Session>> FindSessionLocked(const std::string& sid);
  core::Result<std::vector<std::string>> RevokeTreeLocked(const Revocation& revocation);

  std::mutex mu_;  // serializes all use of db_ and stmts_
  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;
  std::unordered_map<std::string, sqlite3_stmt*> assembled_stmts_;  // at most 2^9 shapes
  // audit_terms as far as this connection wrote or read it: term -> id. Cleared when a batch
  // fails (its new terms were rolled back) and when it reaches
  // kStoreAuditTermCacheEntriesMax entries.
  std::unordered_map<std::string, int64_t> audit_term_ids_;
};

}  // namespace mandate::store
