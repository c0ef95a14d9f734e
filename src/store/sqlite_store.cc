#include "mandate/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "mandate/core/check.h"
#include "mandate/core/limits.h"
#include "store/internal/validate.h"

namespace mandate::store {
namespace {

using core::ErrorCode;
using core::MakeError;

// Schema migrations: kMigrations[v] takes a database from version v to v + 1. Never edit a
// released entry; append a new one and bump SqliteStore::kSchemaVersion.
constexpr const char* kMigrations[] = {
    // 0 -> 1: the first schema. List columns hold canonical JSON arrays of strings.
    R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE humans (
  name       TEXT PRIMARY KEY NOT NULL,
  groups     TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE agents (
  name       TEXT PRIMARY KEY NOT NULL,
  owner      TEXT NOT NULL REFERENCES humans(name),
  groups     TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX agents_by_owner ON agents(owner);
CREATE TABLE sessions (
  sid        TEXT PRIMARY KEY NOT NULL,
  parent_sid TEXT REFERENCES sessions(sid),
  root_sid   TEXT NOT NULL,
  agent      TEXT NOT NULL REFERENCES agents(name),
  human      TEXT NOT NULL REFERENCES humans(name),
  task       TEXT NOT NULL,
  scope      TEXT NOT NULL,
  model      TEXT NOT NULL,
  depth      INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER,
  dpop_jkt   TEXT NOT NULL
);
CREATE INDEX sessions_by_parent ON sessions(parent_sid);
CREATE INDEX sessions_by_root ON sessions(root_sid);
CREATE INDEX sessions_by_created ON sessions(created_at, sid);
CREATE INDEX sessions_by_agent ON sessions(agent);
CREATE INDEX sessions_by_human ON sessions(human);
CREATE INDEX sessions_by_task ON sessions(task);
CREATE TABLE revocations (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  kind    TEXT NOT NULL CHECK (kind IN ('session', 'agent', 'human', 'task')),
  subject TEXT NOT NULL,
  at      INTEGER NOT NULL,
  reason  TEXT NOT NULL
);
)sql",
    // 1 -> 2: the audit index (store.h, AuditIndexRow). Text columns are NULL when the record
    // has no such member; each lookup column has an index ending in seq, so a filtered page in
    // seq order is one index range scan.
    R"sql(
CREATE TABLE audit_index (
  seq          INTEGER PRIMARY KEY NOT NULL,
  ts           INTEGER NOT NULL,
  type         TEXT,
  run          TEXT,
  sid          TEXT,
  agent        TEXT,
  human        TEXT,
  action       TEXT,
  decision     TEXT,
  segment      INTEGER NOT NULL,
  offset_bytes INTEGER NOT NULL
);
CREATE INDEX audit_index_by_run ON audit_index(run, seq);
CREATE INDEX audit_index_by_sid ON audit_index(sid, seq);
CREATE INDEX audit_index_by_agent ON audit_index(agent, seq);
CREATE INDEX audit_index_by_human ON audit_index(human, seq);
CREATE INDEX audit_index_by_action ON audit_index(action, seq);
CREATE INDEX audit_index_by_type ON audit_index(type, seq);
CREATE INDEX audit_index_by_ts ON audit_index(ts);
)sql",
    // 2 -> 3: the audit index keeps each text value once, in audit_terms, and its rows refer to
    // values by id, so an index entry holds an integer instead of a session id or a name: a
    // row costs 1.3x less to index at 32 sessions writing at once and 1.9x less at 1,000
    // (docs/performance.md, "The audit index keeps term ids"). The index is derived from the
    // audit log, so the old table is dropped, not converted: the server's indexer finds the
    // index empty and rebuilds it from the log in the background. No foreign key from the
    // index to the terms: the check would be a lookup per column per row, and only the store
    // writes either table.
    R"sql(
DROP TABLE audit_index;
CREATE TABLE audit_terms (
  id   INTEGER PRIMARY KEY NOT NULL,
  term TEXT NOT NULL UNIQUE
);
CREATE TABLE audit_index (
  seq          INTEGER PRIMARY KEY NOT NULL,
  ts           INTEGER NOT NULL,
  type         INTEGER,
  run          INTEGER,
  sid          INTEGER,
  agent        INTEGER,
  human        INTEGER,
  action       INTEGER,
  decision     TEXT,
  segment      INTEGER NOT NULL,
  offset_bytes INTEGER NOT NULL
);
CREATE INDEX audit_index_by_run ON audit_index(run, seq);
CREATE INDEX audit_index_by_sid ON audit_index(sid, seq);
CREATE INDEX audit_index_by_agent ON audit_index(agent, seq);
CREATE INDEX audit_index_by_human ON audit_index(human, seq);
CREATE INDEX audit_index_by_action ON audit_index(action, seq);
CREATE INDEX audit_index_by_type ON audit_index(type, seq);
CREATE INDEX audit_index_by_ts ON audit_index(ts);
)sql",
};
static_assert(std::size(kMigrations) == SqliteStore::kSchemaVersion,
              "one migration per schema version");

constexpr char kSqlHasVersionTable[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'";
constexpr char kSqlGetVersion[] = "SELECT version FROM schema_version";
constexpr char kSqlInsertVersion[] = "INSERT INTO schema_version (version) VALUES (?1)";
constexpr char kSqlUpdateVersion[] = "UPDATE schema_version SET version = ?1";

constexpr char kSqlGetHuman[] = "SELECT name, groups, created_at FROM humans WHERE name = ?1";
constexpr char kSqlListHumans[] = "SELECT name, groups, created_at FROM humans ORDER BY name";
constexpr char kSqlInsertHuman[] =
    "INSERT INTO humans (name, groups, created_at) VALUES (?1, ?2, ?3)";

constexpr char kSqlGetAgent[] =
    "SELECT name, owner, groups, created_at FROM agents WHERE name = ?1";
constexpr char kSqlListAgents[] =
    "SELECT name, owner, groups, created_at FROM agents ORDER BY name";
constexpr char kSqlInsertAgent[] =
    "INSERT INTO agents (name, owner, groups, created_at) VALUES (?1, ?2, ?3, ?4)";

#define MANDATE_SESSION_COLUMNS                                                                  \
  "sid, parent_sid, root_sid, agent, human, task, scope, model, depth, created_at, expires_at, " \
  "revoked_at, dpop_jkt"
constexpr char kSqlGetSession[] = "SELECT " MANDATE_SESSION_COLUMNS " FROM sessions WHERE sid = ?1";
constexpr char kSqlListSessions[] =
    "SELECT " MANDATE_SESSION_COLUMNS " FROM sessions ORDER BY created_at, sid LIMIT ?1 OFFSET ?2";
constexpr char kSqlListChildren[] = "SELECT " MANDATE_SESSION_COLUMNS
                                    " FROM sessions WHERE parent_sid = ?1 ORDER BY created_at, sid";
constexpr char kSqlInsertSession[] =
    "INSERT INTO sessions (" MANDATE_SESSION_COLUMNS
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
#undef MANDATE_SESSION_COLUMNS

// The subtree of ?1, breadth first. The level bound keeps the recursion finite whatever the
// table holds (depths are validated on insert, so a real tree is never deeper).
constexpr char kSqlSessionTree[] =
    "WITH RECURSIVE tree(sid, lvl) AS ("
    "  SELECT sid, 0 FROM sessions WHERE sid = ?1"
    "  UNION ALL"
    "  SELECT s.sid, tree.lvl + 1 FROM sessions AS s JOIN tree ON s.parent_sid = tree.sid"
    "  WHERE tree.lvl < ?2"
    ") SELECT sid FROM tree ORDER BY lvl, sid";
constexpr char kSqlMarkRevoked[] =
    "UPDATE sessions SET revoked_at = ?2 WHERE sid = ?1 AND revoked_at IS NULL";

constexpr char kSqlInsertRevocation[] =
    "INSERT INTO revocations (kind, subject, at, reason) VALUES (?1, ?2, ?3, ?4)";
constexpr char kSqlListRevocations[] =
    "SELECT kind, subject, at, reason FROM revocations ORDER BY id";

constexpr char kSqlInsertAuditRow[] =
    "INSERT INTO audit_index (seq, ts, type, run, sid, agent, human, action, decision, segment, "
    "offset_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
constexpr char kSqlAuditFirstSeqIn[] =
    "SELECT seq FROM audit_index WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT 1";
constexpr char kSqlAuditMaxSeq[] = "SELECT max(seq) FROM audit_index";
constexpr char kSqlAuditDeleteFrom[] = "DELETE FROM audit_index WHERE seq >= ?1";
constexpr char kSqlAuditTermId[] = "SELECT id FROM audit_terms WHERE term = ?1";
constexpr char kSqlAuditInsertTerm[] = "INSERT INTO audit_terms (term) VALUES (?1)";
// The text columns read back through their terms (a primary-key lookup each; NULL stays NULL).
#define MANDATE_AUDIT_TERM(col) "(SELECT term FROM audit_terms WHERE id = a." col ")"
constexpr char kSqlAuditSelect[] =
    "SELECT a.seq, a.ts, " MANDATE_AUDIT_TERM("type") ", " MANDATE_AUDIT_TERM("run") ", "
    MANDATE_AUDIT_TERM("sid") ", " MANDATE_AUDIT_TERM("agent") ", " MANDATE_AUDIT_TERM("human")
    ", " MANDATE_AUDIT_TERM("action") ", a.decision, a.segment, a.offset_bytes "
    "FROM audit_index AS a";
#undef MANDATE_AUDIT_TERM

std::string Quoted(const std::string& s) {
  std::string out;
  core::AppendJsonString(s, &out);
  return out;
}

}  // namespace

// A borrowed, cached prepared statement: bindings and state are reset when it goes away, so
// the next user starts clean.
class SqliteStore::Statement {
 public:
  explicit Statement(sqlite3_stmt* s) : s_(s) {}
  Statement(Statement&& o) noexcept : s_(std::exchange(o.s_, nullptr)), bind_rc_(o.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (s_ != nullptr) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }
  }

