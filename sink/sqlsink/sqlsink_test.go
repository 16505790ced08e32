package sqlsink_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
	"github.com/sluicehq/sluice/sink/sqlsink/sqlsinktest"
)

func TestMain(m *testing.M) { sqlsinktest.Main(m) }

// backend opens a fresh database of one dialect for a test.
type backend struct {
	name string
	open func(t *testing.T) *sql.DB
}

var backends = []backend{
	{"sqlite", func(t *testing.T) *sql.DB {
		db, err := sqlsink.OpenSQLite(filepath.Join(t.TempDir(), "test.sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
	{"postgres", func(t *testing.T) *sql.DB {
		db, err := sql.Open("pgx", sqlsinktest.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
}

// forEachBackend runs test against SQLite and PostgreSQL (skipped with a
// message where PostgreSQL is not installed).
func forEachBackend(t *testing.T, test func(t *testing.T, db *sql.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.open(t)) })
	}
}

const kvSchema = `CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`

func newKV(t *testing.T, db *sql.DB, opts ...sqlsink.Opt) *sqlsink.Sink {
	t.Helper()
	s, err := sqlsink.New(db, sqlsink.Upsert("kv", "k", "v"), append([]sqlsink.Opt{sqlsink.Schema(kvSchema)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(topic string, p int32, o int64, k, v string) sink.Record {
	r := sink.Record{Topic: topic, Partition: p, Offset: o, Key: []byte(k)}
	if v != "<nil>" {
		r.Value = []byte(v)
	}
	return r
}

func kv(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT k, v FROM kv`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

// offsets returns the stored offsets, without their topic ids.
func offsets(t *testing.T, s *sqlsink.Sink, group, topic string, ps ...int32) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	for p, pos := range positions(t, s, group, topic, ps...) {
		out[p] = pos.Offset
	}
	return out
}

func positions(t *testing.T, s *sqlsink.Sink, group, topic string, ps ...int32) map[int32]sink.Position {
	t.Helper()
	o, err := s.Offsets(context.Background(), group, topic, ps)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestWriteAndCompareAndSet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		s := newKV(t, db)
		if got := offsets(t, s, "g", "in", 0, 1); len(got) != 0 {
			t.Fatalf("offsets of a new sink: %v, want none", got)
		}

		// The first batch: nothing stored yet.
		b1 := &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 0, "a", "1"), rec("in", 1, 0, "b", "1"), rec("in", 0, 1, "a", "2")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 2}, {Topic: "in", Partition: 1, From: sink.NoOffset, To: 1}},
		}
		if err := s.Write(ctx, b1); err != nil {
			t.Fatal(err)
		}
		if got := offsets(t, s, "g", "in", 0, 1, 2); fmt.Sprint(got) != "map[0:2 1:1]" {
			t.Errorf("offsets after the first batch: %v", got)
		}
		if got := kv(t, db); fmt.Sprint(got) != "map[a:2 b:1]" {
			t.Errorf("table after the first batch: %v", got)
		}
		// Other groups and topics are apart.
		if got := offsets(t, s, "other", "in", 0, 1); len(got) != 0 {
			t.Errorf("offsets of another group: %v", got)
		}
		if got := offsets(t, s, "g", "in", 1); fmt.Sprint(got) != "map[1:1]" {
			t.Errorf("offsets filtered to partition 1: %v", got)
		}

		// The next batch continues from the stored offset; a tombstone
		// deletes.
		b2 := &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 2, "c", "3"), rec("in", 0, 5, "b", "<nil>")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 2, To: 6}},
		}
		if err := s.Write(ctx, b2); err != nil {
			t.Fatal(err)
		}
		if got := kv(t, db); fmt.Sprint(got) != "map[a:2 c:3]" {
			t.Errorf("table after the second batch: %v", got)
		}

		// Replaying the same batch (a zombie, or a retry of a write that
		// landed) is fenced and changes nothing.
		err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 2, "zombie", "x")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 2, To: 3}},
		})
		var fe *sink.FencedError
		if !errors.Is(err, sink.ErrFenced) || !errors.As(err, &fe) || fe.Partition != 0 || fe.From != 2 || fe.Group != "g" {
			t.Fatalf("stale write: %v, want a FencedError for in/0 from 2", err)
		}
		// So is a writer that saw no offset where one is stored.
		err = s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 1, 0, "zombie", "x")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 1, From: sink.NoOffset, To: 1}},
		})
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("write expecting no offset where one is stored: %v, want ErrFenced", err)
		}
		// A batch whose second range is stale rolls back its first one too.
		err = s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 6, "zombie", "x"), rec("in", 1, 1, "zombie", "y")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 6, To: 7}, {Topic: "in", Partition: 1, From: 0, To: 2}},
		})
		if !errors.Is(err, sink.ErrFenced) {
			t.Fatalf("half-stale write: %v, want ErrFenced", err)
		}
		if got := offsets(t, s, "g", "in", 0, 1); fmt.Sprint(got) != "map[0:6 1:1]" {
			t.Errorf("offsets after fenced writes: %v, want map[0:6 1:1]", got)
		}
		if got := kv(t, db); fmt.Sprint(got) != "map[a:2 c:3]" {
			t.Errorf("table after fenced writes: %v", got)
		}
	})
}

func TestFuncErrorRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		boom := errors.New("bad record")
		upsert := sqlsink.Upsert("kv", "k", "v")
		s, err := sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
			if string(r.Value) == "bad" {
				return boom
			}
			return upsert(ctx, tx, r)
		}, sqlsink.Schema(kvSchema))
		if err != nil {
			t.Fatal(err)
		}
		err = s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 0, "a", "1"), rec("in", 0, 1, "b", "bad")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 2}},
		})
		if !errors.Is(err, boom) || errors.Is(err, sink.ErrFenced) || !strings.Contains(err.Error(), "in/0@1") {
			t.Fatalf("Write = %v, want the record's error naming in/0@1", err)
		}
		if got := kv(t, db); len(got) != 0 {
			t.Errorf("table after a failed batch: %v, want empty", got)
		}
		if got := offsets(t, s, "g", "in", 0); len(got) != 0 {
			t.Errorf("offsets after a failed batch: %v, want none", got)
		}
		// A null key is an error of Upsert.
		err = s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{{Topic: "in", Partition: 0, Offset: 0, Value: []byte("v")}},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 1}},
		})
		if err == nil || !strings.Contains(err.Error(), "null key") {
			t.Errorf("Write of a null key = %v, want an error", err)
		}
	})
}

// Writers racing with the same expected offset: exactly one wins, on
// separate connections, and the table holds only the winner's rows.
func TestConcurrentWritersOneWins(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		s := newKV(t, db)
		for round, from := range []int64{sink.NoOffset, 10} {
			const writers = 6
			var wg sync.WaitGroup
			errs := make([]error, writers)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b := &sink.Batch{Group: "g",
						Records: []sink.Record{rec("in", 0, 0, fmt.Sprintf("r%d-w%d", round, i), "x")},
						Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: from, To: 10 * int64(round+1)}},
					}
					errs[i] = s.Write(ctx, b)
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, sink.ErrFenced):
					t.Errorf("round %d: unexpected error %v", round, err)
				}
			}
			if won != 1 {
				t.Errorf("round %d: %d writers won, want 1", round, won)
			}
			if got := kv(t, db); len(got) != round+1 {
				t.Errorf("round %d: table %v, want %d rows", round, got, round+1)
			}
		}
	})
}

func TestSchemaAndTableOptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		ctx := context.Background()
		s := newKV(t, db, sqlsink.OffsetsTable("my_offsets"))
		if err := s.Write(ctx, &sink.Batch{Group: "g",
			Records: []sink.Record{rec("in", 0, 0, "a", "1")},
			Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 1}},
		}); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := db.QueryRow(`SELECT next_offset FROM my_offsets WHERE consumer_group = 'g'`).Scan(&n); err != nil || n != 1 {
			t.Errorf("my_offsets holds %d (%v), want 1", n, err)
		}
		// A second sink on the same database finds the tables there.
		s2 := newKV(t, db, sqlsink.OffsetsTable("my_offsets"))
		if got := offsets(t, s2, "g", "in", 0); got[0] != 1 {
			t.Errorf("second sink reads %v", got)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	db, err := sqlsink.OpenSQLite(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fn := sqlsink.Upsert("kv", "k", "v")
	for _, tc := range []struct {
		name string
		db   *sql.DB
		fn   sqlsink.Func
		opts []sqlsink.Opt
	}{
		{"nil db", nil, fn, nil},
		{"nil func", db, nil, nil},
		{"bad table", db, fn, []sqlsink.Opt{sqlsink.OffsetsTable("x; DROP TABLE y")}},
		{"bad dialect", db, fn, []sqlsink.Opt{sqlsink.WithDialect(7)}},
	} {
		if _, err := sqlsink.New(tc.db, tc.fn, tc.opts...); !errors.Is(err, sqlsink.ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", tc.name, err)
		}
	}
	s, err := sqlsink.New(db, fn)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dialect() != sqlsink.SQLite {
		t.Errorf("detected dialect %v, want sqlite", s.Dialect())
	}
}

func TestRebind(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"UPDATE t SET a = ? WHERE b = ? AND c = ?", "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"},
		{"SELECT '?', \"a?b\", ? FROM t", "SELECT '?', \"a?b\", $1 FROM t"},
		{"SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"},
		{"SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{"SELECT /* ? */ ?", "SELECT /* ? */ $1"},
		{"SELECT 'unterminated ?", "SELECT 'unterminated ?"},
	} {
		if got := sqlsink.Postgres.Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := sqlsink.SQLite.Rebind(tc.in); got != tc.in {
			t.Errorf("SQLite Rebind changed %q to %q", tc.in, got)
		}
	}
}

// The Postgres backend really is PostgreSQL (and not skipped silently).
func TestPostgresServer(t *testing.T) {
	db, err := sql.Open("pgx", sqlsinktest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.QueryRowContext(ctx, `SELECT version()`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Logf("server: %s", v)
	if !strings.HasPrefix(v, "PostgreSQL") {
		t.Errorf("version() = %q", v)
	}
}
