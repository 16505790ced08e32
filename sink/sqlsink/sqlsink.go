package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/sink"
)

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("sqlsink: configuration error")

// Func writes the effect of one record inside the sink's transaction: insert
// a row, update a sum, delete on a tombstone. It runs once per record per
// attempt; an attempt whose transaction rolls back is retried, so the Func
// must not have effects outside tx. An error rolls back the whole batch and
// fails the write (see sink.Sink.Write for what the runner does then).
type Func func(ctx context.Context, tx *Tx, r sink.Record) error

// Sink stores records and their input offsets in a SQL database, in one
// database transaction per batch. It implements sink.Sink. It is safe for
// concurrent use.
type Sink struct {
	db      *sql.DB
	fn      Func
	dialect Dialect
	table   string
	txOpts  *sql.TxOptions
	schema  []string
	// lockTimeout bounds each lock wait of a write (PostgreSQL).
	lockTimeout time.Duration

	// q holds the offset statements, in the dialect's placeholders.
	q struct {
		create, probe, probeTopicID, addTopicID string
		selectOffsets, insert, update           string
	}

	initMu sync.Mutex
	inited bool
}

// Opt configures a Sink.
type Opt interface{ apply(*Sink) }

type opt func(*Sink)

func (o opt) apply(s *Sink) { o(s) }

// OffsetsTable names the table holding the offsets. Default
// "sluice_offsets". It is created if missing, with the columns
// consumer_group, topic, partition_id, next_offset and topic_id and the
// primary key (consumer_group, topic, partition_id); a table without
// topic_id (from an earlier version) gets the column at the first use. A schema-qualified name
// ("ingest.offsets") is allowed; several sinks may share one table.
func OffsetsTable(name string) Opt { return opt(func(s *Sink) { s.table = name }) }

// WithDialect sets the SQL dialect. Default: told from the driver's package
// (modernc.org/sqlite and github.com/mattn/go-sqlite3: SQLite;
// github.com/jackc/pgx and github.com/lib/pq: Postgres); New fails for
// another driver without this option.
func WithDialect(d Dialect) Opt { return opt(func(s *Sink) { s.dialect = d }) }

// Isolation sets the isolation level of the sink's transactions. Default:
// the database's (read committed in PostgreSQL; SQLite is always
// serializable). The offsets' compare-and-set is correct at any level; the
// level matters for the Func's own reads (a read-modify-write in Go of a row
// that other partitions also write needs sql.LevelSerializable in
// PostgreSQL, whose serialization failures then make the runner retry).
func Isolation(level sql.IsolationLevel) Opt {
	return opt(func(s *Sink) { s.txOpts = &sql.TxOptions{Isolation: level} })
}

// LockTimeout bounds how long a PostgreSQL write waits for one lock that
// another transaction holds: the partition's offset row, or a row the Func
// writes. Default 5s; it is also kept below half the time the write's
// context has left. Sets PostgreSQL's lock_timeout (SET LOCAL, for the
// sink's transaction only). A writer paused inside its transaction (a
// stopped process, a long GC) holds its row locks until it resumes or its
// connection dies, and PostgreSQL does not end idle transactions by default
// (idle_in_transaction_session_timeout is off). Instead of waiting for it,
// a write whose lock wait times out (SQLSTATE 55P03, lock_not_available)
// rolls back and returns a *sink.FencedError: the runner drops the batch
// and rejoins the group, reading the offsets again, and keeps doing so
// until the paused writer commits (its batch then stands, and the new
// owner resumes after it) or rolls back. Normal contention between
// partitions that write the same rows also waits at most this long before
// the batch is dropped and read again, so keep it above the time a batch
// takes to commit. No effect on SQLite, whose writers wait for the database
// lock for the busy timeout of the connection (see OpenSQLite).
func LockTimeout(d time.Duration) Opt { return opt(func(s *Sink) { s.lockTimeout = d }) }

