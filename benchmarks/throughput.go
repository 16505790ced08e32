package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/processor"
)

// starter returns how c starts sys: in the harness's process, or in a child
// process of its own (-out-of-process).
func (c *Config) starter(sys system) func(ctx context.Context, r *runSpec) (*running, error) {
	if c.OutOfProcess {
		return startChild(sys)
	}
	return sys.start
}

// measureThroughput runs one round of one system and returns it as a row of
// one round.
func measureThroughput(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, kind string, round, pos int) Result {
	res := Result{Kind: kind, Scenario: sc.name, System: sys.name, Guarantee: sys.guarantee,
		CommitIntervalMs: float64(ci) / float64(time.Millisecond), Partitions: c.Partitions,
		Records: in.n, Broker: e.version, OutOfProcess: c.OutOfProcess, Method: c.method()}
	if c.Window > 0 {
		res.WarmupS = c.Warmup.Seconds()
	}
	tag := fmt.Sprintf("%s-%s-%s-%d-r%d", sc.name, sys.name, kind, ci.Milliseconds(), round)
	c.progress("%s / %s (commit interval %v): throughput round %d, %s", sc.name, sys.name, ci, round+1, c.methodFor(in.n))
	err := throughput(ctx, e, c, sc, sys, in, ci, tag, round, &res)
	rd := Round{Round: round + 1, Position: pos + 1, RecordsPerS: res.RecordsPerS, WindowS: res.WindowS,
		CPUUsPerRecord: res.CPUUsPerRecord, Check: res.Check, Method: res.Method}
	res.Method = c.method()
	switch {
	case errors.Is(err, errUnsupported):
		res.Unsupported = true
		c.progress("  %s: %v", sys.name, err)
	case err != nil:
		res.Error, res.Correct = err.Error(), false
		c.progress("  FAILED: %v", err)
	default:
		c.progress("  %.0f records/s over %.1f s, %.1f MB/s, cpu %.2f µs/record, rss %.0f MB, output %s (first output after %.1f s, stopped in %.1f s)",
			res.RecordsPerS, res.WindowS, res.MBPerS, res.CPUUsPerRecord, res.RSSMB, res.Check, res.FirstOutputS, res.StopS)
	}
	if !res.Correct && res.Error != "" {
		rd.Error = res.Error
		if res.measured {
			c.progress("  WRONG OUTPUT: %s", res.Error)
		}
	}
	res.Rounds = []Round{rd}
	return res
}

// profilePath is the CPU profile of one throughput round, or "".
func (c *Config) profilePath(sc *scenario, sys system, ci time.Duration, round int) string {
	if c.CPUProfileDir == "" {
		return ""
	}
	return filepath.Join(c.CPUProfileDir, fmt.Sprintf("%s-%s-%dms-r%d.pprof", sc.name, sys.name, ci.Milliseconds(), round+1))
}

// throughput runs one system on the loaded input and measures it (see
// Config.Window for the two methods). It fills res; an error means the round
// measured nothing (res.measured false) or its output was wrong.
func throughput(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, tag string, round int, res *Result) error {
	obs, err := observe(ctx, e, c, sc, sys, in, ci, tag, round)
	res.StopS = obs.stop.Seconds()
	if err != nil {
		return err
	}
	res.measured = true
	obs.resources(c, res)
	obs.rates(c, in, res)
	check, err := obs.rd.check.verdict()
	res.Check = check
	res.Correct = err == nil
	return err
}

// observation is what one throughput run saw.
type observation struct {
	rd        outputReader
	start     time.Time     // when the system was started
	cpu0      time.Duration // the harness process's CPU then
	snaps     []windowSnap  // at the window's start and end
	endStages map[string]processor.StageMetrics
	stop      time.Duration // how long stopping the system took
	usage     *syscall.Rusage
}

// windowSnap is what the window's two ends sample: the system's CPU (its
// process's), the harness's own CPU, and the stage metrics.
type windowSnap struct {
	cpu, harness time.Duration
	stages       map[string]processor.StageMetrics
}

