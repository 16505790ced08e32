package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// sampleText is counted when standard input is a terminal.
const sampleText = `the quick brown fox jumps over the lazy dog
the dog barks and the fox runs
exactly once means every word is counted once and only once`

// runEmbedded runs the word count on an in-process Kafka: it loads the input,
// runs the processor until the output holds one record per input word (each
// word occurrence yields exactly one count update), and prints the final
// counts.
func runEmbedded(ctx context.Context, c config, topo topology, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	lines, err := readInput(stdin)
	if err != nil {
		return err
	}
	words := 0
	for _, l := range lines {
		words += len(strings.Fields(l))
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("starting the embedded broker: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(c.input))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []string{c.input, c.output} {
		if _, err := adm.CreateTopic(ctx, int32(c.partitions), 1, nil, t); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("loading input: %w", err)
	}

	if c.stateDir == "" {
		dir, err := os.MkdirTemp("", "sluice-wordcount-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.stateDir = dir
	}
	p, err := newProcessor(c, topo, brokers, logger)
	if err != nil {
		return err
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = p.Run(pctx)
	}()

	counts, err := readCounts(ctx, brokers, c.output, words, c.timeout, done)
	stop()
	<-done
	if runErr != nil {
		err = runErr
	}
	if err != nil {
		return err
	}
	type wc struct {
		word  string
		count int64
	}
	var out []wc
	for w, n := range counts {
		out = append(out, wc{w, n})
	}
	slices.SortFunc(out, func(a, b wc) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return strings.Compare(a.word, b.word)
	})
	bw := bufio.NewWriter(stdout)
	for _, e := range out {
		fmt.Fprintf(bw, "%s\t%d\n", e.word, e.count)
	}
	return bw.Flush()
}

// readInput returns the lines of stdin when it is not a terminal, or the
// sample text.
func readInput(stdin io.Reader) ([]string, error) {
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return strings.Split(sampleText, "\n"), nil
		}
	}
	var lines []string
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	return lines, nil
}

// readCounts reads the output with a read_committed consumer until it has
// seen want records, and returns the last count of each word.
func readCounts(ctx context.Context, brokers []string, topic string, want int, timeout time.Duration, stopped <-chan struct{}) (map[string]int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	counts := map[string]int64{}
	seen := 0
	deadline := time.After(timeout)
	for seen < want {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			n, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("output record %q=%q is not a count: %w", r.Key, r.Value, err)
			}
			counts[string(r.Key)] = n
			seen++
		}
		select {
		case <-stopped:
			return nil, fmt.Errorf("processor stopped before the counts were complete")
		case <-deadline:
			return nil, fmt.Errorf("%w: after %v the output holds %d of %d count updates", errTimeout, timeout, seen, want)
		default:
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return counts, nil
}
