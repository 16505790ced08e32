package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/processor"
)

// system is one row of the table: a way to run a scenario.
type system struct {
	name      string
	guarantee string
	start     func(ctx context.Context, r *runSpec) (*running, error)
}

func allSystems() []system {
	return []system{
		{"raw-alo", "at-least-once", startRaw(false)},
		{"raw-eos", "exactly-once", startRaw(true)},
		{"goka", "at-least-once", startGoka},
		{"sluice-eos", "exactly-once", startSluice(processor.ExactlyOnce)},
		{"sluice-alo", "at-least-once", startSluice(processor.AtLeastOnce)},
		{"sluice-amo", "at-most-once", startSluice(processor.AtMostOnce)},
	}
}

func systemByName(name string) (system, bool) {
	for _, s := range allSystems() {
		if s.name == name {
			return s, true
		}
	}
	return system{}, false
}

// Result is one run: one scenario on one system (one JSON object of -json).
type Result struct {
	Kind             string    `json:"kind"` // table, sweep, restore
	Scenario         string    `json:"scenario"`
	System           string    `json:"system"`
	Guarantee        string    `json:"guarantee"`
	CommitIntervalMs float64   `json:"commit_interval_ms"`
	Partitions       int       `json:"partitions"`
	Records          int       `json:"records"`
	Samples          []float64 `json:"records_per_s_samples,omitempty"` // every round's records_per_s
	RecordsPerS      float64   `json:"records_per_s"`                   // steady state: input records per second while the output went from 10% to 90%
	DrainRecordsPerS float64   `json:"drain_records_per_s"`             // input records / drain_s (startup included)
	MBPerS           float64   `json:"mb_per_s"`
	DrainS           float64   `json:"drain_s"`        // start of the system to the last output record
	FirstOutputS     float64   `json:"first_output_s"` // start of the system to the first output record
	P50Ms            float64   `json:"p50_ms"`
	P99Ms            float64   `json:"p99_ms"`
	MaxMs            float64   `json:"max_ms"`
	LatencyRate      float64   `json:"latency_rate_per_s"`   // the rate the paced producer achieved
	LatencyTarget    float64   `json:"latency_target_per_s"` // the rate it was asked for: LatencyLoad x records_per_s
	LatencyRecords   int       `json:"latency_records"`
	CPUS             float64   `json:"cpu_s"`
	RSSMB            float64   `json:"rss_mb"`
	RatioVsRawALO    float64   `json:"ratio_vs_raw_alo"`
	Correct          bool      `json:"correct"`
	Failures         []string  `json:"failures,omitempty"` // rounds that did not complete (not counted)
	Unsupported      bool      `json:"unsupported,omitempty"`
	Error            string    `json:"error,omitempty"`
	// Sluice only: per stage, input records / committed transactions of
	// the throughput run.
	Stages string `json:"stages,omitempty"`
	// Restore benchmark only.
	RestoreKeys     int     `json:"restore_keys,omitempty"`
	RestoredRecords int64   `json:"restored_records,omitempty"`
	RestoreS        float64 `json:"restore_s,omitempty"`
	AssignedS       float64 `json:"assigned_s,omitempty"`
	Broker          string  `json:"broker"`
}

// Report is everything a harness run measured.
type Report struct {
	Config  Config
	Broker  string
	Results []Result
}

