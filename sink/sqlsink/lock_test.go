package sqlsink_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
	"github.com/sluicehq/sluice/sink/sqlsink/sqlsinktest"
)

// openPostgres opens a fresh PostgreSQL database for the test (skipped where
// PostgreSQL is not installed).
func openPostgres(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", sqlsinktest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// pausedWriter is a transaction on a connection of its own that did what a
// Write does first, the compare-and-set of a partition's offset, and then
// stopped: it holds the offset row's lock, as a process stopped inside its
// write (SIGSTOP, a long GC) does.
type pausedWriter struct {
	tx *sql.Tx
}

func pauseWriter(t *testing.T, db *sql.DB, group, topic string, from, to int64) *pausedWriter {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	res, err := tx.ExecContext(ctx, `UPDATE sluice_offsets SET next_offset = $1 WHERE consumer_group = $2 AND topic = $3 AND partition_id = 0 AND next_offset = $4`,
		to, group, topic, from)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("the paused writer's compare-and-set changed %d rows", n)
	}
	return &pausedWriter{tx: tx}
}

// A write that finds the partition's offset row locked by a paused writer
// gives up after the lock timeout with ErrFenced (the runner rejoins), not
// after its context's deadline with an error the runner retries and then
// returns from Run. Without lock_timeout the write waits until the deadline.
func TestLockedOffsetRowIsFenced(t *testing.T) {
	db := openPostgres(t)
	ctx := context.Background()
	s := newKV(t, db, sqlsink.LockTimeout(200*time.Millisecond))
	first := &sink.Batch{Group: "g",
		Records: []sink.Record{rec("in", 0, 0, "a", "1")},
		Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 1}},
	}
	if err := s.Write(ctx, first); err != nil {
		t.Fatal(err)
	}
	paused := pauseWriter(t, db, "g", "in", 1, 2)

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Write(wctx, &sink.Batch{Group: "g",
		Records: []sink.Record{rec("in", 0, 1, "b", "1")},
		Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 1, To: 2}},
	})
	took := time.Since(start)
	var fe *sink.FencedError
	if !errors.Is(err, sink.ErrFenced) || !errors.As(err, &fe) || fe.Partition != 0 || fe.From != 1 || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("Write behind a locked offset row = %v (after %v), want a FencedError naming the lock timeout", err, took)
	}
	if took > 3*time.Second {
		t.Errorf("the fenced write took %v, want about the lock timeout (200ms)", took)
	}
	// The lock timeout is the sink's transaction's own: the connection goes
	// back to the pool without it.
	var setting string
	if err := db.QueryRowContext(ctx, `SHOW lock_timeout`).Scan(&setting); err != nil || setting != "0" {
		t.Errorf("lock_timeout outside the sink's transactions = %q (%v), want 0", setting, err)
	}

	// A row the Func writes, locked by the paused writer, fences too.
	if _, err := paused.tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ('hot', 'paused')`); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, &sink.Batch{Group: "h",
		Records: []sink.Record{rec("in", 0, 0, "hot", "1")},
		Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: sink.NoOffset, To: 1}},
	}); !errors.Is(err, sink.ErrFenced) || !strings.Contains(err.Error(), "in/0@0") {
		t.Fatalf("Write of a row the paused writer holds = %v, want ErrFenced naming in/0@0", err)
	}

	// The paused writer resumes and commits: its batch stands, and a
	// writer that starts from its offset goes on.
	if err := paused.tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, &sink.Batch{Group: "g",
		Records: []sink.Record{rec("in", 0, 2, "c", "1")},
		Ranges:  []sink.Range{{Topic: "in", Partition: 0, From: 2, To: 3}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := offsets(t, s, "g", "in", 0); got[0] != 3 {
		t.Errorf("offsets %v, want 3", got)
	}
}

// The runner behind a paused writer (issue 13, item 4): a process stopped
// after its offset UPDATE and before its COMMIT keeps the offset row locked.
// The partition's new owner must not fail: its writes are fenced after the
// lock timeout and it rejoins, again and again, until the paused writer
// commits (the new owner then resumes after its batch) or dies (its
// transaction rolls back; the new owner writes those records itself).
// Without the lock timeout the new owner's writes time out, are retried
// WriteAttempts times, and Run returns the error.
func TestRunnerBehindAPausedWriter(t *testing.T) {
	for _, ending := range []string{"commits", "dies"} {
		t.Run("paused writer "+ending, func(t *testing.T) {
			db := openPostgres(t)
			brokers := testbroker.Brokers(t)
			app := testbroker.Unique(t, "sqllock")
			topic := app + "-in"
			group := app + "-sink"
			testbroker.CreateTopic(t, brokers, topic, 1, nil)
			produce := func(from, n int) {
				cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
				recs := make([]*kgo.Record, n)
				for i := range recs {
					recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", from+i), Value: []byte("v")}
				}
				if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			upsert := sqlsink.Upsert("kv", "k", "v")
			s, err := sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
				if err := upsert(ctx, tx, r); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO counts (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = counts.n + 1`, string(r.Key))
				return err
			}, sqlsink.Schema(kvSchema, `CREATE TABLE IF NOT EXISTS counts (k TEXT PRIMARY KEY, n BIGINT NOT NULL)`),
				sqlsink.LockTimeout(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			// An earlier owner wrote offsets 0..9; the paused one moved the
			// offset to 12 for records 10 and 11 and stopped before COMMIT.
			produce(0, 20)
			var recs []sink.Record
			for o := range int64(10) {
				recs = append(recs, rec(topic, 0, o, fmt.Sprintf("k%d", o), "v"))
			}
			if err := s.Write(context.Background(), &sink.Batch{Group: group, Records: recs,
				Ranges: []sink.Range{{Topic: topic, Partition: 0, From: sink.NoOffset, To: 10}}}); err != nil {
				t.Fatal(err)
			}
			paused := pauseWriter(t, db, group, topic, 10, 12)
			for _, k := range []string{"k10", "k11"} {
				if _, err := paused.tx.Exec(`INSERT INTO counts (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = counts.n + 1`, k); err != nil {
					t.Fatal(err)
				}
			}

			r, err := sink.New(s, sink.Brokers(brokers...), sink.ApplicationID(app), sink.Topics(topic),
				sink.SessionTimeout(6*time.Second), sink.HeartbeatInterval(500*time.Millisecond),
				sink.RebalanceTimeout(10*time.Second), sink.WriteTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()

			// Longer than WriteAttempts × WriteTimeout (6s): without the
			// lock timeout, Run has failed by then.
			hold := time.After(9 * time.Second)
		holding:
			for {
				select {
				case err := <-done:
					t.Fatalf("Run returned %v while the paused writer held the offset row (metrics %+v)", err, r.Metrics())
				case <-hold:
					break holding
				case <-time.After(50 * time.Millisecond):
				}
			}
			if m := r.Metrics(); m.Fenced < 2 || m.Restarts < 2 || m.Batches != 0 {
				t.Errorf("behind the paused writer: %+v, want fenced writes and rejoins, no batch", m)
			}
			if ending == "commits" {
				err = paused.tx.Commit()
			} else {
				err = paused.tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for offsets(t, s, group, topic, 0)[0] < 20 {
				select {
				case err := <-done:
					t.Fatalf("Run returned %v", err)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("the sink stores %v after the paused writer %s, want 20 (metrics %+v)", offsets(t, s, group, topic, 0), ending, r.Metrics())
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			rows, err := db.Query(`SELECT k, n FROM counts`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			seen := 0
			for rows.Next() {
				var k string
				var n int
				if err := rows.Scan(&k, &n); err != nil {
					t.Fatal(err)
				}
				seen++
				if n != 1 {
					t.Errorf("%s counted %d times", k, n)
				}
			}
			// Records 0..9 by the earlier owner; 10 and 11 by the paused
			// writer if it committed, else by the runner; the rest by the
			// runner.
			if seen != 20 {
				t.Errorf("%d keys counted, want 20", seen)
			}
			t.Logf("metrics: %+v", r.Metrics())
		})
	}
}