// Schema adds statements to run once, before the sink's first use and after
// the offsets table is created: typically CREATE TABLE IF NOT EXISTS for the
// tables the Func writes. They take no arguments and are run as given (no
// placeholder rewriting).
func Schema(stmts ...string) Opt {
	return opt(func(s *Sink) { s.schema = append(s.schema, stmts...) })
}

// New returns a Sink that writes each record with fn into db. It does not
// touch the database; the offsets table and the Schema statements are
// created at the first Offsets or Write. The caller keeps ownership of db.
func New(db *sql.DB, fn Func, opts ...Opt) (*Sink, error) {
	s := &Sink{db: db, fn: fn, table: "sluice_offsets", lockTimeout: 5 * time.Second}
	for _, o := range opts {
		o.apply(s)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	d := s.dialect
	s.q.create = `CREATE TABLE IF NOT EXISTS ` + s.table + ` (
	consumer_group TEXT NOT NULL,
	topic TEXT NOT NULL,
	partition_id INTEGER NOT NULL,
	next_offset BIGINT NOT NULL,
	topic_id TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (consumer_group, topic, partition_id)
)`
	s.q.probe = `SELECT next_offset FROM ` + s.table + ` WHERE 1 = 0`
	// A table created before the sink kept topic ids lacks the column; its
	// rows get '' (unknown), which the next write of each replaces.
	s.q.probeTopicID = `SELECT topic_id FROM ` + s.table + ` WHERE 1 = 0`
	s.q.addTopicID = `ALTER TABLE ` + s.table + ` ADD COLUMN topic_id TEXT NOT NULL DEFAULT ''`
	s.q.selectOffsets = d.Rebind(`SELECT partition_id, next_offset, topic_id FROM ` + s.table + ` WHERE consumer_group = ? AND topic = ?`)
	// INVARIANT: a partition's position is only ever created by insert
	// (when the writer saw none) or moved by update from the offset and
	// topic id the writer saw; both change no row when another writer got
	// there first.
	s.q.insert = d.Rebind(`INSERT INTO ` + s.table + ` (consumer_group, topic, partition_id, next_offset, topic_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	s.q.update = d.Rebind(`UPDATE ` + s.table + ` SET next_offset = ?, topic_id = ? WHERE consumer_group = ? AND topic = ? AND partition_id = ? AND next_offset = ? AND topic_id = ?`)
	return s, nil
}

func (s *Sink) validate() error {
	var errs []error
	if s.db == nil {
		errs = append(errs, errors.New("db is nil"))
	}
	if s.fn == nil {
		errs = append(errs, errors.New("the record function is nil: pass sqlsink.Upsert(...) or your own Func"))
	}
	if s.lockTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("lock timeout %v: must be at least 1ms (PostgreSQL's lock_timeout 0 would wait forever)", s.lockTimeout))
	}
	if !validTable(s.table) {
		errs = append(errs, fmt.Errorf("offsets table %q: use letters, digits and '_', optionally schema-qualified (schema.table)", s.table))
	}
	switch s.dialect {
	case SQLite, Postgres:
	case 0:
		if s.db != nil {
			d, err := detectDialect(s.db)
			if err != nil {
				errs = append(errs, err)
			}
			s.dialect = d
		}
	default:
		errs = append(errs, fmt.Errorf("unknown dialect %d", int(s.dialect)))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}

// validTable accepts [schema.]name with names of letters, digits and '_'
// not starting with a digit.
func validTable(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || (p[0] >= '0' && p[0] <= '9') {
			return false
		}
		for _, r := range p {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	return true
}

// Dialect returns the sink's SQL dialect.
func (s *Sink) Dialect() Dialect { return s.dialect }

// init creates the offsets table and runs the Schema statements, once. A
// failure is returned and the next call tries again.
func (s *Sink) init(ctx context.Context) error {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.inited {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, s.q.create); err != nil {
		// Two processes creating the table at once can collide in
		// PostgreSQL (a unique violation in its catalog); it is fine if the
		// table exists now.
		if _, perr := s.db.ExecContext(ctx, s.q.probe); perr != nil {
			return fmt.Errorf("sqlsink: creating offsets table %s: %w", s.table, err)
		}
	}
	if err := s.addTopicIDColumn(ctx); err != nil {
		return err
	}
	for _, stmt := range s.schema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlsink: schema statement %q: %w", firstLine(stmt), err)
		}
	}
	s.inited = true
	return nil
}

// addTopicIDColumn adds the topic_id column to an offsets table created
// before the sink kept topic ids. In PostgreSQL, ALTER TABLE waits for every
// open transaction on the table (and holds up everyone behind it), so it
// waits at most LockTimeout and fails; the next Offsets or Write tries
// again.
func (s *Sink) addTopicIDColumn(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, s.q.probeTopicID); err == nil {
		return nil
	}
	err := func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if s.dialect == Postgres {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", s.lockTimeout.Milliseconds())); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.q.addTopicID); err != nil {
			return err
		}
		return tx.Commit()
	}()
	if err != nil {
		// Another process may have added it meanwhile.
		if _, perr := s.db.ExecContext(ctx, s.q.probeTopicID); perr == nil {
			return nil
		}
		return fmt.Errorf("sqlsink: adding column topic_id to offsets table %s (created by an earlier version of the sink): %w", s.table, err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// Offsets returns the stored positions (offset and topic id) of group's
// partitions of topic, for those of partitions that have one. A row stored
// before the sink kept topic ids has the zero id. See sink.Sink.
func (s *Sink) Offsets(ctx context.Context, group, topic string, partitions []int32) (map[int32]sink.Position, error) {
	if err := s.init(ctx); err != nil {
		return nil, err
	}
	want := make(map[int32]bool, len(partitions))
	for _, p := range partitions {
		want[p] = true
	}
	rows, err := s.db.QueryContext(ctx, s.q.selectOffsets, group, topic)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: reading offsets: %w", err)
	}
	defer rows.Close()
	out := map[int32]sink.Position{}
	for rows.Next() {
		var p int32
		var o int64
		var idText string
		if err := rows.Scan(&p, &o, &idText); err != nil {
			return nil, fmt.Errorf("sqlsink: reading offsets: %w", err)
		}
		if !want[p] {
			continue
		}
		id, err := sink.ParseTopicID(idText)
		if err != nil {
			return nil, fmt.Errorf("sqlsink: offsets table %s, group %s, %s/%d: topic_id: %w", s.table, group, topic, p, err)
		}
		out[p] = sink.Position{Offset: o, TopicID: id}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlsink: reading offsets: %w", err)
	}
	return out, nil
}

// Write stores the batch in one database transaction: first the
// compare-and-set of every partition's offset (which in PostgreSQL also
// locks the partition's offset row until the commit, so that two writers of
// one partition queue up and the second is fenced), then the Func for each
// record, then the commit. A failed compare-and-set rolls back and returns a
// *sink.FencedError; so does, in PostgreSQL, a lock wait longer than
// LockTimeout (another writer holds the offset row or a row the Func
// writes: a writer paused inside its transaction). See sink.Sink.
func (s *Sink) Write(ctx context.Context, b *sink.Batch) (err error) {
	if err := s.init(ctx); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, s.txOpts)
	if err != nil {
		return fmt.Errorf("sqlsink: beginning a transaction: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	lockTimeout := s.lockTimeout
	if s.dialect == Postgres {
		if dl, ok := ctx.Deadline(); ok {
			// A lock wait must end before the write's deadline, or the
			// runner sees a timeout (retried, then fatal) instead of a
			// fence (a rejoin).
			lockTimeout = max(min(lockTimeout, time.Until(dl)/2), time.Millisecond)
		}
		// LOCAL: for this transaction only; the pooled connection keeps
		// its own setting.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", lockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("sqlsink: setting lock_timeout: %w", err)
		}
	}
	lockErr := func(rg sink.Range, what string, err error) error {
		return &sink.FencedError{Group: b.Group, Topic: rg.Topic, Partition: rg.Partition, From: rg.From,
			Cause: fmt.Errorf("%s: another transaction held a lock longer than the lock timeout %v (a writer paused inside its transaction?): %w", what, lockTimeout, err)}
	}
	for _, rg := range b.Ranges {
		var res sql.Result
		if rg.From == sink.NoOffset {
			res, err = tx.ExecContext(ctx, s.q.insert, b.Group, rg.Topic, rg.Partition, rg.To, rg.TopicID.String())
		} else {
			res, err = tx.ExecContext(ctx, s.q.update, rg.To, rg.TopicID.String(), b.Group, rg.Topic, rg.Partition, rg.From, rg.FromTopicID.String())
		}
		if err != nil {
			if isLockTimeout(err) {
				return lockErr(rg, "storing the offset", err)
			}
			return fmt.Errorf("sqlsink: storing the offset of %s/%d: %w", rg.Topic, rg.Partition, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlsink: storing the offset of %s/%d: %w", rg.Topic, rg.Partition, err)
		}
		if n != 1 {
			return &sink.FencedError{Group: b.Group, Topic: rg.Topic, Partition: rg.Partition, From: rg.From}
		}
	}
	t := &Tx{tx: tx, d: s.dialect}
	for _, r := range b.Records {
		if err := s.fn(ctx, t, r); err != nil {
			if isLockTimeout(err) {
				return lockErr(rangeOf(b, r), fmt.Sprintf("record %s/%d@%d", r.Topic, r.Partition, r.Offset), err)
			}
			return fmt.Errorf("sqlsink: record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
	}
	if err := tx.Commit(); err != nil {
		// The outcome is unknown: the runner retries, and a retry of a
		// commit that landed is fenced.
		return fmt.Errorf("sqlsink: commit: %w", err)
	}
	committed = true
	return nil
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available
// (SQLSTATE 55P03), which lock_timeout raises. Drivers that report the
// SQLSTATE through a SQLState method (pgx's *pgconn.PgError, lib/pq's
// *pq.Error) are understood.
func isLockTimeout(err error) bool {
	var e interface{ SQLState() string }
	return errors.As(err, &e) && e.SQLState() == "55P03"
}

// rangeOf returns the batch's range of r's partition.
func rangeOf(b *sink.Batch, r sink.Record) sink.Range {
	for _, rg := range b.Ranges {
		if rg.Topic == r.Topic && rg.Partition == r.Partition {
			return rg
		}
	}
	return sink.Range{Topic: r.Topic, Partition: r.Partition, From: sink.NoOffset}
}

// Upsert returns a Func that keeps the latest value of each key in table: it
// inserts (keyColumn, valueColumn) = (key, value), replacing the value of an
// existing key, and deletes the key's row for a null value (a tombstone).
// Key and value are passed as strings (use TEXT columns; for binary data or
// other types write a Func). A record with a null key fails the batch.
// The table must exist with a primary key or unique constraint on keyColumn
// (see Schema). Names are used as given: pass trusted identifiers.
func Upsert(table, keyColumn, valueColumn string) Func {
	upsert := `INSERT INTO ` + table + ` (` + keyColumn + `, ` + valueColumn + `) VALUES (?, ?) ` +
		`ON CONFLICT (` + keyColumn + `) DO UPDATE SET ` + valueColumn + ` = excluded.` + valueColumn
	del := `DELETE FROM ` + table + ` WHERE ` + keyColumn + ` = ?`
	return func(ctx context.Context, tx *Tx, r sink.Record) error {
		if r.Key == nil {
			return errors.New("record has a null key: Upsert needs one")
		}
		var err error
		if r.Value == nil {
			_, err = tx.Exec(ctx, del, string(r.Key))
		} else {
			_, err = tx.Exec(ctx, upsert, string(r.Key), string(r.Value))
		}
		return err
	}
}