// Run runs what c asks for and writes the table (and the sweep chart and JSON
// when asked) to w.
func Run(ctx context.Context, c Config, w io.Writer) (*Report, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.ChartFrom != "" {
		return chartFrom(c, w)
	}
	e, err := newEnv(ctx, c.Brokers)
	if err != nil {
		return nil, err
	}
	defer e.close()
	defer e.deleteRunTopics(context.Background(), e.runID)
	rep := &Report{Config: c, Broker: e.version}
	c.progress("broker: %s at %v; run id %s", e.version, e.brokers, e.runID)

	if c.Table {
		scs, _ := c.scenarios(c.Scenario)
		syss, _ := c.systems()
		for _, name := range scs {
			rs, err := runScenario(ctx, e, &c, scenarios[name], syss, c.CommitInterval, "table")
			rep.Results = append(rep.Results, rs...)
			if err != nil {
				return rep, err
			}
		}
		printTable(w, rep.Results, "table")
		printTargets(w, rep.Results)
	}
	if c.Sweep {
		scs, _ := c.scenarios(c.SweepScenarios)
		cis, _ := c.sweepIntervals()
		sys, _ := systemByName("sluice-eos")
		for _, name := range scs {
			rs, err := runSweep(ctx, e, &c, scenarios[name], sys, cis)
			rep.Results = append(rep.Results, rs...)
			if err != nil {
				return rep, err
			}
		}
		printTable(w, rep.Results, "sweep")
		if c.Chart != "" {
			if err := drawSweep(c.Chart, rep.Results, e.version); err != nil {
				return rep, err
			}
			fmt.Fprintf(w, "sweep chart: %s\n", c.Chart)
		}
	}
	if c.Restore {
		rs, err := runRestore(ctx, e, &c)
		rep.Results = append(rep.Results, rs...)
		printRestore(w, rs)
		if err != nil {
			return rep, err
		}
	}
	if c.JSON != "" {
		if err := writeJSON(c.JSON, rep.Results); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func writeJSON(path string, rs []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// loaded is a scenario's input topic, loaded once and read by every system.
type loaded struct {
	topic string
	want  checksum
	bytes int64
	n     int
}

func loadScenario(ctx context.Context, e *env, c *Config, sc *scenario, tag string) (*loaded, error) {
	topic := e.name(sc.name, tag, "in")
	if err := e.createTopics(ctx, c.Partitions, nil, topic); err != nil {
		return nil, err
	}
	g := newGenerator(sc, c.Keys, c.ValueSize, c.Seed)
	c.progress("%s: loading %d records (keys %d, value %d bytes, %d partitions)", sc.name, c.Records, g.keys, g.valueSize, c.Partitions)
	want, bytes, err := e.load(ctx, c, topic, g, c.Records)
	if err != nil {
		return nil, err
	}
	return &loaded{topic: topic, want: want, bytes: bytes, n: c.Records}, nil
}

// runScenario loads the scenario's input once and measures every system on
// it, side by side: c.Repeat throughput rounds, each running every system in
// turn (so that drifts of a shared, noisy machine hit all rows alike), the
// median round kept; then one latency run per system.
func runScenario(ctx context.Context, e *env, c *Config, sc *scenario, syss []system, ci time.Duration, kind string) ([]Result, error) {
	in, err := loadScenario(ctx, e, c, sc, kind)
	if err != nil {
		return nil, err
	}
	out, err := measureAll(ctx, e, c, sc, syss, in, ci, kind)
	setRatios(out)
	return out, err
}

func measureAll(ctx context.Context, e *env, c *Config, sc *scenario, syss []system, in *loaded, ci time.Duration, kind string) ([]Result, error) {
	runs := make([][]Result, len(syss))
	for rep := range max(c.Repeat, 1) {
		for i, sys := range syss {
			if rep > 0 && runs[i][0].Unsupported {
				continue
			}
			runs[i] = append(runs[i], measureThroughput(ctx, e, c, sc, sys, in, ci, kind, rep))
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	out := make([]Result, len(syss))
	for i, sys := range syss {
		res := median(runs[i])
		out[i] = res
		if c.Latency && res.Correct {
			measureLatency(ctx, e, c, sc, sys, ci, kind, &out[i])
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

// median returns the run with the median throughput among the runs that
// completed, with every completed run's throughput in Samples. A run whose
// output was wrong makes the result wrong; runs that failed otherwise (the
// system stopped, the output stalled: on a shared broker, e.g. when someone
// restarts it) are listed in Failures and do not count.
func median(rs []Result) Result {
	var ok []Result
	var failures []string
	for _, r := range rs {
		switch {
		case r.Correct:
			ok = append(ok, r)
		case r.Unsupported:
			return r
		case r.RecordsPerS > 0: // completed with a wrong output
			return r
		default:
			failures = append(failures, r.Error)
		}
	}
	if len(ok) == 0 {
		return rs[0]
	}
	slices.SortFunc(ok, func(a, b Result) int { return cmp.Compare(a.RecordsPerS, b.RecordsPerS) })
	m := ok[len(ok)/2]
	m.Samples = nil
	for _, r := range rs {
		if r.Correct {
			m.Samples = append(m.Samples, math.Round(r.RecordsPerS))
		}
	}
	m.Failures = failures
	return m
}

func setRatios(rs []Result) {
	base := map[string]float64{}
	for _, r := range rs {
		if r.System == "raw-alo" && r.Correct {
			base[r.Kind+"/"+r.Scenario] = r.RecordsPerS
		}
	}
	for i := range rs {
		if b := base[rs[i].Kind+"/"+rs[i].Scenario]; b > 0 && rs[i].Correct {
			rs[i].RatioVsRawALO = rs[i].RecordsPerS / b
		}
	}
}

func measureThroughput(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, kind string, rep int) Result {
	res := Result{Kind: kind, Scenario: sc.name, System: sys.name, Guarantee: sys.guarantee,
		CommitIntervalMs: float64(ci) / float64(time.Millisecond), Partitions: c.Partitions,
		Records: in.n, Broker: e.version}
	tag := fmt.Sprintf("%s-%s-%s-%d-r%d", sc.name, sys.name, kind, ci.Milliseconds(), rep)
	c.progress("%s / %s (commit interval %v): throughput run %d over %d records", sc.name, sys.name, ci, rep+1, in.n)
	if err := throughput(ctx, e, c, sc, sys, in, ci, tag, &res); err != nil {
		if errors.Is(err, errUnsupported) {
			res.Unsupported = true
			c.progress("  %s: %v", sys.name, err)
		} else {
			res.Error = err.Error()
			c.progress("  FAILED: %v", err)
		}
		return res
	}
	c.progress("  %.0f records/s, %.1f MB/s, cpu %.1fs, rss %.0f MB, correct %v",
		res.RecordsPerS, res.MBPerS, res.CPUS, res.RSSMB, res.Correct)
	return res
}

func measureLatency(ctx context.Context, e *env, c *Config, sc *scenario, sys system, ci time.Duration, kind string, res *Result) {
	tag := fmt.Sprintf("%s-%s-%s-%d", sc.name, sys.name, kind, ci.Milliseconds())
	rate := res.RecordsPerS * c.LatencyLoad
	if c.LatencyRate > 0 {
		rate = c.LatencyRate
	}
	c.progress("%s / %s (commit interval %v): latency run at %.0f records/s for %v", sc.name, sys.name, ci, rate, c.LatencyDuration)
	if err := latency(ctx, e, c, sc, sys, ci, rate, tag, res); err != nil {
		res.Error = "latency: " + err.Error()
		res.Correct = false
		c.progress("  latency FAILED: %v", err)
		return
	}
	c.progress("  latency p50 %.0f ms, p99 %.0f ms, max %.0f ms over %d inputs", res.P50Ms, res.P99Ms, res.MaxMs, res.LatencyRecords)
	if res.LatencyRate < 0.9*res.LatencyTarget {
		c.progress("  note: the paced producer reached only %.0f of %.0f records/s", res.LatencyRate, res.LatencyTarget)
	}
}

func (e *env) spec(ctx context.Context, c *Config, sc *scenario, app, input, output string, ci time.Duration) (*runSpec, func(), error) {
	if err := e.createTopics(ctx, c.Partitions, nil, output); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return nil, nil, err
	}
	return &runSpec{
		sc: sc, brokers: e.brokers, app: app, input: input, output: output,
		partitions: c.Partitions, commitInterval: ci, maxRecords: c.MaxRecordsPerTxn, stateDir: dir,
		createTopics: func(ctx context.Context, topics ...string) error {
			return e.createTopics(ctx, c.Partitions, nil, topics...)
		},
	}, func() { os.RemoveAll(dir) }, nil
}

func throughput(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, tag string, res *Result) error {
	app := e.name(tag)
	spec, cleanup, err := e.spec(ctx, c, sc, app, in.topic, app+"-out", ci)
	if err != nil {
		return err
	}
	defer cleanup()

	if c.CPUProfileDir != "" && strings.HasPrefix(sys.name, "sluice") {
		if err := os.MkdirAll(c.CPUProfileDir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(c.CPUProfileDir, fmt.Sprintf("%s-%s-%dms.pprof", sc.name, sys.name, ci.Milliseconds())))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}

	var proc *processor.Processor
	spec.onSluice = func(p *processor.Processor) { proc = p }
	resetPeakRSS()
	cpu0 := cpuTime()
	t0 := time.Now()
	run, err := sys.start(ctx, spec)
	if err != nil {
		return err
	}
	var rd outputReader
	readErr := rd.read(ctx, c, e.brokers, spec.output, in.want, run.done, nil)
	stopErr := run.stop()
	res.CPUS = (cpuTime() - cpu0).Seconds()
	if proc != nil {
		var parts []string
		ms := proc.Metrics().Stages
		for _, name := range slices.Sorted(maps.Keys(ms)) {
			m := ms[name]
			parts = append(parts, fmt.Sprintf("%s: %d records in %d commits (ending them %.2f s, applying %.2f s)",
				name, m.Records, m.Commits, m.CommitTime.Seconds(), m.ApplyTime.Seconds()))
		}
		res.Stages = strings.Join(parts, "; ")
	}
	res.RSSMB = float64(peakRSS()) / (1 << 20)
	if readErr != nil {
		return errors.Join(readErr, stopErr)
	}
	if stopErr != nil {
		return fmt.Errorf("stopping: %w", stopErr)
	}
	res.Correct = rd.got == in.want
	if !res.Correct {
		res.Error = fmt.Sprintf("wrong output: %d records (want %d), checksum %x (want %x)", rd.got.n, in.want.n, rd.got.sum, in.want.sum)
	}
	res.DrainS = rd.last.Sub(t0).Seconds()
	res.FirstOutputS = rd.first.Sub(t0).Seconds()
	res.DrainRecordsPerS = float64(in.n) / res.DrainS
	// Steady-state rate: the time the output took to go from 10% to 90%
	// of its records, for 80% of the input records (outputs per input are
	// constant on average), so that group joins, topic setup and the first
	// and last commits do not count. Tiny runs fall back to the drain time.
	window := rd.p90.Sub(rd.p10).Seconds()
	if window > 0.5 {
		res.RecordsPerS = 0.8 * float64(in.n) / window
	} else {
		res.RecordsPerS = float64(in.n) / res.DrainS
	}
	res.MBPerS = res.RecordsPerS * float64(in.bytes) / float64(in.n) / 1e6
	return nil
}

// latency starts the system on fresh topics, waits until it answers, then
// produces records paced at rate for c.LatencyDuration, each stamped with
// the time it was produced, and measures when each expected output becomes
// visible to a read_committed reader.
func latency(ctx context.Context, e *env, c *Config, sc *scenario, sys system, ci time.Duration, rate float64, tag string, res *Result) error {
	app := e.name(tag, "lat")
	input := app + "-in"
	if err := e.createTopics(ctx, c.Partitions, nil, input); err != nil {
		return err
	}
	spec, cleanup, err := e.spec(ctx, c, sc, app, input, app+"-out", ci)
	if err != nil {
		return err
	}
	defer cleanup()
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(input),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return err
	}
	defer prod.Close()

	run, err := sys.start(ctx, spec)
	if err != nil {
		return err
	}
	defer run.stop()

	g := newGenerator(sc, c.Keys, c.ValueSize, c.Seed+1)
	lat := newLatencies()
	var want checksum
	var mu sync.Mutex // guards want and got
	var prodErr atomic.Pointer[error]
	produce := func(warm bool) error {
		ts := time.Now()
		mu.Lock()
		k, v := g.next(func(k, v []byte) {
			want.add(k, v)
			if warm {
				lat.expectWarmup(k, v)
			} else {
				lat.expect(k, v, ts)
			}
		})
		mu.Unlock()
		prod.Produce(ctx, &kgo.Record{Key: k, Value: v, Timestamp: ts}, func(_ *kgo.Record, err error) {
			if err != nil {
				prodErr.CompareAndSwap(nil, &err)
			}
		})
		if p := prodErr.Load(); p != nil {
			return *p
		}
		return nil
	}

	// The reader.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(spec.output),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	var got checksum
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for rctx.Err() == nil {
			fs := cl.PollFetches(rctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				lat.seen(r.Key, r.Value, now)
				mu.Lock()
				got.add(r.Key, r.Value)
				mu.Unlock()
			})
		}
	}()

	// Warm up: one record every 50 ms until the system answers.
	deadline := time.Now().Add(c.Stall)
	for !lat.sawWarmup() {
		if time.Now().After(deadline) {
			return fmt.Errorf("no output within %v of starting", c.Stall)
		}
		if err := produce(true); err != nil {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-run.done:
			return fmt.Errorf("the system stopped: %v", run.stop())
		}
	}
	// Paced.
	res.LatencyTarget = rate
	start := time.Now()
	sent := 0
	for {
		el := time.Since(start)
		if el >= c.LatencyDuration {
			break
		}
		for target := int(rate * el.Seconds()); sent < target; sent++ {
			if err := produce(false); err != nil {
				return err
			}
		}
		time.Sleep(time.Millisecond)
	}
	res.LatencyRate = float64(sent) / time.Since(start).Seconds()
	if err := prod.Flush(ctx); err != nil {
		return err
	}
	// Drain.
	deadline = time.Now().Add(c.Stall)
	for lat.outstanding() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d expected outputs never arrived", lat.outstanding())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(c.Grace) // let duplicates show
	stopReading()
	<-readDone
	mu.Lock()
	ok := got == want
	mu.Unlock()
	res.LatencyRecords = sent
	res.P50Ms, res.P99Ms, res.MaxMs = lat.percentiles()
	if !ok || lat.unknown > 0 {
		return fmt.Errorf("wrong output in the latency run: %d records (want %d), %d unexpected", got.n, want.n, lat.unknown)
	}
	return nil
}

// chartFrom draws c.Chart from the sweep results in c.ChartFrom's files.
func chartFrom(c Config, w io.Writer) (*Report, error) {
	if c.Chart == "" {
		return nil, fmt.Errorf("benchmarks: -chart-from needs -chart FILE")
	}
	rep := &Report{Config: c}
	for _, path := range splitList(c.ChartFrom) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		for dec.More() {
			var r Result
			if err := dec.Decode(&r); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			rep.Results = append(rep.Results, r)
			if rep.Broker == "" {
				rep.Broker = r.Broker
			}
		}
	}
	printTable(w, rep.Results, "sweep")
	if err := drawSweep(c.Chart, rep.Results, rep.Broker); err != nil {
		return rep, err
	}
	fmt.Fprintf(w, "sweep chart: %s\n", c.Chart)
	return rep, nil
}
