package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMain lets the test binary be the system's process of the
// out-of-process smoke test (child.go), as the command's binary is.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// The same harness from testing.B: one sub-benchmark per scenario and
// system, each iteration a full throughput run (load, drain, check). Against
// a real broker with KAFKA_BROKERS set:
//
//	cd benchmarks && KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Scenario -benchtime 1x
//
// Metrics: records/s (steady-state, 10%-90% of a drain), MB/s, cpu-s, and
// allocs/record (every allocation of the process during the run, the
// harness's reader and loader and, on kfake, the broker's included, divided
// by the input records).
func BenchmarkScenario(b *testing.B) {
	records := 50000
	if testing.Short() {
		records = 5000
	}
	for _, sc := range scenarioNames {
		for _, sys := range allSystems() {
			if !sys.inAll {
				continue
			}
			b.Run(sc+"/"+sys.name, func(b *testing.B) {
				c := smokeConfig()
				c.Brokers = os.Getenv("KAFKA_BROKERS")
				c.Scenario, c.Systems, c.Records = sc, sys.name, records
				c.Partitions = 4
				c.Latency, c.Quiet = false, true
				b.ReportAllocs()
				var rps, mbps, cpu, allocs float64
				n := 0
				for b.Loop() {
					var m0, m1 runtime.MemStats
					runtime.ReadMemStats(&m0)
					rep, err := Run(context.Background(), c, io.Discard)
					runtime.ReadMemStats(&m1)
					if err != nil {
						b.Fatal(err)
					}
					r := rep.Results[0]
					if r.Unsupported {
						b.Skip("not supported yet")
					}
					if !r.Correct {
						b.Fatalf("%s/%s: %s", sc, sys.name, r.Error)
					}
					rps += r.RecordsPerS
					mbps += r.MBPerS
					cpu += r.CPURunS
					allocs += float64(m1.Mallocs-m0.Mallocs) / float64(records)
					n++
				}
				b.ReportMetric(rps/float64(n), "records/s")
				b.ReportMetric(mbps/float64(n), "MB/s")
				b.ReportMetric(cpu/float64(n), "cpu-s")
				b.ReportMetric(allocs/float64(n), "allocs/record")
			})
		}
	}
}

// smokeConfig is a small, quick configuration on kfake (or KAFKA_BROKERS):
// one round, the drain method, one short paced probe at a gentle rate
// (these check outputs, not speed).
func smokeConfig() Config {
	c := DefaultConfig()
	c.Brokers = os.Getenv("KAFKA_BROKERS")
	c.Records = 2000
	c.Partitions = 2
	c.Repeat = 1
	c.Window = 0
	c.Sustainable = false
	c.LatencyDuration = 300 * time.Millisecond
	c.LatencyLoad = 0.05
	c.Stall = 30 * time.Second
	c.Grace = 100 * time.Millisecond
	c.Quiet = !testing.Verbose()
	return c
}

// TestSmoke runs every scenario on every published system on a tiny input,
// with a paced probe, against an in-process kfake (or KAFKA_BROKERS), and
// fails on any wrong output. CI runs it (make test); it is a correctness
// check of the harness and the systems, not a measurement, so the smoke
// tests run in parallel (each on a kfake of its own) to stay short.
func TestSmoke(t *testing.T) {
	for _, sc := range scenarioNames {
		t.Run(sc, func(t *testing.T) {
			t.Parallel()
			c := smokeConfig()
			c.Scenario = sc
			rep, err := Run(t.Context(), c, testWriter{t})
			if err != nil {
				t.Fatal(err)
			}
			syss, _ := c.systems()
			checkResults(t, rep, len(syss))
		})
	}
}

// TestSmokeVariants runs the raw-alo variants on wordcount (two stages, a
// repartition topic, state).
func TestSmokeVariants(t *testing.T) {
	t.Parallel()
	c := smokeConfig()
	c.Scenario, c.Systems, c.Latency = "wordcount", "raw-alo-1loop,raw-alo-naive", false
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 2)
}

