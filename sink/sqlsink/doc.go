// Package sqlsink is a sink.Sink for SQL databases on database/sql: each
// batch of records is written, together with the input offsets it covers,
// in one database transaction. It runs the same SQL on SQLite (3.24 or
// later) and PostgreSQL (9.5 or later); only the placeholders differ, and
// Tx rewrites them. Users import it into their sink binaries; it is part
// of sluice's stable API (see package sink).
//
// The common case, the latest value of each key in a table, over the
// embedded pure-Go SQLite:
//
//	db, err := sqlsink.OpenSQLite("colors.sqlite")
//	...
//	s, err := sqlsink.New(db, sqlsink.Upsert("colors", "name", "color"),
//		sqlsink.Schema(`CREATE TABLE IF NOT EXISTS colors (name TEXT PRIMARY KEY, color TEXT NOT NULL)`))
//	...
//	err = sink.Run(ctx, s, sink.Brokers(...), sink.ApplicationID("colors"), sink.Topics("colors"))
//
// The general case is a Func, which writes whatever a record means with the
// transaction it is given:
//
//	s, err := sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
//		_, err := tx.Exec(ctx, `INSERT INTO balances (account, total) VALUES (?, ?)
//			ON CONFLICT (account) DO UPDATE SET total = balances.total + excluded.total`,
//			string(r.Key), amount(r.Value))
//		return err
//	})
//
// For PostgreSQL, open the database with the pgx driver
// (import _ "github.com/jackc/pgx/v5/stdlib"; sql.Open("pgx", dsn)).
//
// # Exactly-once
//
// The offsets live in a table of their own (OffsetsTable, default
// sluice_offsets: consumer_group, topic, partition_id, next_offset,
// topic_id), created if missing. topic_id holds the Kafka topic id the
// offset belongs to, in Kafka's text form (empty when unknown), so that the
// runner can tell a topic deleted and created again under the same name
// (see package sink, Recovery). Write runs, in one transaction:
//
//  1. in PostgreSQL, SET LOCAL lock_timeout (LockTimeout, default 5s);
//  2. for each partition of the batch, the compare-and-set of its position:
//     UPDATE ... SET next_offset = To, topic_id = TopicID WHERE ... AND
//     next_offset = From AND topic_id = FromTopicID, or, for a partition
//     with no offset yet, INSERT ... ON CONFLICT DO NOTHING. If a statement
//     changes no row, another writer moved the offset: roll back and return
//     a *sink.FencedError;
//  3. the Func for each record;
//  4. COMMIT.
//
// A record's rows and its offset are committed together or not at all, and
// two writers of the same offsets cannot both commit: in PostgreSQL the
// UPDATE locks the partition's offset row until the commit, so a second
// writer waits and then finds the offset moved; in SQLite writes are
// serialized by the database lock.
//
// In PostgreSQL a writer waits at most LockTimeout for a lock another
// transaction holds (the offset row, or a row its Func writes). A writer
// paused inside its transaction (SIGSTOP, a stopped VM, a long GC) keeps its
// locks, and PostgreSQL does not end idle transactions by default; a lock
// wait that times out (SQLSTATE 55P03) rolls back and returns a
// *sink.FencedError, so the runner drops the batch and rejoins instead of
// failing, until the paused writer commits or rolls back.
//
// # Recovery
//
// Nothing to do: a killed process's open transaction is rolled back by the
// database (SQLite's write-ahead log, PostgreSQL's aborted connection), and
// the runner that takes over reads the offsets that committed. A commit that
// returned an error may have landed; the runner's retry is then fenced and
// it rejoins, reading the offsets anew.
//
// An offsets table created by an earlier version, without topic_id, gets
// the column (ALTER TABLE ... ADD COLUMN topic_id, empty by default)
// at the sink's first use; in PostgreSQL the ALTER waits at most LockTimeout
// for the table's lock and is tried again at the next use. Its rows have no
// topic id until their next write stores one.
//
// # Limits
//
// The Func runs inside the sink's transaction and must have no effects
// outside it: a rolled-back attempt is retried, so an HTTP call or a write
// to another database from a Func may happen more than once. Readers of the
// tables see what the database's isolation level shows them (a batch at a
// time in both databases). A Func that reads a row and writes it back from
// Go, where several partitions write the same rows concurrently, needs
// Isolation(sql.LevelSerializable) in PostgreSQL; single-statement updates
// (INSERT ... ON CONFLICT DO UPDATE SET n = t.n + excluded.n) do not.
// SQLite has no lock timeout per statement: a writer paused inside its
// transaction holds the database's write lock, and the others wait for the
// connection's busy timeout (10 s with OpenSQLite), fail, are retried, and
// after WriteAttempts their Run returns the error.
package sqlsink