  Statement& Bind(int i, std::string_view v) {
    Keep(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    Keep(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Statement& BindNull(int i) {
    Keep(sqlite3_bind_null(s_, i));
    return *this;
  }

  // True when a row is ready, false when done.
  core::Result<bool> Step() {
    if (bind_rc_ != SQLITE_OK) return Fail("binding a parameter", bind_rc_);
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Fail("executing a statement", rc);
  }
  // Runs a statement that returns no rows.
  core::Status Run() {
    MANDATE_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return core::OkStatus();
  }

  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(s_, col);
    if (p == nullptr) return std::string();
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(s_, col)));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  void Keep(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  core::Error Fail(const char* what, int rc) const {
    return MakeError(ErrorCode::kInternal, std::string("store: ") + what + ": " +
                                               sqlite3_errstr(rc) + " (" +
                                               sqlite3_errmsg(sqlite3_db_handle(s_)) + ")");
  }

  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed. IMMEDIATE takes the write lock up
// front, so a read-then-write (idempotent puts) cannot race another process's writer.
class SqliteStore::Transaction {
 public:
  static core::Result<Transaction> Begin(SqliteStore* store) {
    MANDATE_RETURN_IF_ERROR(store->Exec("BEGIN IMMEDIATE"));
    return Transaction(store);
  }
  Transaction(Transaction&& o) noexcept : store_(std::exchange(o.store_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (store_ != nullptr) (void)store_->Exec("ROLLBACK");
  }
  core::Status Commit() {
    SqliteStore* s = std::exchange(store_, nullptr);
    core::Status st = s->Exec("COMMIT");
    if (!st.ok()) (void)s->Exec("ROLLBACK");
    return st;
  }

 private:
  explicit Transaction(SqliteStore* store) : store_(store) {}
  SqliteStore* store_;
};

SqliteStore::SqliteStore(sqlite3* db) : db_(db) {}

SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
  for (auto& [sql, stmt] : assembled_stmts_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

core::Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  return Open(path, Options{});
}

core::Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                             Options options) {
  if (options.cache_kib < 1 || options.wal_checkpoint_pages < 1) {
    return MakeError(ErrorCode::kBadRequest,
                     "store options: cache_kib and wal_checkpoint_pages must be at least 1");
  }
  if (path.empty()) return MakeError(ErrorCode::kInternal, "store path is empty");
  // Create the file ourselves so it is 0600 from its first byte (SQLite would use 0644 minus
  // the umask); SQLite gives the -wal and -shm files the database file's mode.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return MakeError(ErrorCode::kInternal,
                     "cannot create the store " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || ((st.st_mode & 077) != 0 && ::fchmod(fd, 0600) != 0)) {
    int e = errno;
    ::close(fd);
    return MakeError(ErrorCode::kInternal,
                     "cannot restrict the store " + path + " to mode 0600: " + std::strerror(e));
  }
  ::close(fd);

  // SQLite counts every allocation's bytes for sqlite3_status() under a global mutex unless
  // told not to; the store never asks, and the count cost the audit index 7% per row
  // (bench/audit_index.cc, docs/performance.md). Only possible before SQLite initializes, so
  // once, before the first open; if something else initialized it first, this is refused
  // (SQLITE_MISUSE) and changes nothing.
  static std::once_flag configured;
  std::call_once(configured, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return MakeError(ErrorCode::kInternal, "cannot open the store " + path + ": " + msg);
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, core::kStoreBusyTimeoutMillis);

  // journal_mode answers with the mode in force; anything but "wal" means it did not switch.
  {
    MANDATE_ASSIGN_OR_RETURN(Statement wal, store->Prepare("PRAGMA journal_mode = WAL"));
    MANDATE_ASSIGN_OR_RETURN(bool row, wal.Step());
    if (!row || wal.Text(0) != "wal") {
      return MakeError(ErrorCode::kInternal, "the store " + path + " cannot use WAL mode");
    }
  }
  MANDATE_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous = FULL"));
  MANDATE_RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys = ON"));
  MANDATE_RETURN_IF_ERROR(store->Exec("PRAGMA trusted_schema = OFF"));
  MANDATE_RETURN_IF_ERROR(
      store->Exec(("PRAGMA cache_size = -" + std::to_string(options.cache_kib)).c_str()));
  MANDATE_RETURN_IF_ERROR(store->Exec(
      ("PRAGMA wal_autocheckpoint = " + std::to_string(options.wal_checkpoint_pages)).c_str()));
  MANDATE_RETURN_IF_ERROR(store->Migrate());
  return store;
}

core::Error SqliteStore::DbError(const std::string& what) const {
  return MakeError(ErrorCode::kInternal, "store: " + what + ": " + sqlite3_errmsg(db_));
}

core::Status SqliteStore::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return MakeError(ErrorCode::kInternal, "store: " + msg);
  }
  return core::OkStatus();
}

