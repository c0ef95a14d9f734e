// Test support for the store's schema migrations: turning a database this build created back
// into what an older build left, so a test can open it and check the upgrade
// (sqlite_store_test.cc, tests/integration).
#pragma once

#include <sqlite3.h>

#include <string>

namespace mandate::store::testing {

// Runs `sql` (any number of statements) on the database at `path` on a connection of its
// own; true when every statement ran.
inline bool ExecOnDatabase(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  const bool ok = sqlite3_open(path.c_str(), &db) == SQLITE_OK &&
                  sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_close(db);
  return ok;
}

// Schema version 1: no audit index.
inline constexpr char kBackToSchemaVersionOneSql[] =
    "DROP TABLE audit_index; DROP TABLE audit_terms; UPDATE schema_version SET version = 1";

// Schema version 2: the audit index with its values as text (migration 1 -> 2 of
// sqlite_store.cc), empty, and no audit_terms.
inline constexpr char kBackToSchemaVersionTwoSql[] =
    "DROP TABLE audit_index; DROP TABLE audit_terms;"
    "CREATE TABLE audit_index (seq INTEGER PRIMARY KEY NOT NULL, ts INTEGER NOT NULL, type TEXT, "
    "run TEXT, sid TEXT, agent TEXT, human TEXT, action TEXT, decision TEXT, segment INTEGER NOT "
    "NULL, offset_bytes INTEGER NOT NULL);"
    "CREATE INDEX audit_index_by_run ON audit_index(run, seq);"
    "CREATE INDEX audit_index_by_sid ON audit_index(sid, seq);"
    "CREATE INDEX audit_index_by_agent ON audit_index(agent, seq);"
    "CREATE INDEX audit_index_by_human ON audit_index(human, seq);"
    "CREATE INDEX audit_index_by_action ON audit_index(action, seq);"
    "CREATE INDEX audit_index_by_type ON audit_index(type, seq);"
    "CREATE INDEX audit_index_by_ts ON audit_index(ts);"
    "UPDATE schema_version SET version = 2";

}  // namespace mandate::store::testing