// TestSmokeMethod runs the published method in small: window rounds in a
// random order (a backlog so small that the input must grow), the spread,
// a two-probe sustainable search, and the systems in processes of their own,
// with the JSON written and read back.
func TestSmokeMethod(t *testing.T) {
	t.Parallel()
	c := smokeConfig()
	c.Scenario, c.Systems = "passthrough", "raw-alo,sluice-eos"
	c.Records = 300
	c.Repeat = 2
	c.Window, c.Warmup = 300*time.Millisecond, 100*time.Millisecond
	c.Sustainable, c.Probes = true, 2
	c.OutOfProcess = true
	c.OrderSeed = 7
	c.JSON = filepath.Join(t.TempDir(), "results.jsonl")
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 2)
	rs := readJSON(t, c.JSON)
	if len(rs) != 2 {
		t.Fatalf("%d JSON rows, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Method != "window" || !r.OutOfProcess || r.OrderSeed != 7 {
			t.Errorf("%s: method %q, out of process %v, order seed %d", r.System, r.Method, r.OutOfProcess, r.OrderSeed)
		}
		windows := 0
		for _, rd := range r.Rounds {
			if rd.Method == "window" && rd.WindowS >= c.Window.Seconds()/2 {
				windows++
			}
		}
		if windows == 0 {
			t.Errorf("%s: no round measured a window: %+v", r.System, r.Rounds)
		}
		if len(r.Rounds) < 2 || r.Spread.N != len(r.Samples) || r.Spread.Min > r.RecordsPerS || r.Spread.Max < r.RecordsPerS {
			t.Errorf("%s: rounds %+v, spread %+v of %v", r.System, r.Rounds, r.Spread, r.RecordsPerS)
		}
		if len(r.Probes) != 2 || r.BoundMs != 200 || r.P99Ms == 0 {
			t.Errorf("%s: probes %+v, bound %v, p99 %v", r.System, r.Probes, r.BoundMs, r.P99Ms)
		}
		if r.CPURunS <= 0 || r.RSSMB <= 0 || !strings.Contains(r.CPUScope, "own process") {
			t.Errorf("%s: child cpu %v s, rss %v MB, scope %q", r.System, r.CPURunS, r.RSSMB, r.CPUScope)
		}
		if r.System == "sluice-eos" && (r.StageMetrics["map"]["records"] == 0 || r.Probes[0].StageMetrics == nil) {
			t.Errorf("sluice-eos: no stage metrics from the child: %v / %v", r.StageMetrics, r.Probes[0].StageMetrics)
		}
	}
}

// TestSmokeWrongOutput checks that the harness can fail: a system that
// duplicates one output record must be reported wrong by both methods.
func TestSmokeWrongOutput(t *testing.T) {
	t.Parallel()
	dup := system{name: "raw-alo-dup", guarantee: "at-least-once", start: startRaw(dupOneOutput(runRawALONaive))}
	for _, window := range []time.Duration{0, 300 * time.Millisecond} {
		c := smokeConfig()
		c.Scenario, c.Systems, c.Latency = "aggregate", "raw-alo-dup", false
		c.Records = 5000
		c.Window, c.Warmup = window, 50*time.Millisecond
		c.extraSystems = []system{dup}
		rep, err := Run(t.Context(), c, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Results[0]
		if r.Correct || !strings.Contains(r.Error, "wrong output") {
			t.Errorf("window %v: a duplicated output was not caught: correct %v, error %q", window, r.Correct, r.Error)
		}
	}
}

// dupOneOutput wraps a raw loop so that the stage emits the outputs of the
// first record it processes twice.
func dupOneOutput(loop rawLoop) rawLoop {
	return func(ctx context.Context, r *runSpec, st *rawStage) error {
		out, done := st.output, false
		st.output = func(s *memState, in *kgo.Record, emit func(*kgo.Record)) {
			out(s, in, func(o *kgo.Record) {
				emit(o)
				if !done {
					done = true
					emit(&kgo.Record{Topic: o.Topic, Key: o.Key, Value: o.Value})
				}
			})
		}
		return loop(ctx, r, st)
	}
}

func readJSON(t *testing.T, path string) []Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rs []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestSmokeSweepAndRestore runs a two-point commit-interval sweep with its
// chart and a restore of a small task.
func TestSmokeSweepAndRestore(t *testing.T) {
	t.Parallel()
	c := smokeConfig()
	c.Table = false
	c.Sweep, c.SweepScenarios, c.SweepIntervals = true, "passthrough", "20ms,200ms"
	c.Chart = filepath.Join(t.TempDir(), "sweep.png")
	c.Restore, c.RestoreKeys = true, 3000
	c.JSON = filepath.Join(t.TempDir(), "results.jsonl")
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 4)
	for _, f := range []string{c.Chart, c.JSON} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func checkResults(t *testing.T, rep *Report, want int) {
	t.Helper()
	if len(rep.Results) != want {
		t.Errorf("%d results, want %d", len(rep.Results), want)
	}
	for _, r := range rep.Results {
		if !r.Correct && !r.Unsupported {
			t.Errorf("%s %s/%s: not correct: %s", r.Kind, r.Scenario, r.System, r.Error)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestSmokeMetricsVariant runs sluice-eos with and without its Prometheus
// metrics in one run, as the overhead comparison does. Not parallel: it
// runs before the parallel smoke tests, whose windows a loaded machine can
// turn into drains (TestSmokeMethod).
func TestSmokeMetricsVariant(t *testing.T) {
	c := smokeConfig()
	c.Scenario, c.Systems, c.Latency = "wordcount", "sluice-eos,sluice-eos-metrics", false
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 2)
}
