// Package sqlsink is a sink.Sink for SQL databases on database/sql: each
// batch of records is written, together with the input offsets it covers,
// in one database transaction. It runs the same SQL on SQLite (3.24 or
// later) and PostgreSQL (9.5 or later); only the placeholders differ, and
// Tx rewrites them.
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
// sluice_offsets: consumer_group, topic, partition_id, next_offset), created
// if missing. Write runs, in one transaction:
//
//  1. for each partition of the batch, the compare-and-set of its offset:
//     UPDATE ... SET next_offset = To WHERE ... AND next_offset = From, or,
//     for a partition with no offset yet, INSERT ... ON CONFLICT DO NOTHING.
//     If a statement changes no row, another writer moved the offset: roll
//     back and return a *sink.FencedError;
//  2. the Func for each record;
//  3. COMMIT.
//
// A record's rows and its offset are committed together or not at all, and
// two writers of the same offsets cannot both commit: in PostgreSQL the
// UPDATE locks the partition's offset row until the commit, so a second
// writer waits and then finds the offset moved; in SQLite writes are
// serialized by the database lock.
//
// # Recovery
//
// Nothing to do: a killed process's open transaction is rolled back by the
// database (SQLite's write-ahead log, PostgreSQL's aborted connection), and
// the runner that takes over reads the offsets that committed. A commit that
// returned an error may have landed; the runner's retry is then fenced and
// it rejoins, reading the offsets anew.
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
package sqlsink
