package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// env is the Kafka the harness talks to: a real cluster (-brokers) or an
// in-process kfake cluster.
type env struct {
	brokers []string
	cluster *kfake.Cluster // nil on a real cluster
	cl      *kgo.Client
	adm     *kadm.Client
	version string // the broker version as franz-go guesses it from ApiVersions
	runID   string // prefixes every topic, group and id of this run
	runs    atomic.Int64
}

// app returns a new application name for one run of a system: its topics,
// groups and transactional ids. A rerun of a round must not find the
// offsets its first try committed (raw-alo's rerun once resumed from them,
// with its in-memory sums back at zero, and the check caught it).
func (e *env) app(tag string) string {
	return e.name(tag, "a"+strconv.FormatInt(e.runs.Add(1), 10))
}

func newEnv(ctx context.Context, brokers string) (*env, error) {
	e := &env{runID: fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)}
	if brokers == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1),
			kfake.GroupMinSessionTimeout(time.Second))
		if err != nil {
			return nil, fmt.Errorf("starting kfake: %w", err)
		}
		e.cluster = c
		e.brokers = c.ListenAddrs()
	} else {
		e.brokers = splitList(brokers)
	}
	// MetadataMinAge: waitTopics's ListOffsets routes by the client's
	// metadata, which franz-go refreshes at most every 5 s by default; a
	// topic created a moment ago made every run wait those 5 s.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100000), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		e.close()
		return nil, err
	}
	e.cl = cl
	e.adm = kadm.NewClient(cl)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	vs, err := e.adm.ApiVersions(pctx)
	if err == nil {
		for _, v := range vs.Sorted() {
			if v.Err == nil {
				e.version = v.VersionGuess()
				break
			}
		}
	}
	if err != nil {
		e.close()
		return nil, fmt.Errorf("no answer from %v: %w", e.brokers, err)
	}
	if e.cluster != nil {
		e.version = "kfake (in-process, franz-go pkg/kfake)"
	}
	return e, nil
}

// warm makes the broker create its internal topics before anything is
// measured: the first consumer group creates __consumer_offsets (50
// partitions) and the first transactional producer __transaction_state (50
// more), which takes seconds on a fresh broker. Without this, whichever
// system a round's random order puts first on a new broker pays for it (a
// sluice-eos window once saw one EndTxn take 3.9 s).
func (e *env) warm(ctx context.Context, c *Config) error {
	topic := e.name("warm")
	if err := e.createTopics(ctx, 1, nil, topic); err != nil {
		return err
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID(e.name("warm-txn")),
		kgo.ConsumerGroup(e.name("warm-group")), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("warming the broker: %w", err)
	}
	if err := cl.ProduceSync(wctx, &kgo.Record{Topic: topic, Value: []byte("warm")}).FirstErr(); err != nil {
		return fmt.Errorf("warming the broker: %w", err)
	}
	if err := cl.EndTransaction(wctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("warming the broker: %w", err)
	}
	for {
		fs := cl.PollFetches(wctx)
		if err := wctx.Err(); err != nil {
			return fmt.Errorf("warming the broker: no record read back: %w", err)
		}
		if fs.NumRecords() > 0 {
			break
		}
	}
	if err := cl.CommitUncommittedOffsets(wctx); err != nil {
		return fmt.Errorf("warming the broker: %w", err)
	}
	c.progress("broker warmed (a transaction and a group commit) in %v", time.Since(start).Round(time.Millisecond))
	return nil
}

func (e *env) close() {
	if e.cl != nil {
		e.cl.Close()
	}
	if e.cluster != nil {
		e.cluster.Close()
	}
}

func (e *env) real() bool { return e.cluster == nil }

// name returns a run-unique name for a topic, group or id.
func (e *env) name(parts ...string) string {
	return e.runID + "-" + strings.Join(parts, "-")
}

// createTopics creates topics with the given partitions (replication 1 on a
// single broker: the broker's default).
func (e *env) createTopics(ctx context.Context, partitions int, configs map[string]*string, topics ...string) error {
	resp, err := e.adm.CreateTopics(ctx, int32(partitions), -1, configs, topics...)
	if err != nil {
		return err
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", r.Topic, r.Err)
		}
	}
	return e.waitTopics(ctx, partitions, topics...)
}

// waitTopics waits until the broker's metadata shows every topic with all its
// partitions led: CreateTopics returns before that, and a system started at
// once (goka, sluice's topic check) may not find its topics on a loaded
// broker.
func (e *env) waitTopics(ctx context.Context, partitions int, topics ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := e.adm.Metadata(ctx, topics...)
		ready := err == nil
		if ready {
			for _, t := range topics {
				td, ok := md.Topics[t]
				if !ok || td.Err != nil || len(td.Partitions) != partitions {
					ready = false
					break
				}
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
			}
		}
		if ready {
			// The metadata can name a leader before that broker
			// acts as one: a ListOffsets then fails with
			// NOT_LEADER_OR_FOLLOWER (goka's startup gave up on
			// one). Ask every partition for its start offset.
			lo, lerr := e.adm.ListStartOffsets(ctx, topics...)
			ready = lerr == nil && lo.Error() == nil
			if !ready {
				err = errors.Join(lerr, lo.Error())
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v not ready after 30s (last error: %v)", topics, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// deleteRunTopics deletes every topic whose name starts with prefix (best
// effort): each run's topics once the run is over, the input once its
// scenario is done, and whatever is left of the harness run at its end. A
// published run writes tens of gigabytes of output otherwise (the fastest
// row writes about a gigabyte per 10 s window), and a broker that holds them
// flushes and caches more.
func (e *env) deleteRunTopics(ctx context.Context, prefix string) {
	if !e.real() {
		return
	}
	topics, err := e.adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var del []string
	for _, t := range topics.Names() {
		if strings.HasPrefix(t, prefix) {
			del = append(del, t)
		}
	}
	if len(del) > 0 {
		_, _ = e.adm.DeleteTopics(ctx, del...)
	}
}

// load produces the next n records of g into topic, reporting progress,
// hands every output they must cause to out, and returns their input bytes.
func (e *env) load(ctx context.Context, c *Config, topic string, g *generator, n int, out func(k, v []byte)) (int64, error) {
	var bytes int64
	var failed atomic.Pointer[error]
	start := time.Now()
	lastReport := start
	for i := range n {
		k, v := g.next(out)
		bytes += int64(len(k) + len(v))
		e.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: k, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
		if p := failed.Load(); p != nil {
			return bytes, fmt.Errorf("loading %s: %w", topic, *p)
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			c.progress("  loading %s: %d/%d records (%.0f%%)", topic, i, n, 100*float64(i)/float64(n))
		}
	}
	if err := e.cl.Flush(ctx); err != nil {
		return bytes, err
	}
	if p := failed.Load(); p != nil {
		return bytes, fmt.Errorf("loading %s: %w", topic, *p)
	}
	el := time.Since(start)
	c.progress("  loaded %d records (%.1f MB) into %s in %v (%.0f records/s)", n, float64(bytes)/1e6, topic, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return bytes, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
