package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/sluicehq/sluice/processor"
)

// system is one row of the table: a way to run a scenario.
type system struct {
	name      string
	guarantee string
	start     func(ctx context.Context, r *runSpec) (*running, error)
	// inAll puts the system in -systems all (the published rows); the
	// others are variants for checking the method.
	inAll bool
}

func allSystems() []system {
	return []system{
		{"raw-alo", "at-least-once", startRaw(runRawALO(true)), true},
		{"raw-alo-1loop", "at-least-once", startRaw(runRawALO(false)), false},
		{"raw-alo-naive", "at-least-once", startRaw(runRawALONaive), false},
		{"raw-eos", "exactly-once", startRaw(runRawEOS), true},
		{"goka", "at-least-once", startGoka(false), true},
		{"goka-tuned", "at-least-once", startGoka(true), true},
		{"sluice-eos", "exactly-once", startSluice(processor.ExactlyOnce), true},
		// sluice-eos with its Prometheus metrics registered and gathered
		// every second: run it with sluice-eos (-systems
		// sluice-eos,sluice-eos-metrics) for the metrics' cost.
		{"sluice-eos-metrics", "exactly-once", startSluiceMetrics(processor.ExactlyOnce), false},
		{"sluice-alo", "at-least-once", startSluice(processor.AtLeastOnce), true},
		{"sluice-amo", "at-most-once", startSluice(processor.AtMostOnce), true},
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

// baselines are the rows every other row's rounds are compared with, round
// by round (Result.RoundRatios).
var baselines = []string{"raw-alo", "raw-eos", "goka", "goka-tuned"}

// Result is one row: one scenario on one system (one JSON object of -json).
type Result struct {
	Kind             string  `json:"kind"` // table, sweep, restore
	Scenario         string  `json:"scenario"`
	System           string  `json:"system"`
	Guarantee        string  `json:"guarantee"`
	CommitIntervalMs float64 `json:"commit_interval_ms"`
	Partitions       int     `json:"partitions"`
	Records          int     `json:"records"`        // input records loaded (the backlog; a window run reads part of it)
	OutOfProcess     bool    `json:"out_of_process"` // the system ran in a process of its own
	Method           string  `json:"method"`         // window (a fixed window while input is left) or drain (the whole input, 10%-90%)
	WarmupS          float64 `json:"warmup_s,omitempty"`
	WindowS          float64 `json:"window_s"`             // the median round's measured window
	OrderSeed        uint64  `json:"order_seed,omitempty"` // seeds the random order of the systems in each round

	// Throughput: the median of the completed rounds, their spread, and
	// every round in the order it ran.
	RecordsPerS float64   `json:"records_per_s"` // input records per second in the window (median of the rounds)
	Spread      spread    `json:"records_per_s_spread"`
	Samples     []float64 `json:"records_per_s_samples,omitempty"` // every completed round's records_per_s, round order
	Rounds      []Round   `json:"rounds,omitempty"`
	// RoundRatios: per baseline row of the same run, this row's
	// records/s divided by the baseline's in the same round (rounds where
	// both completed), round order.
	RoundRatios      map[string][]float64 `json:"round_ratios,omitempty"`
	RatioVsRawALO    float64              `json:"ratio_vs_raw_alo"` // median / raw-alo's median
	OutputsPerS      float64              `json:"outputs_per_s"`
	DrainRecordsPerS float64              `json:"drain_records_per_s,omitempty"` // drain method: input records / drain_s (startup included)
	MBPerS           float64              `json:"mb_per_s"`
	DrainS           float64              `json:"drain_s,omitempty"` // drain method: start of the system to the last output record
	FirstOutputS     float64              `json:"first_output_s"`    // start of the system to the first output record
	StopS            float64              `json:"stop_s"`            // how long the system took to stop after the measurement
	Check            string               `json:"check,omitempty"`   // how the output was checked: exact or prefix (see expectation)

	// Latency at LatencyLoad (0.5) x records_per_s, or at -latency-rate:
	// the first paced probe, run for its whole duration.
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	MaxMs          float64 `json:"max_ms"`
	LatencyRate    float64 `json:"latency_rate_per_s"`   // the rate the paced producer achieved
	LatencyTarget  float64 `json:"latency_target_per_s"` // the rate it was asked for
	LatencyRecords int     `json:"latency_records"`      // input records of the paced run

	// Sustainable throughput (issue 15): the highest paced rate whose p99
	// stayed within BoundMs (stages x commit interval + 100 ms) for the
	// whole probe, from a search over Probes.
	BoundMs            float64 `json:"bound_ms,omitempty"`
	SustainablePerS    float64 `json:"sustainable_per_s"`
	SustainableOfDrain float64 `json:"sustainable_of_drain,omitempty"` // sustainable_per_s / records_per_s
	SustainableP50Ms   float64 `json:"sustainable_p50_ms,omitempty"`
	SustainableP99Ms   float64 `json:"sustainable_p99_ms,omitempty"`
	SustainableMaxMs   float64 `json:"sustainable_max_ms,omitempty"`
	// SustainableNote: "at least" when no probe above the best failed,
	// "below" when none passed (sustainable_per_s is then 0).
	SustainableNote string  `json:"sustainable_note,omitempty"`
	Probes          []Probe `json:"probes,omitempty"`

	// CPU and memory of the median round. See cpu_scope for whose.
	CPUS           float64 `json:"cpu_s"` // CPU seconds in the window (drain method: the whole run)
	CPUUsPerRecord float64 `json:"cpu_us_per_record"`
	CPUSpread      spread  `json:"cpu_us_per_record_spread"`
	CPURunS        float64 `json:"cpu_run_s"` // CPU seconds of the whole run (start to stop), from rusage
	CPUScope       string  `json:"cpu_scope"`
	HarnessCPUS    float64 `json:"harness_cpu_s,omitempty"` // out of process: the harness's own CPU in the window (reader)
	RSSMB          float64 `json:"rss_mb"`
	RSSScope       string  `json:"rss_scope,omitempty"`

	Correct     bool     `json:"correct"`
	Failures    []string `json:"failures,omitempty"` // rounds that did not complete (not counted)
	Unsupported bool     `json:"unsupported,omitempty"`
	Error       string   `json:"error,omitempty"`
	Notes       []string `json:"notes,omitempty"`
	// Sluice only: processor.StageMetrics over the median round's window
	// (Stages in words, StageMetrics field by field).
	Stages       string                        `json:"stages,omitempty"`
	StageMetrics map[string]map[string]float64 `json:"stage_metrics,omitempty"`
	// Restore benchmark only.
	RestoreKeys     int     `json:"restore_keys,omitempty"`
	RestoredRecords int64   `json:"restored_records,omitempty"`
	RestoreS        float64 `json:"restore_s,omitempty"`
	AssignedS       float64 `json:"assigned_s,omitempty"`
	Broker          string  `json:"broker"`

	// Between measureThroughput and summarize only.
	measured bool    // the round measured something (its output may still be wrong)
	cutShort bool    // the input ran out before the window ended
	consumed float64 // input records the system had consumed when the window closed (an estimate)
}

// Round is one throughput run of a row.
type Round struct {
	Round          int     `json:"round"`    // 1-based
	Position       int     `json:"position"` // 1-based place of the system in the round's order
	RecordsPerS    float64 `json:"records_per_s,omitempty"`
	Method         string  `json:"method,omitempty"` // drain when a window round's input ran out before half of the window
	WindowS        float64 `json:"window_s,omitempty"`
	CPUUsPerRecord float64 `json:"cpu_us_per_record,omitempty"`
	Check          string  `json:"check,omitempty"`
	Error          string  `json:"error,omitempty"`
	// Rerun: the first try of this round did not count and the round ran
	// again: its input ran out before the window ended (the input was
	// grown), or the system failed to run (the notes say how).
	Rerun bool `json:"rerun,omitempty"`
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
	if c.OrderSeed == 0 {
		c.OrderSeed = uint64(time.Now().UnixNano())
	}
	e, err := newEnv(ctx, c.Brokers)
	if err != nil {
		return nil, err
	}
	defer e.close()
	defer e.deleteRunTopics(context.Background(), e.runID)
	rep := &Report{Config: c, Broker: e.version}
	c.progress("broker: %s at %v; run id %s; order seed %d (-order-seed); systems %s",
		e.version, e.brokers, e.runID, c.OrderSeed, map[bool]string{true: "out of process", false: "in the harness's process"}[c.OutOfProcess])
	fmt.Fprintf(w, "order seed %d; method %s\n", c.OrderSeed, c.method())
	if err := e.warm(ctx, &c); err != nil {
		return rep, err
	}

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
	f, err := createFile(path)
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

// runScenario loads the scenario's input once and measures every system on
// it, side by side.
func runScenario(ctx context.Context, e *env, c *Config, sc *scenario, syss []system, ci time.Duration, kind string) ([]Result, error) {
	in, err := loadScenario(ctx, e, c, sc, kind)
	if err != nil {
		return nil, err
	}
	defer e.deleteRunTopics(context.WithoutCancel(ctx), in.topic)
	out, err := measureAll(ctx, e, c, sc, syss, in, ci, kind)
	setRatios(out)
	return out, err
}

// measureAll runs c.Repeat throughput rounds, each running every system once
// in an order drawn at random for the round (seeded by c.OrderSeed), so that
// drifts of a shared machine and the position in a round hit all rows alike;
// then, once per system and in a random order too, the paced latency
// measurement and the sustainable-throughput search.
func measureAll(ctx context.Context, e *env, c *Config, sc *scenario, syss []system, in *loaded, ci time.Duration, kind string) ([]Result, error) {
	// One stream per scenario and commit interval, so that a scenario run
	// alone with the same seed gets the same orders.
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%v", sc.name, ci)
	rng := rand.New(rand.NewPCG(c.OrderSeed, h.Sum64()))
	runs := make([][]Result, len(syss))
	for round := range max(c.Repeat, 1) {
		order := rng.Perm(len(syss))
		var names []string
		for _, i := range order {
			names = append(names, syss[i].name)
		}
		c.progress("%s round %d/%d: %s", sc.name, round+1, max(c.Repeat, 1), strings.Join(names, ", "))
		for pos, i := range order {
			if round > 0 && runs[i][0].Unsupported {
				continue
			}
			r := measureRound(ctx, e, c, sc, syss[i], in, ci, kind, round, pos)
			runs[i] = append(runs[i], r)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	out := make([]Result, len(syss))
	for i := range syss {
		out[i] = summarize(runs[i])
		out[i].OrderSeed = c.OrderSeed
	}
	setRoundRatios(out, runs)
	if !c.Latency {
		return out, nil
	}
	for _, i := range rng.Perm(len(syss)) {
		if out[i].Correct {
			measurePaced(ctx, e, c, sc, syss[i], ci, kind, &out[i])
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

// measureRound runs one round of one system. A window that ran out of input
// before it ended is run again once, on a grown input; after every run the
// input grows if the run came close to its end.
func measureRound(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, kind string, round, pos int) Result {
	r := measureThroughput(ctx, e, c, sc, sys, in, ci, kind, round, pos)
	if !r.measured && !r.Unsupported && ctx.Err() == nil {
		// A system that failed to run (not one whose output was wrong:
		// that row is wrong, whatever a second try does) gets one more
		// try, so that one refused start on a loaded broker does not
		// cost a sample; the failure stays in the notes.
		first := r.Error
		c.progress("  running the round again once")
		r = measureThroughput(ctx, e, c, sc, sys, in, ci, kind, round, pos)
		r.Rounds[0].Rerun = true
		r.Notes = append(r.Notes, fmt.Sprintf("round %d: the first try failed and the round ran again: %s", round+1, oneLine(first)))
	}
	if c.Window <= 0 || r.consumed == 0 {
		return r
	}
	short := r.cutShort
	need := r.consumed
	if short {
		// It consumed all the input; a window's worth at its rate, with
		// the records read before the first output, is more.
		need = max(need, 1.2*r.RecordsPerS*(c.Warmup+c.Window).Seconds())
	}
	if err := in.topUp(ctx, e, c, need); err != nil {
		r.Error, r.Correct = "growing the input: "+err.Error(), false
		return r
	}
	if !short {
		return r
	}
	c.progress("  the input ran out before the window ended; running the round again")
	r = measureThroughput(ctx, e, c, sc, sys, in, ci, kind, round, pos)
	r.Rounds[0].Rerun = true
	if r.cutShort {
		r.Notes = append(r.Notes, fmt.Sprintf("round %d: the input ran out before the %v window ended, even after growing it (measured over %.2f s, method %s)", round+1, c.Window, r.WindowS, r.Method))
		_ = in.topUp(ctx, e, c, max(r.consumed, 1.2*r.RecordsPerS*(c.Warmup+c.Window).Seconds()))
	}
	return r
}

// summarize makes a row from its rounds: the median of the completed
// rounds, with their spread. A round whose output was wrong makes the row
// wrong; rounds that failed otherwise (the system stopped, the output
// stalled: on a shared broker, e.g. when someone restarts it) are listed in
// Failures and do not count.
func summarize(rs []Result) Result {
	var ok []Result
	var failures []string
	var rounds []Round
	var notes []string
	var wrong *Result
	for i, r := range rs {
		rounds = append(rounds, r.Rounds...)
		notes = append(notes, r.Notes...)
		switch {
		case r.Unsupported:
			return r
		case r.Correct:
			ok = append(ok, r)
		case r.measured && wrong == nil: // completed with a wrong output
			wrong = &rs[i]
		case !r.measured:
			failures = append(failures, r.Error)
		}
	}
	var m Result
	switch {
	case wrong != nil:
		m = *wrong
	case len(ok) == 0:
		m = rs[0]
	default:
		var rates, cpus []float64
		for _, r := range ok {
			rates = append(rates, r.RecordsPerS)
			if r.CPUUsPerRecord > 0 {
				cpus = append(cpus, r.CPUUsPerRecord)
			}
		}
		sp := spreadOf(rates)
		// The other fields come from the round nearest to the median
		// (the median round itself for an odd count).
		best := 0
		for i, r := range ok {
			if math.Abs(r.RecordsPerS-sp.Median) < math.Abs(ok[best].RecordsPerS-sp.Median) {
				best = i
			}
		}
		m = ok[best]
		m.RecordsPerS, m.Spread, m.Samples = sp.Median, sp, rates
		m.CPUSpread = spreadOf(cpus)
		if in := ok[best]; in.RecordsPerS > 0 {
			scale := sp.Median / in.RecordsPerS
			m.MBPerS *= scale
			m.OutputsPerS *= scale
		}
	}
	m.Rounds, m.Failures, m.Notes = rounds, failures, notes
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

// setRoundRatios pairs every row's rounds with each baseline's rounds of the
// same index.
func setRoundRatios(out []Result, runs [][]Result) {
	for bi, b := range out {
		if !isBaseline(b.System) || !b.Correct {
			continue
		}
		for i := range out {
			if i == bi || !out[i].Correct {
				continue
			}
			var ratios []float64
			for r := range min(len(runs[i]), len(runs[bi])) {
				x, y := runs[i][r], runs[bi][r]
				if x.Correct && y.Correct && y.RecordsPerS > 0 {
					ratios = append(ratios, math.Round(1000*x.RecordsPerS/y.RecordsPerS)/1000)
				}
			}
			if len(ratios) > 0 {
				if out[i].RoundRatios == nil {
					out[i].RoundRatios = map[string][]float64{}
				}
				out[i].RoundRatios[b.System] = ratios
			}
		}
	}
}

func isBaseline(name string) bool {
	for _, b := range baselines {
		if b == name {
			return true
		}
	}
	return false
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