core::Result<SqliteStore::Statement> SqliteStore::Prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return Statement(it->second);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return DbError("preparing a statement");
  }
  stmts_.emplace(sql, stmt);
  return Statement(stmt);
}

core::Result<SqliteStore::Statement> SqliteStore::PrepareAssembled(const std::string& sql) {
  auto it = assembled_stmts_.find(sql);
  if (it != assembled_stmts_.end()) return Statement(it->second);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
      SQLITE_OK) {
    return DbError("preparing a statement");
  }
  assembled_stmts_.emplace(sql, stmt);
  return Statement(stmt);
}

core::Status SqliteStore::Migrate() {
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  int64_t version = 0;
  {
    MANDATE_ASSIGN_OR_RETURN(Statement has, Prepare(kSqlHasVersionTable));
    MANDATE_ASSIGN_OR_RETURN(bool row, has.Step());
    if (row && has.Int(0) > 0) {
      MANDATE_ASSIGN_OR_RETURN(Statement get, Prepare(kSqlGetVersion));
      MANDATE_ASSIGN_OR_RETURN(bool got, get.Step());
      if (!got) return MakeError(ErrorCode::kInternal, "store: schema_version table is empty");
      version = get.Int(0);
    }
  }
  if (version < 0 || version > kSchemaVersion) {
    return MakeError(ErrorCode::kInternal, "store: database schema version " +
                                               std::to_string(version) +
                                               " is newer than this build supports (" +
                                               std::to_string(kSchemaVersion) + ")");
  }
  if (version == kSchemaVersion) return tx.Commit();
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    MANDATE_RETURN_IF_ERROR(Exec(kMigrations[v]));
  }
  {
    // Statements are prepared after the DDL: the version table may be new.
    MANDATE_ASSIGN_OR_RETURN(Statement set,
                             Prepare(version == 0 ? kSqlInsertVersion : kSqlUpdateVersion));
    set.Bind(1, static_cast<int64_t>(kSchemaVersion));
    MANDATE_RETURN_IF_ERROR(set.Run());
  }
  return tx.Commit();
}

