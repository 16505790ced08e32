package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/processor"
)

// runRestore measures how long sluice takes to rebuild one task holding
// c.RestoreKeys keys from its changelog: from an empty state directory, and
// from a state directory whose checkpoint is 1% behind the changelog.
//
// How the 1%-behind state is made: a processor drains 99% of the keys and
// stops (its checkpoint then sits at the changelog's end); the state
// directory is copied; a processor drains the last 1% and stops. Restoring
// the copy replays the last 1% of the changelog. The measured time is
// StageMetrics.RestoreTime (the restore inside the assignment: listing the
// changelog's stable end, replaying, applying with the checkpoint); the
// table also shows the time from Run until the task was assigned, which adds
// the group join.
func runRestore(ctx context.Context, e *env, c *Config) ([]Result, error) {
	sc := scenarios["aggregate"]
	keys := c.RestoreKeys
	head := keys * 99 / 100
	app := e.name("restore")
	input, output := app+"-in", app+"-out"
	if err := e.createTopics(ctx, 1, nil, input, output); err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "sluice-bench-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	dir, snap := filepath.Join(base, "state"), filepath.Join(base, "snapshot")

	loadKeys := func(from, to int) error {
		c.progress("restore: loading keys %d..%d", from, to)
		for i := from; i < to; i++ {
			e.cl.Produce(ctx, &kgo.Record{Topic: input, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("1|")}, nil)
			if (i-from)%200000 == 199999 {
				c.progress("  %d/%d", i-from+1, to-from)
			}
		}
		return e.cl.Flush(ctx)
	}
	spec := func() *runSpec {
		return &runSpec{sc: sc, brokers: e.brokers, app: app, input: input, output: output,
			partitions: 1, commitInterval: c.CommitInterval, maxRecords: c.MaxRecordsPerTxn, stateDir: dir,
			sluiceOpts: []processor.Opt{processor.InstanceID("bench-restore")}}
	}
	start := startSluice(processor.ExactlyOnce)
	// drain runs a processor until the output holds n records.
	var rd outputReader
	drain := func(n int) error {
		run, err := start(ctx, spec())
		if err != nil {
			return err
		}
		rerr := rd.read(ctx, c, e.brokers, output, int64(n), windowSpec{}, run.done)
		serr := run.stop()
		if rerr != nil {
			return rerr
		}
		return serr
	}
	if err := loadKeys(0, head); err != nil {
		return nil, err
	}
	c.progress("restore: processing %d keys", head)
	if err := drain(head); err != nil {
		return nil, fmt.Errorf("restore: populating: %w", err)
	}
	if err := os.CopyFS(snap, os.DirFS(dir)); err != nil {
		return nil, fmt.Errorf("restore: copying the state directory: %w", err)
	}
	if err := loadKeys(head, keys); err != nil {
		return nil, err
	}
	rd = outputReader{}
	if err := drain(keys); err != nil {
		return nil, fmt.Errorf("restore: populating the last 1%%: %w", err)
	}

	// restoreOnce starts a processor on dir and waits until its task was
	// restored and assigned.
	restoreOnce := func(from string, want int64) Result {
		res := Result{Kind: "restore", Scenario: from, System: "sluice-eos", Guarantee: "exactly-once",
			CommitIntervalMs: float64(c.CommitInterval) / float64(time.Millisecond), Partitions: 1,
			RestoreKeys: keys, Broker: e.version}
		t0 := time.Now()
		run, err := start(ctx, spec())
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer run.stop()
		deadline := time.Now().Add(c.Stall + time.Duration(keys/10000)*time.Second)
		for {
			ms, err := run.metrics()
			if err != nil {
				res.Error = err.Error()
				return res
			}
			m := ms["sum"]
			if m.RestoreTime > 0 {
				res.AssignedS = time.Since(t0).Seconds()
				res.RestoreS = m.RestoreTime.Seconds()
				res.RestoredRecords = m.RestoredRecords
				break
			}
			if time.Now().After(deadline) {
				res.Error = "the task was not restored in time"
				return res
			}
			select {
			case <-run.done:
				res.Error = fmt.Sprintf("the processor stopped: %v", run.stop())
				return res
			case <-time.After(time.Millisecond):
			}
		}
		res.Correct = res.RestoredRecords == want
		if !res.Correct {
			res.Error = fmt.Sprintf("restored %d records, want %d", res.RestoredRecords, want)
		}
		res.Records = int(res.RestoredRecords)
		c.progress("restore from %s: %d records in %.3fs (assigned %.3fs after start)", from, res.RestoredRecords, res.RestoreS, res.AssignedS)
		return res
	}

	var out []Result
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	out = append(out, restoreOnce("empty", int64(keys)))
	if err := os.RemoveAll(dir); err != nil {
		return out, err
	}
	if err := os.CopyFS(dir, os.DirFS(snap)); err != nil {
		return out, err
	}
	out = append(out, restoreOnce("1%-behind", int64(keys-head)))
	return out, nil
}