// observe starts the system on the input, reads its output until the
// measurement is over, and stops the system.
func observe(ctx context.Context, e *env, c *Config, sc *scenario, sys system, in *loaded, ci time.Duration, tag string, round int) (*observation, error) {
	obs := &observation{rd: outputReader{check: in.exp.newCheck()}}
	app := e.app(tag)
	spec, cleanup, err := e.spec(ctx, c, sc, app, in.topic, app+"-out", ci)
	if err != nil {
		return obs, err
	}
	defer cleanup()
	defer e.deleteRunTopics(context.WithoutCancel(ctx), app+"-")

	// Profile all or none (issue 16): every system of a measured run.
	if path := c.profilePath(sc, sys, ci, round); path != "" {
		if c.OutOfProcess {
			spec.cpuProfile = path // the child profiles itself
		} else {
			f, err := createFile(path)
			if err != nil {
				return obs, err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return obs, err
			}
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}

	if !c.OutOfProcess {
		resetPeakRSS()
	}
	obs.cpu0, obs.start = cpuTime(), time.Now()
	run, err := c.starter(sys)(ctx, spec)
	if err != nil {
		return obs, err
	}
	win := windowSpec{warmup: c.Warmup, length: c.Window}
	win.cpu = func() time.Duration {
		s := windowSnap{harness: cpuTime()}
		if c.OutOfProcess {
			s.cpu, _ = procCPU(run.pid)
		} else {
			s.cpu = s.harness
		}
		s.stages, _ = run.metrics()
		obs.snaps = append(obs.snaps, s)
		return s.cpu
	}
	readErr := obs.rd.read(ctx, c, e.brokers, spec.output, in.exp.total.n, win, run.done)
	obs.endStages, _ = run.metrics()
	stopStart := time.Now()
	stopErr := run.stop()
	obs.stop = time.Since(stopStart)
	if run.usage != nil {
		obs.usage = run.usage()
	}
	if readErr != nil {
		return obs, errors.Join(readErr, stopErr)
	}
	if stopErr != nil {
		return obs, fmt.Errorf("stopping: %w", stopErr)
	}
	return obs, nil
}

// resources fills the CPU and memory of the whole run.
func (o *observation) resources(c *Config, res *Result) {
	if c.OutOfProcess {
		res.CPUScope = "the system's own process (/proc/<pid>/stat in the window, rusage from wait4 for the run)"
		res.RSSScope = "the system's own process (ru_maxrss from wait4)"
		if ru := o.usage; ru != nil {
			res.CPURunS = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			res.RSSMB = float64(ru.Maxrss) / 1024 // kilobytes on Linux
		}
		return
	}
	res.CPURunS = (cpuTime() - o.cpu0).Seconds()
	res.CPUScope = "the harness's process: the system, the harness's reader and (on kfake) the broker"
	res.RSSMB = float64(peakRSS()) / (1 << 20)
	res.RSSScope = "the harness's process (VmHWM): the system, the reader and the expected outputs"
}

// rates fills the throughput, by the window method where a window was
// measured, else by the drain method.
func (o *observation) rates(c *Config, in *loaded, res *Result) {
	rd := &o.rd
	res.FirstOutputS = rd.first.Sub(o.start).Seconds()
	perInput := in.outputsPerInput()
	// A window cut short by the end of the input still counts if it
	// covered half of c.Window (the round is run again anyway, see
	// measureRound); a shorter one does not.
	if c.Window > 0 && !rd.winStart.IsZero() && rd.winEnd.Sub(rd.winStart) >= c.Window/2 {
		// The window method: outputs seen in a fixed window that opens
		// c.Warmup after the first output, while input is left, as input
		// records (outputs / outputs per input: 1, or the words per line
		// of the whole input for wordcount).
		w := rd.winEnd.Sub(rd.winStart).Seconds()
		res.WindowS = w
		res.OutputsPerS = float64(rd.nEnd-rd.nStart) / w
		res.RecordsPerS = res.OutputsPerS / perInput
		res.CPUS = (rd.cpuEnd - rd.cpuStart).Seconds()
		if len(o.snaps) == 2 {
			if c.OutOfProcess {
				res.HarnessCPUS = (o.snaps[1].harness - o.snaps[0].harness).Seconds()
			}
			if d := stageDelta(o.snaps[0].stages, o.snaps[1].stages); d != nil {
				res.StageMetrics, res.Stages = d, describeStages(d)
			}
		}
		res.cutShort = rd.cutShort
		res.consumed = float64(rd.nEnd) / perInput
	} else {
		// The drain method: the time the output took to go from 10% to
		// 90% of its records, for 80% of the input records, so that
		// group joins, topic setup and the first and last commits do not
		// count. Tiny runs fall back to the drain time.
		res.Method = "drain"
		res.DrainS = rd.last.Sub(o.start).Seconds()
		res.DrainRecordsPerS = float64(in.n) / res.DrainS
		if w := rd.p90.Sub(rd.p10).Seconds(); w > 0.5 {
			res.WindowS = w
			res.RecordsPerS = 0.8 * float64(in.n) / w
		} else {
			res.WindowS = res.DrainS
			res.RecordsPerS = res.DrainRecordsPerS
		}
		res.OutputsPerS = res.RecordsPerS * perInput
		res.CPUS = res.CPURunS
		if d := stageDelta(nil, o.endStages); d != nil {
			res.StageMetrics, res.Stages = d, describeStages(d)
		}
		if c.Window > 0 {
			// Asked for a window, but the input ran out before one
			// could be measured.
			res.cutShort = true
			res.consumed = float64(in.n)
		}
	}
	res.MBPerS = res.RecordsPerS * float64(in.bytes) / float64(in.n) / 1e6
	if res.RecordsPerS > 0 && res.WindowS > 0 {
		res.CPUUsPerRecord = 1e6 * res.CPUS / (res.RecordsPerS * res.WindowS)
	}
}

// method describes c's throughput method.
func (c *Config) method() string {
	if c.Window > 0 {
		return "window"
	}
	return "drain"
}

func (c *Config) methodFor(records int) string {
	if c.Window > 0 {
		return fmt.Sprintf("a %v window after %v of output, %d records of input", c.Window, c.Warmup, records)
	}
	return fmt.Sprintf("draining %d records", records)
}