// --- Humans -------------------------------------------------------------------------------

core::Result<std::optional<Human>> SqliteStore::FindHumanLocked(const std::string& name) {
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlGetHuman));
  q.Bind(1, name);
  MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<Human>();
  Human h;
  h.name = q.Text(0);
  MANDATE_ASSIGN_OR_RETURN(h.groups, internal::ParseStringListJson(q.Text(1)));
  h.created_at = q.Int(2);
  return std::optional<Human>(std::move(h));
}

core::Status SqliteStore::PutHuman(const Human& human) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateHuman(human));
  MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> groups,
                           internal::NormalizeGroups(human.groups));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  MANDATE_ASSIGN_OR_RETURN(std::optional<Human> existing, FindHumanLocked(human.name));
  if (existing) {
    if (existing->groups == groups) return core::OkStatus();  // idempotent; tx rolls back
    return MakeError(ErrorCode::kConflict, "human " + Quoted(human.name) +
                                               " already exists with groups " +
                                               internal::StringListJson(existing->groups) +
                                               ", not " + internal::StringListJson(groups));
  }
  MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertHuman));
  ins.Bind(1, human.name).Bind(2, internal::StringListJson(groups)).Bind(3, human.created_at);
  MANDATE_RETURN_IF_ERROR(ins.Run());
  return tx.Commit();
}

core::Result<Human> SqliteStore::GetHuman(const std::string& name) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateName("human name", name));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(std::optional<Human> h, FindHumanLocked(name));
  if (!h) return MakeError(ErrorCode::kNotFound, "no human named " + Quoted(name));
  return std::move(*h);
}

core::Result<std::vector<Human>> SqliteStore::ListHumans() {
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlListHumans));
  std::vector<Human> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    Human h;
    h.name = q.Text(0);
    MANDATE_ASSIGN_OR_RETURN(h.groups, internal::ParseStringListJson(q.Text(1)));
    h.created_at = q.Int(2);
    out.push_back(std::move(h));
  }
  return out;
}

// --- Agents -------------------------------------------------------------------------------

core::Result<std::optional<Agent>> SqliteStore::FindAgentLocked(const std::string& name) {
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlGetAgent));
  q.Bind(1, name);
  MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<Agent>();
  Agent a;
  a.name = q.Text(0);
  a.owner = q.Text(1);
  MANDATE_ASSIGN_OR_RETURN(a.groups, internal::ParseStringListJson(q.Text(2)));
  a.created_at = q.Int(3);
  return std::optional<Agent>(std::move(a));
}

core::Status SqliteStore::PutAgent(const Agent& agent) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateAgent(agent));
  MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> groups,
                           internal::NormalizeGroups(agent.groups));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  MANDATE_ASSIGN_OR_RETURN(std::optional<Agent> existing, FindAgentLocked(agent.name));
  if (existing) {
    std::string diff;
    if (existing->owner != agent.owner) {
      diff = "owner " + Quoted(existing->owner) + ", not " + Quoted(agent.owner);
    }
    if (existing->groups != groups) {
      if (!diff.empty()) diff += " and ";
      diff += "groups " + internal::StringListJson(existing->groups) + ", not " +
              internal::StringListJson(groups);
    }
    if (diff.empty()) return core::OkStatus();  // idempotent
    return MakeError(ErrorCode::kConflict,
                     "agent " + Quoted(agent.name) + " already exists with " + diff);
  }
  MANDATE_ASSIGN_OR_RETURN(std::optional<Human> owner, FindHumanLocked(agent.owner));
  if (!owner) {
    return MakeError(ErrorCode::kNotFound,
                     "agent owner " + Quoted(agent.owner) + " is not a registered human");
  }
  MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertAgent));
  ins.Bind(1, agent.name)
      .Bind(2, agent.owner)
      .Bind(3, internal::StringListJson(groups))
      .Bind(4, agent.created_at);
  MANDATE_RETURN_IF_ERROR(ins.Run());
  return tx.Commit();
}

