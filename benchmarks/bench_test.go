package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// The same harness from testing.B: one sub-benchmark per scenario and
// system, each iteration a full throughput run (load, drain, check). Against
// a real broker with KAFKA_BROKERS set:
//
//	cd benchmarks && KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench Scenario -benchtime 1x
//
// Metrics: records/s (steady-state, as the table), MB/s, cpu-s, and
// allocs/record (every allocation of the process during the run, the harness's
// reader and loader and, on kfake, the broker's included, divided by the
// input records).
func BenchmarkScenario(b *testing.B) {
	records := 50000
	if testing.Short() {
		records = 5000
	}
	for _, sc := range scenarioNames {
		for _, sys := range []string{"raw-alo", "raw-eos", "goka", "sluice-eos", "sluice-alo", "sluice-amo"} {
			b.Run(sc+"/"+sys, func(b *testing.B) {
				c := DefaultConfig()
				c.Brokers = os.Getenv("KAFKA_BROKERS")
				c.Scenario, c.Systems, c.Records = sc, sys, records
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
						b.Fatalf("%s/%s: %s", sc, sys, r.Error)
					}
					rps += r.RecordsPerS
					mbps += r.MBPerS
					cpu += r.CPUS
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

// TestSmoke runs every scenario on every system on a tiny input, with the
// latency phase, against an in-process kfake (or KAFKA_BROKERS), and fails
// on any wrong output. CI runs it (make test); it is a correctness check of
// the harness and the systems, not a measurement.
func TestSmoke(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = os.Getenv("KAFKA_BROKERS")
	c.Records = 2000
	c.Partitions = 2
	c.LatencyDuration = 300 * time.Millisecond
	c.LatencyLoad = 0.05 // a gentle paced load: this checks outputs, not speed
	c.Stall = 30 * time.Second
	c.Grace = 100 * time.Millisecond
	c.Quiet = !testing.Verbose()
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, len(scenarioNames)*len(allSystems()))
}

// TestSmokeSweepAndRestore runs a two-point commit-interval sweep with its
// chart and a restore of a small task.
func TestSmokeSweepAndRestore(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = os.Getenv("KAFKA_BROKERS")
	c.Table = false
	c.Sweep, c.SweepScenarios, c.SweepIntervals = true, "passthrough", "20ms,200ms"
	c.Chart = filepath.Join(t.TempDir(), "sweep.png")
	c.Restore, c.RestoreKeys = true, 3000
	c.Records = 2000
	c.Partitions = 2
	c.LatencyDuration = 300 * time.Millisecond
	c.LatencyLoad = 0.05
	c.Stall = 30 * time.Second
	c.Grace = 100 * time.Millisecond
	c.JSON = filepath.Join(t.TempDir(), "results.jsonl")
	c.Quiet = !testing.Verbose()
	rep, err := Run(t.Context(), c, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 4)
	for _, f := range []string{c.Chart, c.JSON} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (size %d)", f, err, st.Size())
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
