package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Latency under a paced load, and sustainable throughput (issue 15).
//
// After a row's rounds, the system is started once more, on fresh topics, and
// a paced producer in the harness writes records stamped with the time each
// was produced; a read_committed reader times every expected output. The
// session runs a sequence of probes, each c.LatencyDuration at one rate; the
// system runs through all of them (as a service under changing traffic
// would), and before each probe the harness waits until every output of the
// previous one has arrived, so a probe starts with no backlog.
//
//   - The first probe runs at LatencyLoad (0.5) x the row's median
//     throughput (or at -latency-rate), for its whole duration: its p50, p99
//     and max are the row's latency at half of its drain rate.
//   - Then (-sustainable) a search: a probe passes when its p99 over the
//     whole probe is at most the bound, stages x commit interval + 100 ms
//     (issue 15's bound, per stage as issue 5's latency target has it: 200 ms
//     for one stage at 100 ms, 300 ms for two) and the producer reached at
//     least 95% of the rate. (The session's whole output is checked when it
//     ends, against what its input must cause; a wrong one fails the row.)
//     nextProbeRate picks
//     the next rate: up to 0.9 x drain and on by 20% while every probe
//     passes, halving while every probe fails, bisecting between the highest
//     pass and the lowest failure otherwise, until -probes probes ran or the
//     two are within 5%. A probe stops early once more than 1% of the
//     outputs it would produce are already later than the bound, since its
//     p99 can then only miss.
//   - The sustainable throughput is the rate the paced producer achieved
//     in the highest passing probe.

// Probe is one paced run of a session.
type Probe struct {
	TargetPerS   float64 `json:"target_per_s"`
	AchievedPerS float64 `json:"achieved_per_s"` // input records per second the paced producer reached
	DurationS    float64 `json:"duration_s"`
	Inputs       int     `json:"inputs"`
	Outputs      int     `json:"outputs"` // outputs timed
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	Late         int     `json:"late"` // outputs later than the bound
	Passed       bool    `json:"passed"`
	EarlyStop    bool    `json:"early_stop,omitempty"`
	Reason       string  `json:"reason,omitempty"` // why it failed
	// CPUS is the system's CPU seconds in the probe (scope as the row's
	// cpu_scope).
	CPUS         float64                       `json:"cpu_s"`
	Stages       string                        `json:"stages,omitempty"`
	StageMetrics map[string]map[string]float64 `json:"stage_metrics,omitempty"`
}

// latencyBound is issue 15's bound for a scenario: stages x commit interval
// + 100 ms.
func latencyBound(sc *scenario, ci time.Duration) time.Duration {
	return time.Duration(sc.stages)*ci + 100*time.Millisecond
}

// measurePaced runs the paced session of one row and fills its latency and
// sustainable-throughput fields.
func measurePaced(ctx context.Context, e *env, c *Config, sc *scenario, sys system, ci time.Duration, kind string, res *Result) {
	bound := latencyBound(sc, ci)
	res.BoundMs = float64(bound) / float64(time.Millisecond)
	tag := fmt.Sprintf("%s-%s-%s-%d", sc.name, sys.name, kind, ci.Milliseconds())
	fail := func(err error) {
		res.Error = "latency: " + err.Error()
		res.Correct = false
		c.progress("  latency FAILED: %v", err)
	}
	c.progress("%s / %s (commit interval %v): paced session (bound %v)", sc.name, sys.name, ci, bound)
	s, err := startSession(ctx, e, c, sc, sys, ci, tag)
	if err != nil {
		fail(err)
		return
	}
	defer func() {
		if err := s.close(); err != nil && res.Correct {
			fail(err)
		}
	}()
	first := c.LatencyLoad * res.RecordsPerS
	if c.LatencyRate > 0 {
		first = c.LatencyRate
	}
	p, err := s.probe(ctx, first, bound, false)
	res.Probes = append(res.Probes, p)
	if err != nil {
		fail(err)
		return
	}
	res.LatencyTarget, res.LatencyRate, res.LatencyRecords = p.TargetPerS, p.AchievedPerS, p.Inputs
	res.P50Ms, res.P99Ms, res.MaxMs = p.P50Ms, p.P99Ms, p.MaxMs
	if !c.Sustainable || c.LatencyRate > 0 {
		return
	}
	for len(res.Probes) < c.Probes {
		rate, ok := nextProbeRate(res.RecordsPerS, res.Probes)
		if !ok {
			break
		}
		p, err := s.probe(ctx, rate, bound, true)
		res.Probes = append(res.Probes, p)
		if err != nil {
			fail(err)
			return
		}
	}
	setSustainable(res)
	c.progress("  sustainable: %.0f records/s (%.0f%% of %.0f) %s", res.SustainablePerS, 100*res.SustainableOfDrain, res.RecordsPerS, res.SustainableNote)
}