core::Result<Agent> SqliteStore::GetAgent(const std::string& name) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateName("agent name", name));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(std::optional<Agent> a, FindAgentLocked(name));
  if (!a) return MakeError(ErrorCode::kNotFound, "no agent named " + Quoted(name));
  return std::move(*a);
}

core::Result<std::vector<Agent>> SqliteStore::ListAgents() {
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlListAgents));
  std::vector<Agent> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    Agent a;
    a.name = q.Text(0);
    a.owner = q.Text(1);
    MANDATE_ASSIGN_OR_RETURN(a.groups, internal::ParseStringListJson(q.Text(2)));
    a.created_at = q.Int(3);
    out.push_back(std::move(a));
  }
  return out;
}

// --- Sessions -----------------------------------------------------------------------------

namespace {

// Reads the MANDATE_SESSION_COLUMNS of the current row.
template <typename Stmt>
core::Result<Session> ReadSession(const Stmt& q) {
  Session s;
  s.sid = q.Text(0);
  s.parent_sid = q.IsNull(1) ? std::string() : q.Text(1);
  s.root_sid = q.Text(2);
  s.agent = q.Text(3);
  s.human = q.Text(4);
  s.task = q.Text(5);
  MANDATE_ASSIGN_OR_RETURN(s.scope, internal::ParseStringListJson(q.Text(6)));
  auto model = core::Json::Parse(q.Text(7));
  if (!model.ok() || !(model->is_null() || model->is_object())) {
    return MakeError(ErrorCode::kInternal, "corrupt model column in the store");
  }
  s.model = std::move(model).value();
  int64_t depth = q.Int(8);
  if (depth < 0 || depth > static_cast<int64_t>(core::kDelegationDepthMax)) {
    return MakeError(ErrorCode::kInternal, "corrupt depth column in the store");
  }
  s.depth = static_cast<uint32_t>(depth);
  s.created_at = q.Int(9);
  s.expires_at = q.Int(10);
  if (!q.IsNull(11)) s.revoked_at = q.Int(11);
  s.dpop_jkt = q.Text(12);
  return s;
}

}  // namespace

core::Result<std::optional<Session>> SqliteStore::FindSessionLocked(const std::string& sid) {
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlGetSession));
  q.Bind(1, sid);
  MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return std::optional<Session>();
  MANDATE_ASSIGN_OR_RETURN(Session s, ReadSession(q));
  return std::optional<Session>(std::move(s));
}

core::Status SqliteStore::CreateSession(const Session& s) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateSession(s));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  MANDATE_ASSIGN_OR_RETURN(std::optional<Session> existing, FindSessionLocked(s.sid));
  if (existing) return MakeError(ErrorCode::kConflict, "session " + Quoted(s.sid) + " exists");
  MANDATE_ASSIGN_OR_RETURN(std::optional<Agent> agent, FindAgentLocked(s.agent));
  if (!agent) {
    return MakeError(ErrorCode::kNotFound,
                     "session agent " + Quoted(s.agent) + " is not registered");
  }
  MANDATE_ASSIGN_OR_RETURN(std::optional<Human> human, FindHumanLocked(s.human));
  if (!human) {
    return MakeError(ErrorCode::kNotFound,
                     "session human " + Quoted(s.human) + " is not registered");
  }
  if (!s.parent_sid.empty()) {
    MANDATE_ASSIGN_OR_RETURN(std::optional<Session> parent, FindSessionLocked(s.parent_sid));
    if (!parent) {
      return MakeError(ErrorCode::kNotFound,
                       "parent session " + Quoted(s.parent_sid) + " does not exist");
    }
    // Checked in the same transaction as the insert: a tree revocation either sees this
    // child (and revokes it) or this insert sees the revoked parent.
    if (parent->revoked_at) {
      return MakeError(ErrorCode::kConflict,
                       "parent session " + Quoted(s.parent_sid) + " is revoked");
    }
    if (s.root_sid != parent->root_sid || s.depth != parent->depth + 1) {
      return MakeError(ErrorCode::kBadRequest,
                       "a delegated session must have its parent's root_sid and depth + 1");
    }
    if (s.expires_at > parent->expires_at) {
      return MakeError(ErrorCode::kBadRequest,
                       "a delegated session cannot outlive its parent session");
    }
  }
  MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertSession));
  ins.Bind(1, s.sid);
  if (s.parent_sid.empty()) {
    ins.BindNull(2);
  } else {
    ins.Bind(2, s.parent_sid);
  }
  ins.Bind(3, s.root_sid)
      .Bind(4, s.agent)
      .Bind(5, s.human)
      .Bind(6, s.task)
      .Bind(7, internal::StringListJson(s.scope))
      .Bind(8, s.model.Canonical())
      .Bind(9, static_cast<int64_t>(s.depth))
      .Bind(10, s.created_at)
      .Bind(11, s.expires_at);
  if (s.revoked_at) {
    ins.Bind(12, *s.revoked_at);
  } else {
    ins.BindNull(12);
  }
  ins.Bind(13, s.dpop_jkt);
  MANDATE_RETURN_IF_ERROR(ins.Run());
  return tx.Commit();
}

