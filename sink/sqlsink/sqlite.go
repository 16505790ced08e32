package sqlsink

import (
	"database/sql"
	"fmt"
	"strings"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

// OpenSQLite opens (creating it if needed) the SQLite database file at path
// with modernc.org/sqlite, a pure-Go driver that needs no C toolchain, set up
// for a Sink: write-ahead logging (readers do not block the writer, and a
// killed process leaves a database that recovers to its last commit),
// transactions that take the write lock when they begin (BEGIN IMMEDIATE),
// and a 10 s busy timeout, so that several processes may share the file
// (their writes take turns). path ":memory:" opens a private in-memory
// database on a single connection. Close the DB when done.
func OpenSQLite(path string) (*sql.DB, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlsink: SQLite path %q: '?' and '#' are not allowed", path)
	}
	params := "?_pragma=busy_timeout(10000)&_txlock=immediate"
	if path != ":memory:" {
		params += "&_pragma=journal_mode(WAL)"
	}
	db, err := sql.Open("sqlite", "file:"+path+params)
	if err != nil {
		return nil, err
	}
	if path == ":memory:" {
		db.SetMaxOpenConns(1)
	}
	return db, nil
}
