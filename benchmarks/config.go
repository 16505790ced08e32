package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is everything one harness run needs. The command line binds to it
// (RegisterFlags) and so do the testing.B benchmarks (bench_test.go), which
// fill it in directly: both end in Run.
type Config struct {
	// Scenarios to run: passthrough, wordcount, aggregate (comma-separated,
	// or "all").
	Scenario string
	// Systems to run, comma-separated, or "all" (raw-alo, raw-eos, goka,
	// goka-tuned, sluice-eos, sluice-alo, sluice-amo). Also: raw-alo-1loop
	// and raw-alo-naive (variants of raw-alo, see system_rawalo.go).
	Systems string
	// Records is the number of input records loaded before a scenario's
	// rounds (lines for wordcount). 0: in the window method, the
	// scenario's default backlog (scenario.backlog), grown whenever a
	// run comes close to its end; in the drain method, 200,000.
	Records int
	// Brokers is the bootstrap list of a real cluster; empty starts an
	// in-process kfake cluster.
	Brokers string
	// CommitInterval is every system's commit interval (sluice's
	// processor.CommitInterval, raw-eos's transaction length, raw-alo's
	// offset commit period). goka has its own (sarama's defaults).
	CommitInterval time.Duration
	// Keys is the key cardinality: distinct input keys (passthrough),
	// vocabulary size (wordcount), aggregation keys (aggregate). 0 means
	// the scenario's default (100,000 for aggregate, 10,000 otherwise).
	Keys int
	// ValueSize is the input value size in bytes (the line length for
	// wordcount). 0 means the scenario's default.
	ValueSize int
	// Partitions of every topic the harness creates.
	Partitions int
	// MaxRecordsPerTxn caps the records of one transaction or poll, for
	// sluice (processor.MaxRecordsPerTransaction) and the raw loops alike.
	MaxRecordsPerTxn int
	// Repeat is the number of throughput rounds per scenario; each round
	// runs every system once, in an order drawn at random per round. The
	// median is reported with the spread of the rounds.
	Repeat int
	// OrderSeed seeds the order of the systems in each round (and of the
	// paced sessions); 0 draws one from the clock. The seed is printed
	// and written to the JSON, so an order can be replayed.
	OrderSeed uint64
	// Window is the throughput method. Positive: the window method: each
	// run starts the system on the preloaded input and counts the output
	// records that become visible in a window of this length that opens
	// Warmup after the first output record, while input is still left;
	// then the system is stopped, and its output so far checked record by
	// record (expectation). Why a fixed window and not a drain of a
	// bigger input: the slowest rows (goka) are 10-20 times slower than
	// the fastest, so an input that gives the fastest a 10 s window would
	// take the slowest minutes per round; a fixed window costs every row
	// the same time and measures every row over the same duration. The
	// input grows when a run comes close to its end (loaded.topUp), and a
	// round that ran out of input before its window ended runs again.
	// 0: the drain method: drain the whole input and time the output from
	// 10% to 90% (the method of the first measurements).
	Window time.Duration
	Warmup time.Duration
	// Latency runs the paced-producer latency phase after each throughput
	// run, at LatencyLoad times the throughput just measured, for
	// LatencyDuration.
	Latency     bool
	LatencyLoad float64
	// LatencyRate, when positive, is the paced producer's rate in records/s
	// for every system, instead of LatencyLoad x its throughput (and no
	// sustainable search runs).
	LatencyRate float64
	// LatencyDuration is how long each paced probe runs.
	LatencyDuration time.Duration
	// Sustainable searches, after the latency probe, for the highest
	// paced rate whose p99 stays within stages x commit interval + 100 ms
	// (paced.go), with at most Probes probes in all.
	Sustainable bool
	Probes      int
	// OutOfProcess runs each system in a child process of its own (the
	// harness's binary again; child.go), apart from the harness's
	// loader, paced producer and reader.
	OutOfProcess bool
	// Table runs the scenarios x systems table.
	Table bool
	// Sweep runs sluice exactly-once over SweepIntervals for SweepScenarios.
	Sweep          bool
	SweepIntervals string
	SweepScenarios string
	// Chart is the PNG file the sweep is drawn into ("" draws nothing).
	Chart string
	// ChartFrom lists JSON result files (of -json) whose sweep results are
	// drawn into Chart, without running anything else.
	ChartFrom string
	// Restore runs the restore benchmark with RestoreKeys keys in one task.
	Restore     bool
	RestoreKeys int
	// JSON is the file that gets one JSON object per run ("" writes none).
	JSON string
	// CPUProfileDir, when set, gets a CPU profile of every throughput run
	// of every system: <scenario>-<system>-<interval>ms-r<round>.pprof (in
	// process: of the whole process, the reader included; out of process:
	// of the system's process).
	CPUProfileDir string
	// Stall fails a run whose output makes no progress for this long.
	Stall time.Duration
	// Grace is how long the readers keep reading after the last expected
	// output, to catch duplicates.
	Grace time.Duration
	// Seed makes the generated data reproducible.
	Seed uint64
	// Quiet silences progress lines.
	Quiet bool

	// extraSystems are systems only tests know (a deliberately broken
	// one); -systems finds them by name. They run in process only.
	extraSystems []system
}