core::Result<Session> SqliteStore::GetSession(const std::string& sid) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateName("session id", sid));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(std::optional<Session> s, FindSessionLocked(sid));
  if (!s) return MakeError(ErrorCode::kNotFound, "no session " + Quoted(sid));
  return std::move(*s);
}

core::Result<std::vector<Session>> SqliteStore::ListSessions(size_t limit, size_t offset) {
  limit = std::min(limit, core::kStoreListLimitMax);
  const int64_t off = static_cast<int64_t>(
      std::min<size_t>(offset, static_cast<size_t>(std::numeric_limits<int64_t>::max())));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlListSessions));
  q.Bind(1, static_cast<int64_t>(limit)).Bind(2, off);
  std::vector<Session> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    MANDATE_ASSIGN_OR_RETURN(Session s, ReadSession(q));
    out.push_back(std::move(s));
  }
  return out;
}

core::Result<std::vector<Session>> SqliteStore::ListChildren(const std::string& sid) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateName("session id", sid));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(std::optional<Session> parent, FindSessionLocked(sid));
  if (!parent) return MakeError(ErrorCode::kNotFound, "no session " + Quoted(sid));
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlListChildren));
  q.Bind(1, sid);
  std::vector<Session> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    MANDATE_ASSIGN_OR_RETURN(Session s, ReadSession(q));
    out.push_back(std::move(s));
  }
  return out;
}

// --- Revocations --------------------------------------------------------------------------

core::Result<std::vector<std::string>> SqliteStore::RevokeTreeLocked(const Revocation& r) {
  MANDATE_ASSIGN_OR_RETURN(std::optional<Session> root, FindSessionLocked(r.subject));
  if (!root) return MakeError(ErrorCode::kNotFound, "no session " + Quoted(r.subject));
  std::vector<std::string> sids;
  {
    MANDATE_ASSIGN_OR_RETURN(Statement tree, Prepare(kSqlSessionTree));
    tree.Bind(1, r.subject).Bind(2, static_cast<int64_t>(core::kDelegationDepthMax));
    while (true) {
      MANDATE_ASSIGN_OR_RETURN(bool row, tree.Step());
      if (!row) break;
      sids.push_back(tree.Text(0));
    }
  }
  for (const std::string& sid : sids) {
    MANDATE_ASSIGN_OR_RETURN(Statement mark, Prepare(kSqlMarkRevoked));
    mark.Bind(1, sid).Bind(2, r.at);
    MANDATE_RETURN_IF_ERROR(mark.Run());
  }
  return sids;
}

core::Status SqliteStore::AddRevocation(const Revocation& r) {
  MANDATE_RETURN_IF_ERROR(internal::ValidateRevocation(r));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  if (r.kind == "session") MANDATE_RETURN_IF_ERROR(RevokeTreeLocked(r));
  MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertRevocation));
  ins.Bind(1, r.kind).Bind(2, r.subject).Bind(3, r.at).Bind(4, r.reason);
  MANDATE_RETURN_IF_ERROR(ins.Run());
  return tx.Commit();
}

core::Result<std::vector<Revocation>> SqliteStore::ListRevocations() {
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlListRevocations));
  std::vector<Revocation> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    out.push_back(Revocation{q.Text(0), q.Text(1), q.Int(2), q.Text(3)});
  }
  return out;
}

core::Result<std::vector<std::string>> SqliteStore::RevokeSessionTree(const std::string& sid,
                                                                      int64_t at,
                                                                      const std::string& reason) {
  Revocation r{"session", sid, at, reason};
  MANDATE_RETURN_IF_ERROR(internal::ValidateRevocation(r));
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  MANDATE_ASSIGN_OR_RETURN(std::vector<std::string> sids, RevokeTreeLocked(r));
  MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertRevocation));
  ins.Bind(1, r.kind).Bind(2, r.subject).Bind(3, r.at).Bind(4, r.reason);
  MANDATE_RETURN_IF_ERROR(ins.Run());
  MANDATE_RETURN_IF_ERROR(tx.Commit());
  return sids;
}

// --- Audit index ------------------------------------------------------------------------

namespace {

constexpr uint64_t kSeqMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

core::Status ValidateAuditRow(const AuditIndexRow& r) {
  if (r.seq >= kSeqMax) return MakeError(ErrorCode::kBadRequest, "audit index: seq too large");
  if (r.segment == 0 || r.segment >= kSeqMax || r.offset >= kSeqMax) {
    return MakeError(ErrorCode::kBadRequest, "audit index: invalid record position");
  }
  for (const std::string* f : {&r.type, &r.run, &r.sid, &r.agent, &r.human, &r.action,
                               &r.decision}) {
    if (f->size() > core::kAuditIndexFieldBytesMax || !core::IsValidUtf8(*f)) {
      return MakeError(ErrorCode::kBadRequest,
                       "audit index: a field is longer than kAuditIndexFieldBytesMax or not "
                       "UTF-8 (seq " + std::to_string(r.seq) + ")");
    }
  }
  return core::OkStatus();
}

}  // namespace