// nextProbeRate returns the rate of the next probe of a search, given the
// probes so far (all of them at positive rates) and the row's drain rate;
// false when the search is done.
func nextProbeRate(drain float64, probes []Probe) (float64, bool) {
	const resolution = 0.05 // stop when the highest pass is within 5% of the lowest failure
	lo, hi := 0.0, math.Inf(1)
	for _, p := range probes {
		if p.Passed {
			lo = max(lo, p.TargetPerS)
		} else {
			hi = min(hi, p.TargetPerS)
		}
	}
	switch {
	case math.IsInf(hi, 1): // every probe passed: go up
		next := 0.9 * drain
		if lo >= next {
			next = 1.2 * lo
		}
		if next > 1.5*drain {
			return 0, false
		}
		return next, true
	case lo == 0: // every probe failed: go down
		return hi / 2, true
	case hi-lo <= resolution*hi:
		return 0, false
	default:
		return (lo + hi) / 2, true
	}
}

// setSustainable fills the sustainable fields from res.Probes.
func setSustainable(res *Result) {
	var best *Probe
	lowest, lowestFail := math.Inf(1), math.Inf(1)
	for i, p := range res.Probes {
		lowest = min(lowest, p.TargetPerS)
		if p.Passed && (best == nil || p.TargetPerS > best.TargetPerS) {
			best = &res.Probes[i]
		}
	}
	if best == nil {
		res.SustainablePerS = 0
		res.SustainableNote = fmt.Sprintf("below %.0f records/s (no probe passed)", lowest)
		return
	}
	for _, p := range res.Probes {
		if !p.Passed && p.TargetPerS > best.TargetPerS {
			lowestFail = min(lowestFail, p.TargetPerS)
		}
	}
	res.SustainablePerS = best.AchievedPerS
	res.SustainableP50Ms, res.SustainableP99Ms, res.SustainableMaxMs = best.P50Ms, best.P99Ms, best.MaxMs
	if res.RecordsPerS > 0 {
		res.SustainableOfDrain = best.AchievedPerS / res.RecordsPerS
	}
	if math.IsInf(lowestFail, 1) {
		res.SustainableNote = "at least (no probe above it failed)"
	} else {
		res.SustainableNote = fmt.Sprintf("below %.0f records/s (the lowest failed probe)", lowestFail)
	}
}

// pacedSession is a running system with its paced producer and reader.
type pacedSession struct {
	c       *Config
	run     *running
	prod    *kgo.Client
	reader  *kgo.Client
	g       *generator
	lat     *latencies
	cleanup func()

	stopReading context.CancelFunc
	readDone    chan struct{}
	prodErr     atomic.Pointer[error]

	mu      sync.Mutex // guards the fields below and g
	want    checksum   // every output the produced records must cause
	got     checksum   // every output read
	outputs int        // outputs registered in this phase
}

