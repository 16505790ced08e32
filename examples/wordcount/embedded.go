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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/stream"
)

// sampleText is counted when standard input is a terminal.
const sampleText = `the quick brown fox jumps over the lazy dog
the dog barks and the fox runs
exactly once means every word is counted once and only once`

// runEmbedded runs the word count on an in-process Kafka: it loads the input,
// runs the processor until both stages processed everything, reads the
// output back with a read_committed consumer, and prints the final counts.
func runEmbedded(ctx context.Context, f cli.Flags, topo *stream.Topology, input, output string, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	lines, err := readInput(stdin)
	if err != nil {
		return err
	}
	demo, err := cli.StartDemo("wordcount", f.StateDir)
	if err != nil {
		return err
	}
	defer demo.Close()

	// Lines up to 16 MiB are accepted into the input; what the processor
	// cannot produce (a single word above MaxRecordBytes) goes to the
	// -on-error policy.
	const maxLine = 16 << 20
	maxBytes := strconv.Itoa(maxLine + 4096)
	if err := demo.CreateTopics(ctx, f.Partitions, map[string]*string{"max.message.bytes": &maxBytes}, input, output); err != nil {
		return err
	}
	cl, err := demo.Client(kgo.DefaultProduceTopic(input), kgo.ProducerBatchMaxBytes(maxLine+4096))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("loading input: %w", err)
	}

	f.Brokers, f.StateDir = demo.Brokers, demo.StateDir
	p, err := newProcessor(topo, f, logger)
	if err != nil {
		return err
	}
	// Every line processed by the first stage, and every word it emitted
	// by the second: then the output is complete.
	finished := func() bool {
		m := p.Metrics().Stages
		return m["split"].Records == int64(len(lines)) && m["by-word"].Records == m["split"].Emitted
	}
	err = demo.RunUntil(ctx, p.Run, finished, f.Timeout, "the counts")
	if err != nil {
		return err
	}
	counts, err := demo.ReadCounts(ctx, output)
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
