package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// errUnsupported marks a system that cannot run yet (a sluice guarantee that
// processor.New rejects): its row is printed as such, not as a failure.
var errUnsupported = errors.New("not supported yet")

// runSpec is what a system is started with.
type runSpec struct {
	sc             *scenario
	brokers        []string
	app            string // unique per run: prefixes groups, ids, internal topics
	input, output  string
	partitions     int
	commitInterval time.Duration
	maxRecords     int
	stateDir       string
	// createTopics creates topics the system needs and does not create
	// itself (raw and goka internal topics).
	createTopics func(ctx context.Context, topics ...string) error
	// sluiceOpts are extra processor options (the restore benchmark's).
	sluiceOpts []processor.Opt
	// gatherMetrics, if set, is gathered every second while the system
	// runs (sluice-eos-metrics).
	gatherMetrics prometheus.Gatherer
	// cpuProfile, out of process only, is the file the system's process
	// writes its CPU profile to ("" writes none).
	cpuProfile string
}

// running is a started system.
type running struct {
	// stop ends the system and returns its error; done is closed when
	// it has ended, by itself or by stop.
	stop func() error
	done <-chan struct{}
	// metrics returns the sluice processor's counters (nil, nil for the
	// other systems).
	metrics func() (map[string]processor.StageMetrics, error)
	// pid is the process the system runs in: the harness's own, or a
	// child's (-out-of-process).
	pid int
	// usage, out of process, returns the child's rusage once stop has
	// returned (nil in process).
	usage func() *syscall.Rusage
}

func noMetrics() (map[string]processor.StageMetrics, error) { return nil, nil }

// sluiceTopology builds the scenario's topology with sluice's DSL.
func sluiceTopology(r *runSpec) (*stream.Topology, error) {
	b := stream.NewBuilder()
	switch r.sc.name {
	case "passthrough":
		in := stream.Source(b, r.input, codec.Bytes{}, codec.Bytes{}, stream.Named("map"))
		out := stream.MapValues(in, func(_, v []byte) []byte { return upper(v) }, stream.Named("upper"))
		stream.To(out, r.output, codec.Bytes{}, codec.Bytes{}, stream.Named("write"))
	case "wordcount":
		lines := stream.Source(b, r.input, codec.String{}, codec.String{}, stream.Named("split"))
		ws := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
			fields := strings.Fields(line)
			out := make([]stream.KeyValue[string, string], len(fields))
			for i, w := range fields {
				out[i] = stream.KeyValue[string, string]{Key: w, Value: w}
			}
			return out
		}, stream.Named("words"))
		byWord := stream.GroupBy(ws, func(w, _ string) string { return w },
			codec.String{}, codec.String{}, stream.Named("by-word"))
		counts := stream.Count(byWord, stream.Named("counts"))
		stream.To(counts.ToStream(), r.output, codec.String{}, codec.Int64Text{}, stream.Named("write"))
	case "aggregate":
		in := stream.Source(b, r.input, codec.String{}, codec.Bytes{}, stream.Named("sum"))
		g := stream.GroupByKey(in, codec.String{}, codec.Bytes{}, stream.Named("by-key"))
		sums := stream.Aggregate(g, func() int64 { return 0 },
			func(_ string, v []byte, s int64) int64 { return s + leadingNumber(v) },
			codec.Int64{}, stream.Named("sums"))
		stream.To(sums.ToStream(), r.output, codec.String{}, codec.Int64Text{}, stream.Named("write"))
	default:
		return nil, fmt.Errorf("no sluice topology for %s", r.sc.name)
	}
	return b.Build()
}

// startSluice runs the scenario on a sluice processor with guarantee g.
//
// Hook for the other guarantees: sluice-alo and sluice-amo pass
// processor.AtLeastOnce / processor.AtMostOnce here; while processor.New
// rejects them the row reads "not supported yet", and once the runtime
// implements them they are measured with no change to the harness.
func startSluice(g processor.Guarantee) func(ctx context.Context, r *runSpec) (*running, error) {
	return func(ctx context.Context, r *runSpec) (*running, error) {
		topo, err := sluiceTopology(r)
		if err != nil {
			return nil, err
		}
		opts := []processor.Opt{
			processor.Brokers(r.brokers...),
			processor.ApplicationID(r.app),
			processor.StateDir(r.stateDir),
			processor.WithGuarantee(g),
			processor.CommitInterval(r.commitInterval),
			processor.MaxRecordsPerTransaction(r.maxRecords),
		}
		if os.Getenv("SLUICE_BENCH_DEBUG") != "" {
			opts = append(opts, processor.Logger(debugLogger()))
		}
		opts = append(opts, r.sluiceOpts...)
		p, err := processor.New(topo, opts...)
		if err != nil {
			if g != processor.ExactlyOnce && errors.Is(err, processor.ErrConfig) && strings.Contains(err.Error(), "not supported yet") {
				return nil, fmt.Errorf("%w: %v", errUnsupported, err)
			}
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var runErr error
		go func() {
			defer close(done)
			runErr = p.Run(ctx)
		}()
		if r.gatherMetrics != nil {
			go scrapeEverySecond(ctx, r.gatherMetrics)
		}
		return &running{
			stop: func() error {
				cancel()
				<-done
				return runErr
			},
			done:    done,
			metrics: func() (map[string]processor.StageMetrics, error) { return p.Metrics().Stages, nil },
			pid:     os.Getpid(),
		}, nil
	}
}

// startSluiceMetrics is startSluice with the processor's Prometheus metrics
// registered, and gathered (encoded as a scrape would) every second while
// it runs.
func startSluiceMetrics(g processor.Guarantee) func(ctx context.Context, r *runSpec) (*running, error) {
	start := startSluice(g)
	return func(ctx context.Context, r *runSpec) (*running, error) {
		reg := prometheus.NewRegistry()
		spec := *r
		spec.sluiceOpts = append(slices.Clone(r.sluiceOpts), processor.MetricsRegisterer(reg))
		spec.gatherMetrics = reg
		return start(ctx, &spec)
	}
}

// scrapeEverySecond gathers g and encodes it in the text format every second
// until ctx is done, as a Prometheus server scraping the processor would.
func scrapeEverySecond(ctx context.Context, g prometheus.Gatherer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fams, err := g.Gather()
		if err != nil {
			continue
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			_ = enc.Encode(f)
		}
	}
}
