package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
)

// samplePayments is loaded when standard input is a terminal.
const samplePayments = `alice 100
bob 50
carol 75
alice -30
bob 20
dave 10
carol -25
alice 5`

// runEmbedded loads the payments into an in-process Kafka, runs the sink
// until the database's offsets reach the end of the topic, and prints the
// table.
func runEmbedded(ctx context.Context, c config, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	payments, err := readPayments(stdin)
	if err != nil {
		return err
	}
	// The demo's directory holds the temporary database.
	demo, err := cli.StartDemo("tosql", "")
	if err != nil {
		return err
	}
	defer demo.Close()
	if err := demo.CreateTopics(ctx, c.partitions, nil, c.input); err != nil {
		return err
	}
	cl, err := demo.Client(kgo.DefaultProduceTopic(c.input))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(payments))
	for i, p := range payments {
		recs[i] = &kgo.Record{Key: []byte(p[0]), Value: []byte(p[1])}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("loading input: %w", err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, c.input)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return err
	}

	if c.postgres == "" && !c.dbGiven {
		c.dbPath = filepath.Join(demo.StateDir, "tosql.sqlite")
	}
	db, err := openDB(c)
	if err != nil {
		return err
	}
	defer db.Close()
	s, err := newSink(db, c)
	if err != nil {
		return err
	}
	r, err := newRunner(s, c, demo.Brokers, logger)
	if err != nil {
		return err
	}
	partitions := make([]int32, c.partitions)
	for i := range partitions {
		partitions[i] = int32(i)
	}
	// The embedded Kafka is new: offsets stored by an earlier run would
	// point into a topic that no longer exists.
	if old, err := s.Offsets(ctx, r.Group(), c.input, partitions); err != nil {
		return err
	} else if len(old) > 0 {
		return fmt.Errorf("the database already holds offsets of group %s for topic %s from an earlier run, and the embedded Kafka is new: use a fresh database, or another -app", r.Group(), c.input)
	}

	var readErr error
	caughtUp := func() bool {
		stored, err := s.Offsets(ctx, r.Group(), c.input, partitions)
		if err != nil {
			readErr = err
			return true
		}
		done := true
		ends.Each(func(e kadm.ListedOffset) {
			if e.Offset > 0 && stored[e.Partition].Offset < e.Offset {
				done = false
			}
		})
		return done
	}
	err = demo.RunUntil(ctx, r.Run, caughtUp, c.timeout, "the table")
	if err == nil {
		err = readErr
	}
	if err != nil {
		return err
	}
	rows, err := readBalances(ctx, db, c.table)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(stdout)
	for _, b := range rows {
		fmt.Fprintf(bw, "%s\t%d\t%d\n", b.account, b.total, b.updates)
	}
	return bw.Flush()
}

// readPayments returns the "account amount" lines of stdin when it is not a
// terminal, or the sample, as [account, amount] pairs. Blank lines are
// skipped.
func readPayments(stdin io.Reader) ([][2]string, error) {
	var text io.Reader = strings.NewReader(samplePayments)
	if f, ok := stdin.(*os.File); !ok {
		text = stdin
	} else if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice == 0 {
		text = stdin
	}
	var out [][2]string
	sc := bufio.NewScanner(text)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("input line %d: %q is not \"account amount\"", n, sc.Text())
		}
		out = append(out, [2]string{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	return out, nil
}