// startSession creates fresh topics, starts the system, its producer and
// reader, and waits until the system answers.
func startSession(ctx context.Context, e *env, c *Config, sc *scenario, sys system, ci time.Duration, tag string) (_ *pacedSession, rerr error) {
	app := e.app(tag + "-lat")
	input := app + "-in"
	if err := e.createTopics(ctx, c.Partitions, nil, input); err != nil {
		return nil, err
	}
	spec, cleanup, err := e.spec(ctx, c, sc, app, input, app+"-out", ci)
	if err != nil {
		return nil, err
	}
	s := &pacedSession{c: c, cleanup: func() { cleanup(); e.deleteRunTopics(context.WithoutCancel(ctx), app+"-") }, lat: newLatencies(), g: newGenerator(sc, c.Keys, c.ValueSize, c.Seed+1)}
	defer func() {
		if rerr != nil {
			s.close()
		}
	}()
	s.prod, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(input),
		kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return nil, err
	}
	s.reader, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(spec.output),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		return nil, err
	}
	if s.run, err = c.starter(sys)(ctx, spec); err != nil {
		return nil, err
	}
	rctx, stopReading := context.WithCancel(ctx)
	s.stopReading, s.readDone = stopReading, make(chan struct{})
	go func() {
		defer close(s.readDone)
		for rctx.Err() == nil {
			fs := s.reader.PollFetches(rctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				s.lat.seen(r.Key, r.Value, now)
				s.mu.Lock()
				s.got.add(r.Key, r.Value)
				s.mu.Unlock()
			})
		}
	}()
	// Warm up: one record every 50 ms until the system answers.
	deadline := time.Now().Add(c.Stall)
	for !s.lat.sawWarmup() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no output within %v of starting", c.Stall)
		}
		if err := s.produce(ctx, true); err != nil {
			return nil, err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-s.run.done:
			return nil, fmt.Errorf("the system stopped: %v", s.run.stop())
		}
	}
	return s, s.settle(ctx)
}

// produce writes the generator's next record, stamped now, and registers
// the outputs it must cause.
func (s *pacedSession) produce(ctx context.Context, warm bool) error {
	ts := time.Now()
	s.mu.Lock()
	k, v := s.g.next(func(k, v []byte) {
		s.want.add(k, v)
		if warm {
			s.lat.expectWarmup(k, v)
		} else {
			s.lat.expect(k, v, ts)
			s.outputs++
		}
	})
	s.mu.Unlock()
	s.prod.Produce(ctx, &kgo.Record{Key: k, Value: v, Timestamp: ts}, func(_ *kgo.Record, err error) {
		if err != nil {
			s.prodErr.CompareAndSwap(nil, &err)
		}
	})
	if p := s.prodErr.Load(); p != nil {
		return *p
	}
	return nil
}

