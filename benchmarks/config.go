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
	// Systems to run, comma-separated: raw-alo, raw-eos, goka, sluice-eos,
	// sluice-alo, sluice-amo (the last two are skipped while processor.New
	// rejects them), or "all".
	Systems string
	// Records is the number of input records loaded before each throughput
	// run (lines for wordcount).
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
	// Repeat is the number of throughput rounds per scenario (every system
	// once per round); the median round is reported.
	Repeat int
	// Latency runs the paced-producer latency phase after each throughput
	// run, at LatencyLoad times the throughput just measured, for
	// LatencyDuration.
	Latency     bool
	LatencyLoad float64
	// LatencyRate, when positive, is the paced producer's rate in records/s
	// for every system, instead of LatencyLoad x its throughput.
	LatencyRate     float64
	LatencyDuration time.Duration
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
	// of a sluice system: <scenario>-<system>.pprof.
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
}

// DefaultConfig returns the command line's defaults.
func DefaultConfig() Config {
	return Config{
		Scenario:         "all",
		Systems:          "all",
		Records:          200000,
		CommitInterval:   100 * time.Millisecond,
		Partitions:       4,
		MaxRecordsPerTxn: 50000,
		Repeat:           1,
		Latency:          true,
		LatencyLoad:      0.5,
		LatencyDuration:  10 * time.Second,
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
	fs.StringVar(&c.Systems, "systems", c.Systems, "systems (rows): raw-alo, raw-eos, goka, sluice-eos, sluice-alo, sluice-amo, comma-separated, or all")
	fs.IntVar(&c.Records, "records", c.Records, "input records loaded before each throughput run (lines for wordcount)")
	fs.StringVar(&c.Brokers, "brokers", c.Brokers, "host:port[,host:port] of a real Kafka; empty: an in-process kfake cluster")
	fs.DurationVar(&c.CommitInterval, "commit-interval", c.CommitInterval, "commit interval of sluice, raw-eos and raw-alo")
	fs.IntVar(&c.Keys, "keys", c.Keys, "key cardinality (vocabulary for wordcount); 0: 100000 for aggregate, 10000 otherwise")
	fs.IntVar(&c.ValueSize, "value-size", c.ValueSize, "input value bytes (line length for wordcount); 0: 100 (wordcount: 60)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of every topic the harness creates")
	fs.IntVar(&c.MaxRecordsPerTxn, "max-records", c.MaxRecordsPerTxn, "records per transaction (sluice, raw-eos) or poll (raw-alo)")
	fs.IntVar(&c.Repeat, "repeat", c.Repeat, "throughput rounds per scenario (each runs every system once); the median is reported")
	fs.BoolVar(&c.Latency, "latency", c.Latency, "measure end-to-end latency with a paced producer after each throughput run")
	fs.Float64Var(&c.LatencyLoad, "latency-load", c.LatencyLoad, "paced producer rate as a fraction of the system's measured throughput")
	fs.Float64Var(&c.LatencyRate, "latency-rate", c.LatencyRate, "paced producer rate in records/s for every system (overrides -latency-load when positive)")
	fs.DurationVar(&c.LatencyDuration, "latency-duration", c.LatencyDuration, "how long the paced producer runs")
	fs.BoolVar(&c.Table, "table", c.Table, "run the scenarios x systems table")
	fs.BoolVar(&c.Sweep, "sweep", c.Sweep, "run the commit-interval sweep of sluice-eos")
	fs.StringVar(&c.SweepIntervals, "sweep-intervals", c.SweepIntervals, "commit intervals of the sweep")
	fs.StringVar(&c.SweepScenarios, "sweep-scenarios", c.SweepScenarios, "scenarios of the sweep")
	fs.StringVar(&c.Chart, "chart", c.Chart, "PNG file to draw the sweep into")
	fs.StringVar(&c.ChartFrom, "chart-from", c.ChartFrom, "draw -chart from these -json files (comma-separated) and exit")
	fs.BoolVar(&c.Restore, "restore", c.Restore, "run the restore benchmark")
	fs.IntVar(&c.RestoreKeys, "restore-keys", c.RestoreKeys, "keys held by the restored task")
	fs.StringVar(&c.JSON, "json", c.JSON, "write one JSON object per run to this file")
	fs.StringVar(&c.CPUProfileDir, "cpuprofile-dir", c.CPUProfileDir, "write a CPU profile of every sluice throughput run into this directory")
	fs.DurationVar(&c.Stall, "stall", c.Stall, "fail a run whose output makes no progress for this long")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "keep reading this long after the last expected output, to catch duplicates")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the generated data")
	fs.BoolVar(&c.Quiet, "q", c.Quiet, "no progress lines")
}

// validate checks c and fills in what follows from it.
func (c *Config) validate() error {
	var errs []string
	if c.Records <= 0 {
		errs = append(errs, "-records must be positive")
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
		return allSystems(), nil
	}
	var out []system
	for _, s := range splitList(c.Systems) {
		sys, ok := systemByName(s)
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