core::Status SqliteStore::IndexAuditRecords(const std::vector<AuditIndexRow>& rows,
                                            size_t pace_every,
                                            const std::function<void()>& pace) {
  for (size_t i = 0; i < rows.size(); ++i) {
    MANDATE_RETURN_IF_ERROR(ValidateAuditRow(rows[i]));
    if (i > 0 && rows[i].seq <= rows[i - 1].seq) {
      return MakeError(ErrorCode::kBadRequest, "audit index: rows must be in increasing seq order");
    }
  }
  if (rows.empty()) return core::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  // The index is derived from the audit log, so its commits skip the WAL fsync (atomic all
  // the same; the next synced commit, or a checkpoint, makes them durable). A commit that
  // syncs was an fsync per batch on the disk the audit log's group commits wait for.
  MANDATE_RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
  const core::Status st = IndexAuditRecordsLocked(rows, pace_every, pace);
  // A batch that failed rolled back the terms it added: their cached ids name no row, and
  // SQLite would hand them out again for other terms.
  if (!st.ok()) audit_term_ids_.clear();
  // Outside a transaction this cannot fail; if it did, the store's other writes would lose
  // their durability silently, so stop rather than go on.
  MANDATE_CHECK(Exec("PRAGMA synchronous = FULL").ok());
  return st;
}

core::Status SqliteStore::IndexAuditRecordsLocked(const std::vector<AuditIndexRow>& rows,
                                                  size_t pace_every,
                                                  const std::function<void()>& pace) {
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  // The seqs are increasing, so a probe of the primary key over the batch's range finds any
  // already indexed: one query when none is (a lookup per row was 5% of the index's inserting
  // time under load); an indexed seq in a gap of the batch moves the probe to the next row.
  for (uint64_t from = rows.front().seq; from <= rows.back().seq;) {
    MANDATE_ASSIGN_OR_RETURN(Statement probe, Prepare(kSqlAuditFirstSeqIn));
    probe.Bind(1, static_cast<int64_t>(from)).Bind(2, static_cast<int64_t>(rows.back().seq));
    MANDATE_ASSIGN_OR_RETURN(bool found, probe.Step());
    if (!found) break;
    const uint64_t seq = static_cast<uint64_t>(probe.Int(0));
    auto it = std::lower_bound(rows.begin(), rows.end(), seq,
                               [](const AuditIndexRow& r, uint64_t s) { return r.seq < s; });
    if (it != rows.end() && it->seq == seq) {
      return MakeError(ErrorCode::kConflict,
                       "audit index: seq " + std::to_string(seq) + " is already indexed");
    }
    from = it->seq;  // the batch's next seq: at most one probe per row
  }
  size_t written = 0;
  for (const AuditIndexRow& r : rows) {
    // The term ids first: looking one up may run statements of its own.
    int64_t ids[6];
    const std::string* const terms[] = {&r.type, &r.run, &r.sid, &r.agent, &r.human, &r.action};
    for (size_t k = 0; k < std::size(terms); ++k) {
      if (terms[k]->empty()) {
        ids[k] = 0;  // stored as NULL
      } else {
        MANDATE_ASSIGN_OR_RETURN(ids[k], AuditTermIdLocked(*terms[k]));
      }
    }
    MANDATE_ASSIGN_OR_RETURN(Statement ins, Prepare(kSqlInsertAuditRow));
    ins.Bind(1, static_cast<int64_t>(r.seq)).Bind(2, r.ts);
    for (size_t k = 0; k < std::size(ids); ++k) {
      const int col = 3 + static_cast<int>(k);
      if (ids[k] == 0) {
        ins.BindNull(col);
      } else {
        ins.Bind(col, ids[k]);
      }
    }
    if (r.decision.empty()) {
      ins.BindNull(9);
    } else {
      ins.Bind(9, std::string_view(r.decision));
    }
    ins.Bind(10, static_cast<int64_t>(r.segment)).Bind(11, static_cast<int64_t>(r.offset));
    MANDATE_RETURN_IF_ERROR(ins.Run());
    if (pace_every != 0 && pace && ++written % pace_every == 0) pace();
  }
  return tx.Commit();
}

core::Result<int64_t> SqliteStore::AuditTermIdLocked(const std::string& term) {
  if (auto it = audit_term_ids_.find(term); it != audit_term_ids_.end()) return it->second;
  int64_t id = 0;
  bool found = false;
  {
    MANDATE_ASSIGN_OR_RETURN(Statement get, Prepare(kSqlAuditTermId));
    get.Bind(1, std::string_view(term));
    MANDATE_ASSIGN_OR_RETURN(found, get.Step());
    if (found) id = get.Int(0);
  }
  if (!found) {
    MANDATE_ASSIGN_OR_RETURN(Statement put, Prepare(kSqlAuditInsertTerm));
    put.Bind(1, std::string_view(term));
    MANDATE_RETURN_IF_ERROR(put.Run());
    id = sqlite3_last_insert_rowid(db_);
  }
  // Ids start at 1 (0 stands for NULL above); a table edited by hand could hold others.
  if (id <= 0) return MakeError(ErrorCode::kInternal, "corrupt id in the audit index's terms");
  // Bounded: every session adds a term or two, for as long as the server runs.
  if (audit_term_ids_.size() >= core::kStoreAuditTermCacheEntriesMax) audit_term_ids_.clear();
  audit_term_ids_.emplace(term, id);
  return id;
}

