package testbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvBrokers names the environment variable holding the real broker's
// comma-separated bootstrap addresses.
const EnvBrokers = "KAFKA_BROKERS"

// DefaultReadTimeout bounds ReadCommitted.
const DefaultReadTimeout = 60 * time.Second

// Real reports whether tests run against a real broker (KAFKA_BROKERS is set).
func Real() bool { return len(envBrokers()) > 0 }

func envBrokers() []string {
	var out []string
	for _, b := range strings.Split(os.Getenv(EnvBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

var (
	pingOnce sync.Once
	pingErr  error
)

// Brokers returns bootstrap addresses for the test: those of KAFKA_BROKERS if
// set (checked to answer, once per test binary), otherwise those of a new
// single-broker kfake cluster that is closed when the test ends.
func Brokers(t testing.TB) []string {
	t.Helper()
	if bs := envBrokers(); len(bs) > 0 {
		pingOnce.Do(func() { pingErr = ping(bs) })
		if pingErr != nil {
			t.Fatalf("testbroker: %s=%s does not answer: %v (start one with: scripts/kafka start)",
				EnvBrokers, strings.Join(bs, ","), pingErr)
		}
		return bs
	}
	return NewKfake(t).ListenAddrs()
}

func ping(brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}

// NewKfake starts an in-process kfake cluster and closes it when the test
// ends. Its defaults mirror scripts/kafka's broker: one broker, one partition
// for topics created with -1 partitions, no topic auto-creation, a 1 s minimum
// group session timeout. opts come after the defaults, so they override them.
// Use it directly for fault injection (Cluster.ControlKey and friends).
func NewKfake(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	all := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(1),
		kfake.GroupMinSessionTimeout(time.Second),
	}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("testbroker: starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Unique returns a name for a topic, group, transactional id or application
// id that no other test (of this or any other run on the same broker) uses:
// prefix, the sanitized test name and a random suffix, joined by '-'. It
// contains only [a-zA-Z0-9-], which is valid everywhere in Kafka and avoids
// the '.'/'_' metric-name collision warning.
func Unique(t testing.TB, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testbroker: random suffix: %v", err)
	}
	name := sanitize(t.Name())
	if len(name) > 120 {
		name = name[:120]
	}
	parts := []string{}
	if p := sanitize(prefix); p != "" {
		parts = append(parts, p)
	}
	if name != "" {
		parts = append(parts, name)
	}
	parts = append(parts, hex.EncodeToString(b[:]))
	return strings.Join(parts, "-")
}

func sanitize(s string) string {
	var sb strings.Builder
	dash := false
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok {
			if !dash && sb.Len() > 0 {
				sb.WriteByte('-')
			}
			dash = true
			continue
		}
		sb.WriteRune(r)
		dash = false
	}
	return strings.TrimSuffix(sb.String(), "-")
}

// NewClient returns a kgo client seeded with brokers, closed when the test ends.
func NewClient(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("testbroker: new client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns a kadm client for brokers, closed when the test ends.
func Admin(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	return kadm.NewClient(NewClient(t, brokers))
}

// CreateTopic creates topic with the given partition count (-1: the broker's
// default) and topic configs (nil for none), with the broker's default
// replication, and waits until every partition has a leader, so that the
// test can produce to it at once. It fails the test on any error, including
// when the topic already exists.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, -1, configs, topic); err != nil {
		t.Fatalf("testbroker: creating topic %q (%d partitions): %v", topic, partitions, err)
	}
	var last error
	for {
		last = topicReady(ctx, adm, topic, partitions)
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testbroker: topic %q created but not ready after 30s: %v", topic, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicReady(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return err
	}
	td, ok := tds[topic]
	if !ok {
		return errors.New("not in metadata yet")
	}
	if td.Err != nil {
		return td.Err
	}
	if partitions > 0 && int32(len(td.Partitions)) != partitions {
		return fmt.Errorf("metadata shows %d of %d partitions", len(td.Partitions), partitions)
	}
	if len(td.Partitions) == 0 {
		return errors.New("no partitions in metadata yet")
	}
	for _, pd := range td.Partitions {
		if pd.Err != nil {
			return fmt.Errorf("partition %d: %w", pd.Partition, pd.Err)
		}
		if pd.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", pd.Partition)
		}
	}
	// The broker that answered metadata knows the topic; make sure the
	// partitions' logs exist too (real Kafka can lag here right after create).
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	return lo.Error()
}

// ReadCommitted reads topic from its start to its end as of this call and
// returns its committed records (read_committed: aborted and open transactions'
// records excluded), sorted by partition and offset. The ends are the high
// watermarks listed when it is called; a partition counts as read when the
// consumer's position reaches its end, so an open transaction below the end
// makes it wait until the transaction commits or aborts. It fails the test if
// that takes longer than DefaultReadTimeout (or the test's deadline, if
// sooner). opts are extra consumer options.
func ReadCommitted(t testing.TB, brokers []string, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	return ReadCommittedWithin(t, DefaultReadTimeout, brokers, topic, opts...)
}

// ReadCommittedWithin is ReadCommitted with an explicit timeout.
func ReadCommittedWithin(t testing.TB, timeout time.Duration, brokers []string, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	return readCommitted(t, timeout, brokers, nil, topic, opts...)
}

// readCommitted is ReadCommittedWithin with conn, the options that connect
// to the brokers (TLS, SASL), on every client it makes.
func readCommitted(t testing.TB, timeout time.Duration, brokers []string, conn []kgo.Opt, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	if dl, ok := deadline(t); ok {
		if left := time.Until(dl) - 5*time.Second; left > 0 && left < timeout {
			timeout = left
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	adm := kadm.NewClient(NewClient(t, brokers, conn...))
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatalf("testbroker: ReadCommitted(%q): listing start offsets: %v", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("testbroker: ReadCommitted(%q): listing end offsets: %v", topic, err)
	}

	// pos: the next offset to read per partition; end: stop there.
	pos := map[int32]int64{}
	end := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	for p, e := range ends[topic] {
		s := starts[topic][p].Offset
		end[p] = e.Offset
		pos[p] = s
		if s < e.Offset {
			consume[p] = kgo.NewOffset().At(s)
		}
	}
	if len(consume) == 0 {
		return nil
	}

	cl := NewClient(t, brokers, slices.Concat(conn, []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (transaction markers) advance the position too;
		// without them a partition ending in a commit marker never reaches
		// its high watermark. They are not returned.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts)...)

	done := func() bool {
		for p, e := range end {
			if pos[p] < e {
				return false
			}
		}
		return true
	}

	var (
		out     []*kgo.Record
		lastErr error
	)
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = fmt.Errorf("partition %d: %w", p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 > pos[r.Partition] {
				pos[r.Partition] = r.Offset + 1
			}
			if r.Offset >= end[r.Partition] || r.Attrs.IsControl() {
				return
			}
			out = append(out, r)
		})
	}
	if !done() {
		var stuck []string
		ps := make([]int32, 0, len(end))
		for p := range end {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		lso, _ := adm.ListCommittedOffsets(context.Background(), topic)
		for _, p := range ps {
			if pos[p] < end[p] {
				l, _ := lso.Lookup(topic, p)
				stuck = append(stuck, fmt.Sprintf("p%d at %d of %d (last stable offset %d)", p, pos[p], end[p], l.Offset))
			}
		}
		msg := fmt.Sprintf("testbroker: ReadCommitted(%q) did not reach the end within %v: %s; %d records read",
			topic, timeout, strings.Join(stuck, ", "), len(out))
		if lastErr != nil {
			msg += fmt.Sprintf("; last fetch error: %v", lastErr)
		}
		msg += "; a last stable offset below the end means a transaction is still open"
		t.Fatalf("%s", msg)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out
}

func deadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}
