package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTimeout is wrapped by WaitFor's error when the condition did not hold
// in time.
var ErrTimeout = errors.New("timed out")

// Demo is what an example's embedded demo runs on: an in-process Kafka
// (franz-go's kfake, one broker) and a state directory, and, once Run is
// called, the processor (or sink runner) running in the background.
type Demo struct {
	// Brokers are the embedded broker's addresses.
	Brokers []string
	// StateDir is the -state-dir given, or a temporary directory that
	// Close removes.
	StateDir string

	cluster *kfake.Cluster
	tempDir string
	stop    context.CancelFunc
	done    chan struct{} // closed when the processor's Run returned
	err     error         // Run's error, once done is closed
}

// StartDemo starts the embedded broker and, when stateDir is "", makes a
// temporary state directory named after the example. Close the Demo.
func StartDemo(name, stateDir string) (*Demo, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("starting the embedded broker: %w", err)
	}
	d := &Demo{Brokers: cluster.ListenAddrs(), StateDir: stateDir, cluster: cluster}
	if d.StateDir == "" {
		dir, err := os.MkdirTemp("", "sluice-"+name+"-")
		if err != nil {
			cluster.Close()
			return nil, err
		}
		d.tempDir, d.StateDir = dir, dir
	}
	return d, nil
}

// Client returns a client of the embedded broker with opts; close it.
func (d *Demo) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(d.Brokers...)}, opts...)...)
}

// CreateTopics creates topics with the given partitions and configs.
func (d *Demo) CreateTopics(ctx context.Context, partitions int, configs map[string]*string, topics ...string) error {
	cl, err := d.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range topics {
		if _, err := adm.CreateTopic(ctx, int32(partitions), 1, configs, t); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	return nil
}

// Run calls run (a processor's or a sink runner's Run) on a goroutine of
// its own, with a context that Stop cancels.
//
// REQUIRES: Run was not called before.
func (d *Demo) Run(ctx context.Context, run func(context.Context) error) {
	ctx, d.stop = context.WithCancel(ctx)
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		d.err = run(ctx)
	}()
}

// WaitFor polls cond every 20 ms until it holds, the run returned, ctx is
// done, or timeout passed; what names what is awaited, for the error.
//
// REQUIRES: Run was called.
func (d *Demo) WaitFor(ctx context.Context, cond func() bool, timeout time.Duration, what string) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-d.done:
			return fmt.Errorf("stopped while waiting for %s", what)
		case <-deadline:
			return fmt.Errorf("%w after %v waiting for %s", ErrTimeout, timeout, what)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Stop cancels the run's context and returns its error once it returned
// (nil when nothing runs). Calling it again returns the same error.
func (d *Demo) Stop() error {
	if d.done == nil {
		return nil
	}
	d.stop()
	<-d.done
	return d.err
}

// RunUntil runs run (a processor's or a sink runner's Run) until cond
// holds, then stops it. It returns run's error if run failed, or else
// WaitFor's: cond did not hold within timeout, or run returned first.
//
// REQUIRES: Run was not called before.
func (d *Demo) RunUntil(ctx context.Context, run func(context.Context) error, cond func() bool, timeout time.Duration, what string) error {
	d.Run(ctx, run)
	err := d.WaitFor(ctx, cond, timeout, what)
	if runErr := d.Stop(); runErr != nil {
		return runErr
	}
	return err
}

// Close stops the run, then the broker, and removes the temporary state
// directory.
func (d *Demo) Close() {
	d.Stop()
	d.cluster.Close()
	if d.tempDir != "" {
		os.RemoveAll(d.tempDir)
	}
}

// ReadTopic reads topic from its start to the end it has when ReadTopic is
// called, with a read_committed consumer, and returns its data records in
// the order of each partition (records of aborted transactions are not
// among them). The embedded demos print their results from it. It gives up
// after a minute.
func (d *Demo) ReadTopic(ctx context.Context, topic string) ([]*kgo.Record, error) {
	cl, err := d.Client(
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(), // commit markers mark the position at the end
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing the end of %s: %w", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for len(left) > 0 {
		fetches := cl.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// TickPartitioner is the partitioner of demos whose input holds clock
// ticks: a record with a key goes to its key's partition under Kafka's
// default partitioner (as the runtime expects), a record without one (a
// tick) to the partition it names.
func TickPartitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		def := kgo.StickyKeyPartitioner(nil).ForTopic("")
		return func(r *kgo.Record, n int) int {
			if len(r.Key) == 0 {
				return int(r.Partition)
			}
			return def.Partition(r, n)
		}
	})
}

// ReadCounts reads topic (ReadTopic), whose values are counts as decimal
// text, and returns the last count of each key.
func (d *Demo) ReadCounts(ctx context.Context, topic string) (map[string]int64, error) {
	recs, err := d.ReadTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, r := range recs {
		n, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("output record %q=%q is not a count: %w", r.Key, r.Value, err)
		}
		counts[string(r.Key)] = n
	}
	return counts, nil
}