// DefaultConfig returns the command line's defaults.
func DefaultConfig() Config {
	return Config{
		Scenario:         "all",
		Systems:          "all",
		CommitInterval:   100 * time.Millisecond,
		Partitions:       4,
		MaxRecordsPerTxn: 50000,
		Repeat:           5,
		Window:           10 * time.Second,
		Warmup:           2 * time.Second,
		Latency:          true,
		LatencyLoad:      0.5,
		LatencyDuration:  10 * time.Second,
		Sustainable:      true,
		Probes:           5,
		Table:            true,
		SweepIntervals:   "10ms,20ms,50ms,100ms,200ms,500ms,1s",
		SweepScenarios:   "passthrough,wordcount",
		RestoreKeys:      1000000,
		Stall:            60 * time.Second,
		Grace:            500 * time.Millisecond,
		Seed:             1,
	}
}

// RegisterFlags binds c's fields to flags of fs, with c's current values as
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "scenarios: passthrough, wordcount, aggregate, comma-separated, or all")
	fs.StringVar(&c.Systems, "systems", c.Systems, "systems (rows), comma-separated, or all: raw-alo, raw-eos, goka, goka-tuned, sluice-eos, sluice-alo, sluice-amo; also raw-alo-1loop, raw-alo-naive (not in all)")
	fs.IntVar(&c.Records, "records", c.Records, "input records loaded before a scenario's rounds (lines for wordcount); 0: the scenario's default backlog (window), 200000 (drain)")
	fs.StringVar(&c.Brokers, "brokers", c.Brokers, "host:port[,host:port] of a real Kafka; empty: an in-process kfake cluster")
	fs.DurationVar(&c.CommitInterval, "commit-interval", c.CommitInterval, "commit interval of sluice, raw-eos and raw-alo")
	fs.IntVar(&c.Keys, "keys", c.Keys, "key cardinality (vocabulary for wordcount); 0: 100000 for aggregate, 10000 otherwise")
	fs.IntVar(&c.ValueSize, "value-size", c.ValueSize, "input value bytes (line length for wordcount); 0: 100 (wordcount: 60)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of every topic the harness creates")
	fs.IntVar(&c.MaxRecordsPerTxn, "max-records", c.MaxRecordsPerTxn, "records per transaction (sluice, raw-eos) or poll (raw-alo and its variants)")
	fs.IntVar(&c.Repeat, "repeat", c.Repeat, "throughput rounds per scenario (each runs every system once, in a random order); the median and the spread are reported")
	fs.Uint64Var(&c.OrderSeed, "order-seed", c.OrderSeed, "seed of the systems' order in each round; 0: from the clock (printed)")
	fs.DurationVar(&c.Window, "window", c.Window, "throughput window, measured while input is left; 0: drain the whole input and time 10%-90%")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "the window opens this long after the first output record")
	fs.BoolVar(&c.Latency, "latency", c.Latency, "after the rounds, a paced session per system: latency at -latency-load of its throughput (and the -sustainable search)")
	fs.Float64Var(&c.LatencyLoad, "latency-load", c.LatencyLoad, "paced producer rate as a fraction of the system's measured throughput")
	fs.Float64Var(&c.LatencyRate, "latency-rate", c.LatencyRate, "paced producer rate in records/s for every system (overrides -latency-load when positive)")
	fs.DurationVar(&c.LatencyDuration, "latency-duration", c.LatencyDuration, "how long each paced probe runs")
	fs.BoolVar(&c.Sustainable, "sustainable", c.Sustainable, "search for the sustainable throughput: the highest paced rate with p99 <= stages x commit interval + 100 ms")
	fs.IntVar(&c.Probes, "probes", c.Probes, "paced probes per system and scenario, the latency probe included")
	fs.BoolVar(&c.OutOfProcess, "out-of-process", c.OutOfProcess, "run each system in a process of its own, apart from the harness's producer and reader")
	fs.BoolVar(&c.Table, "table", c.Table, "run the scenarios x systems table")
	fs.BoolVar(&c.Sweep, "sweep", c.Sweep, "run the commit-interval sweep of sluice-eos")
	fs.StringVar(&c.SweepIntervals, "sweep-intervals", c.SweepIntervals, "commit intervals of the sweep")
	fs.StringVar(&c.SweepScenarios, "sweep-scenarios", c.SweepScenarios, "scenarios of the sweep")
	fs.StringVar(&c.Chart, "chart", c.Chart, "PNG file to draw the sweep into")
	fs.StringVar(&c.ChartFrom, "chart-from", c.ChartFrom, "draw -chart from these -json files (comma-separated) and exit")
	fs.BoolVar(&c.Restore, "restore", c.Restore, "run the restore benchmark")
	fs.IntVar(&c.RestoreKeys, "restore-keys", c.RestoreKeys, "keys held by the restored task")
	fs.StringVar(&c.JSON, "json", c.JSON, "write one JSON object per run to this file")
	fs.StringVar(&c.CPUProfileDir, "cpuprofile-dir", c.CPUProfileDir, "write a CPU profile of every throughput round of every system into this directory")
	fs.DurationVar(&c.Stall, "stall", c.Stall, "fail a run whose output makes no progress for this long")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "keep reading this long after the last expected output, to catch duplicates")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the generated data")
	fs.BoolVar(&c.Quiet, "q", c.Quiet, "no progress lines")
}