core::Result<uint64_t> SqliteStore::AuditIndexedUpTo() {
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, Prepare(kSqlAuditMaxSeq));
  MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row || q.IsNull(0)) return uint64_t{0};
  const int64_t max = q.Int(0);
  if (max < 0) return MakeError(ErrorCode::kInternal, "corrupt seq column in the audit index");
  return static_cast<uint64_t>(max) + 1;
}

core::Result<std::vector<AuditIndexRow>> SqliteStore::QueryAuditIndex(const AuditIndexFilter& f) {
  if (f.limit == 0) return MakeError(ErrorCode::kBadRequest, "audit index: limit must be positive");
  if ((f.after_seq && *f.after_seq >= kSeqMax) || (f.before_seq && *f.before_seq >= kSeqMax)) {
    return MakeError(ErrorCode::kBadRequest, "audit index: seq bound too large");
  }
  // The statement's shape depends only on which filters are set; every value is bound.
  struct Text {
    const char* clause;
    const std::string* value;
  };
  // A text filter compares ids: the value's term id, NULL (nothing matches) when the value
  // was never indexed. The subquery is not correlated, so SQLite evaluates it once and ranges
  // over the column's (id, seq) index.
#define MANDATE_AUDIT_TERM_IS(col) "a." col " = (SELECT id FROM audit_terms WHERE term = ?)"
  const Text texts[] = {{MANDATE_AUDIT_TERM_IS("run"), &f.run},
                        {MANDATE_AUDIT_TERM_IS("sid"), &f.sid},
                        {MANDATE_AUDIT_TERM_IS("agent"), &f.agent},
                        {MANDATE_AUDIT_TERM_IS("human"), &f.human},
                        {MANDATE_AUDIT_TERM_IS("action"), &f.action},
                        {MANDATE_AUDIT_TERM_IS("type"), &f.type}};
#undef MANDATE_AUDIT_TERM_IS
  std::string sql = kSqlAuditSelect;
  std::vector<std::string_view> text_binds;
  std::vector<int64_t> int_binds;
  std::string where;
  auto add = [&](const char* clause) {
    where += where.empty() ? " WHERE " : " AND ";
    where += clause;
  };
  for (const Text& t : texts) {
    if (t.value->empty()) continue;
    add(t.clause);
    text_binds.push_back(*t.value);
  }
  if (f.since_us) {
    add("a.ts >= ?");
    int_binds.push_back(*f.since_us);
  }
  if (f.until_us) {
    add("a.ts < ?");
    int_binds.push_back(*f.until_us);
  }
  if (f.after_seq) {
    add("a.seq > ?");
    int_binds.push_back(static_cast<int64_t>(*f.after_seq));
  }
  if (f.before_seq) {
    add("a.seq < ?");
    int_binds.push_back(static_cast<int64_t>(*f.before_seq));
  }
  sql += where;
  sql += f.descending ? " ORDER BY a.seq DESC LIMIT ?" : " ORDER BY a.seq LIMIT ?";
  int_binds.push_back(static_cast<int64_t>(std::min(f.limit, core::kAuditIndexQueryRowsMax)));

  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Statement q, PrepareAssembled(sql));
  int i = 1;
  for (std::string_view v : text_binds) q.Bind(i++, v);
  for (int64_t v : int_binds) q.Bind(i++, v);
  std::vector<AuditIndexRow> out;
  while (true) {
    MANDATE_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row) break;
    AuditIndexRow r;
    if (q.Int(0) < 0 || q.Int(9) <= 0 || q.Int(10) < 0) {
      return MakeError(ErrorCode::kInternal, "corrupt row in the audit index");
    }
    r.seq = static_cast<uint64_t>(q.Int(0));
    r.ts = q.Int(1);
    r.type = q.Text(2);
    r.run = q.Text(3);
    r.sid = q.Text(4);
    r.agent = q.Text(5);
    r.human = q.Text(6);
    r.action = q.Text(7);
    r.decision = q.Text(8);
    r.segment = static_cast<uint64_t>(q.Int(9));
    r.offset = static_cast<uint64_t>(q.Int(10));
    out.push_back(std::move(r));
  }
  return out;
}

core::Status SqliteStore::DeleteAuditIndexFrom(uint64_t from_seq) {
  if (from_seq >= kSeqMax) return core::OkStatus();  // nothing can be that large
  std::lock_guard<std::mutex> lock(mu_);
  MANDATE_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(this));
  MANDATE_ASSIGN_OR_RETURN(Statement del, Prepare(kSqlAuditDeleteFrom));
  del.Bind(1, static_cast<int64_t>(from_seq));
  MANDATE_RETURN_IF_ERROR(del.Run());
  return tx.Commit();
}

}  // namespace mandate::store
