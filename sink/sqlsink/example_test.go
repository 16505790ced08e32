package sqlsink_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

// Keep the latest color of each thing in a SQLite table, exactly once, from
// a topic on an in-process Kafka (kfake).
func Example() {
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1))
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("colors"))
	defer cl.Close()
	ctx := context.Background()
	kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "colors")
	cl.ProduceSync(ctx,
		&kgo.Record{Key: []byte("sky"), Value: []byte("grey")},
		&kgo.Record{Key: []byte("grass"), Value: []byte("green")},
		&kgo.Record{Key: []byte("sky"), Value: []byte("blue")},
	)

	dir, _ := os.MkdirTemp("", "sqlsink-example-")
	defer os.RemoveAll(dir)
	db, err := sqlsink.OpenSQLite(filepath.Join(dir, "colors.sqlite"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	s, err := sqlsink.New(db, sqlsink.Upsert("colors", "name", "color"),
		sqlsink.Schema(`CREATE TABLE IF NOT EXISTS colors (name TEXT PRIMARY KEY, color TEXT NOT NULL)`))
	if err != nil {
		fmt.Println(err)
		return
	}

	r, err := sink.New(s, sink.Brokers(brokers...), sink.ApplicationID("example"), sink.Topics("colors"))
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	// Wait until the stored offset reaches the end of the topic (3).
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if o, _ := s.Offsets(ctx, r.Group(), "colors", []int32{0}); o[0].Offset == 3 {
			break
		}
	}
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}

	rows, _ := db.Query(`SELECT name, color FROM colors ORDER BY name`)
	defer rows.Close()
	for rows.Next() {
		var name, color string
		rows.Scan(&name, &color)
		fmt.Println(name, color)
	}
	var next int64
	db.QueryRow(`SELECT next_offset FROM sluice_offsets WHERE consumer_group = 'example-sink'`).Scan(&next)
	fmt.Println("next offset:", next)
	// Output:
	// grass green
	// sky blue
	// next offset: 3
}