// validate checks c and fills in what follows from it.
func (c *Config) validate() error {
	var errs []string
	if c.Records < 0 {
		errs = append(errs, "-records must not be negative")
	}
	if c.Window < 0 || c.Warmup < 0 {
		errs = append(errs, "-window and -warmup must not be negative")
	}
	if c.Repeat < 1 {
		errs = append(errs, "-repeat must be at least 1")
	}
	if c.Sustainable && c.Probes < 2 {
		errs = append(errs, "-probes must be at least 2 with -sustainable")
	}
	if c.LatencyDuration <= 0 {
		errs = append(errs, "-latency-duration must be positive")
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, "-commit-interval must be positive")
	}
	if c.Partitions <= 0 {
		errs = append(errs, "-partitions must be positive")
	}
	if c.Keys < 0 || c.ValueSize < 0 {
		errs = append(errs, "-keys and -value-size must not be negative")
	}
	if c.MaxRecordsPerTxn <= 0 {
		errs = append(errs, "-max-records must be positive")
	}
	if c.LatencyLoad <= 0 {
		errs = append(errs, "-latency-load must be positive")
	}
	if _, err := c.scenarios(c.Scenario); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := c.systems(); err != nil {
		errs = append(errs, err.Error())
	}
	if c.Sweep {
		if _, err := c.sweepIntervals(); err != nil {
			errs = append(errs, err.Error())
		}
		if _, err := c.scenarios(c.SweepScenarios); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("benchmarks: %s", strings.Join(errs, "; "))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (c *Config) scenarios(list string) ([]string, error) {
	if list == "all" {
		return scenarioNames, nil
	}
	var out []string
	for _, s := range splitList(list) {
		if _, ok := scenarios[s]; !ok {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(scenarioNames, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario given")
	}
	return out, nil
}

func (c *Config) systems() ([]system, error) {
	if c.Systems == "all" {
		var out []system
		for _, s := range allSystems() {
			if s.inAll {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []system
	for _, s := range splitList(c.Systems) {
		sys, ok := systemByName(s)
		for _, x := range c.extraSystems {
			if x.name == s {
				sys, ok = x, true
			}
		}
		if !ok {
			var names []string
			for _, s := range allSystems() {
				names = append(names, s.name)
			}
			return nil, fmt.Errorf("unknown system %q (have %s)", s, strings.Join(names, ", "))
		}
		out = append(out, sys)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no system given")
	}
	return out, nil
}

// records returns how many input records to load for sc.
func (c *Config) records(sc *scenario) int {
	switch {
	case c.Records > 0:
		return c.Records
	case c.Window > 0:
		return sc.backlog(c.Warmup + c.Window)
	default:
		return 200000
	}
}

func (c *Config) sweepIntervals() ([]time.Duration, error) {
	var out []time.Duration
	for _, s := range splitList(c.SweepIntervals) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-sweep-intervals: %q is not a positive duration", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// progress prints a progress line to stderr unless c.Quiet.
func (c *Config) progress(format string, args ...any) {
	if c.Quiet {
		return
	}
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
