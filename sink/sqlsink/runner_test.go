package sqlsink_test

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

// The runner and the SQL sink together, against a broker: every record is
// counted exactly once per key, across a restart, and the latest value per
// key is kept.
func TestIntegrationRunnerIntoSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a broker")
	}
	forEachBackend(t, func(t *testing.T, db *sql.DB) {
		brokers := testbroker.Brokers(t)
		app := testbroker.Unique(t, "sql")
		topic := app + "-in"
		testbroker.CreateTopic(t, brokers, topic, 3, nil)

		latest := sqlsink.Upsert("kv", "k", "v")
		s, err := sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
			if err := latest(ctx, tx, r); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO counts (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = counts.n + 1`, string(r.Key))
			return err
		}, sqlsink.Schema(kvSchema, `CREATE TABLE IF NOT EXISTS counts (k TEXT PRIMARY KEY, n BIGINT NOT NULL)`))
		if err != nil {
			t.Fatal(err)
		}

		want := map[string]int{}
		last := map[string]string{}
		produce := func(from, n int) {
			cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
			recs := make([]*kgo.Record, n)
			for i := range recs {
				k := fmt.Sprintf("k%d", (from+i)%17)
				v := strconv.Itoa(from + i)
				recs[i] = &kgo.Record{Key: []byte(k), Value: []byte(v)}
				want[k]++
				last[k] = v
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		run := func() {
			r, err := sink.New(s, sink.Brokers(brokers...), sink.ApplicationID(app), sink.Topics(topic),
				sink.MaxRecordsPerBatch(100), sink.InstanceID("i1"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			ends := map[int32]int64{}
			ls, err := testbroker.Admin(t, brokers).ListEndOffsets(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			ls.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
			deadline := time.Now().Add(time.Minute)
			for {
				got, err := s.Offsets(context.Background(), r.Group(), topic, []int32{0, 1, 2})
				if err != nil {
					t.Fatal(err)
				}
				caughtUp := true
				for p, e := range ends {
					if e > 0 && got[p].Offset < e {
						caughtUp = false
					}
				}
				if caughtUp {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the sink stores %v, want %v", got, ends)
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		produce(0, 300)
		run()
		produce(300, 200)
		run() // resumes from the sink's offsets

		rows, err := db.Query(`SELECT k, n FROM counts`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string]int{}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			got[k] = n
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("counts %v, want %v", got, want)
		}
		if got := kv(t, db); fmt.Sprint(got) != fmt.Sprint(last) {
			t.Errorf("latest values %v, want %v", got, last)
		}
	})
}