// settle flushes the producer and waits until every expected output has
// arrived; it fails when none arrives for c.Stall.
func (s *pacedSession) settle(ctx context.Context) error {
	if err := s.prod.Flush(ctx); err != nil {
		return err
	}
	last, lastChange := s.lat.outstanding(), time.Now()
	for {
		n := s.lat.outstanding()
		if n == 0 {
			return nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) > s.c.Stall {
			return fmt.Errorf("%d expected outputs never arrived", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.run.done:
			return fmt.Errorf("the system stopped: %v", s.run.stop())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cpu returns the system's CPU time so far.
func (s *pacedSession) cpu() time.Duration {
	if s.c.OutOfProcess {
		d, _ := procCPU(s.run.pid)
		return d
	}
	return cpuTime()
}

// probe paces the producer at rate for c.LatencyDuration (or less, when
// earlyStop and the p99 is bound to miss), then waits for every output.
func (s *pacedSession) probe(ctx context.Context, rate float64, bound time.Duration, earlyStop bool) (Probe, error) {
	c := s.c
	p := Probe{TargetPerS: rate}
	c.progress("  probe at %.0f records/s for %v", rate, c.LatencyDuration)
	s.lat.startPhase(bound)
	s.mu.Lock()
	s.outputs = 0
	s.mu.Unlock()
	m0, _ := s.run.metrics()
	cpu0 := s.cpu()
	start := time.Now()
	nextCheck := start.Add(time.Second)
	sent := 0
	for {
		el := time.Since(start)
		if el >= c.LatencyDuration {
			break
		}
		for target := int(rate * el.Seconds()); sent < target; sent++ {
			if err := s.produce(ctx, false); err != nil {
				return p, err
			}
		}
		if now := time.Now(); earlyStop && now.After(nextCheck) {
			nextCheck = now.Add(250 * time.Millisecond)
			// The outputs the whole probe would produce at its target
			// rate: the paced producer never gets ahead of the target,
			// so the probe's real total is at most about this, and more
			// than 1% of it late means a p99 above the bound.
			s.mu.Lock()
			planned := float64(s.outputs) / float64(max(sent, 1)) * rate * c.LatencyDuration.Seconds()
			s.mu.Unlock()
			if late := s.lat.lateBy(now); sent > 0 && float64(late) > 0.01*planned+1 {
				p.EarlyStop = true
				p.Reason = fmt.Sprintf("stopped after %.1f s: %d outputs already later than %v, more than 1%% of the ~%.0f the probe would produce",
					el.Seconds(), late, bound, planned)
				break
			}
		}
		select {
		case <-s.run.done:
			return p, fmt.Errorf("the system stopped: %v", s.run.stop())
		case <-ctx.Done():
			return p, ctx.Err()
		default:
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	p.DurationS, p.Inputs = el.Seconds(), sent
	p.AchievedPerS = float64(sent) / el.Seconds()
	if err := s.settle(ctx); err != nil {
		return p, err
	}
	p.CPUS = (s.cpu() - cpu0).Seconds()
	if m1, _ := s.run.metrics(); m1 != nil {
		if d := stageDelta(m0, m1); d != nil {
			p.StageMetrics, p.Stages = d, describeStages(d)
		}
	}
	p.Outputs, p.P50Ms, p.P99Ms, p.MaxMs = s.lat.percentiles()
	p.Late = s.lat.lateBy(time.Now())
	p.judge(bound)
	verdict := "passed"
	if !p.Passed {
		verdict = "failed: " + p.Reason
	}
	c.progress("    at %.0f records/s: p50 %.0f ms, p99 %.0f ms, max %.0f ms over %d outputs; %s",
		p.AchievedPerS, p.P50Ms, p.P99Ms, p.MaxMs, p.Outputs, verdict)
	return p, nil
}

// judge decides whether a finished probe passed.
func (p *Probe) judge(bound time.Duration) {
	boundMs := float64(bound) / float64(time.Millisecond)
	switch {
	case p.EarlyStop:
	case p.Outputs == 0:
		p.Reason = "no output timed"
	case p.P99Ms > boundMs:
		p.Reason = fmt.Sprintf("p99 %.0f ms > %.0f ms", p.P99Ms, boundMs)
	case p.AchievedPerS < 0.95*p.TargetPerS:
		p.Reason = fmt.Sprintf("the paced producer reached only %.0f of %.0f records/s", p.AchievedPerS, p.TargetPerS)
	default:
		p.Passed = true
	}
}

// close waits a grace period (duplicates would show), checks that the
// session's whole output was exactly what its input must cause, and stops
// the system.
func (s *pacedSession) close() error {
	var errs []error
	if s.run != nil && s.readDone != nil {
		time.Sleep(s.c.Grace)
	}
	if s.stopReading != nil {
		s.stopReading()
		<-s.readDone
		s.mu.Lock()
		ok := s.got == s.want
		got, want := s.got, s.want
		s.mu.Unlock()
		if !ok || s.lat.unknown > 0 {
			errs = append(errs, fmt.Errorf("wrong output in the paced run: %d records (want %d), %d unexpected", got.n, want.n, s.lat.unknown))
		}
	}
	if s.run != nil {
		if err := s.run.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping: %w", err))
		}
	}
	if s.reader != nil {
		s.reader.Close()
	}
	if s.prod != nil {
		s.prod.Close()
	}
	s.cleanup()
	return errors.Join(errs...)
}
