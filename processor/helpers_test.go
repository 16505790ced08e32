package processor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// wordcount builds the word count topology used across the tests.
func wordcount(t testing.TB, input, output string) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	lines := stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("split"))
	words := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, w := range strings.Fields(strings.ToLower(line)) {
			out = append(out, stream.KeyValue[string, string]{Key: w, Value: w})
		}
		return out
	}, stream.Named("words"))
	g := stream.GroupBy(words, func(w, _ string) string { return w }, codec.String{}, codec.String{}, stream.Named("by-word"))
	stream.To(stream.Count(g, stream.Named("counts")).ToStream(), output, codec.String{}, codec.Int64Text{}, stream.Named("write-counts"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// testOpts is the test profile of DESIGN.md: short session, heartbeat,
// rebalance and transaction timeouts.
func testOpts(t testing.TB, brokers []string, app string) []Opt {
	level := slog.LevelWarn
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return []Opt{
		Brokers(brokers...),
		ApplicationID(app),
		StateDir(t.TempDir()),
		SessionTimeout(6 * time.Second),
		HeartbeatInterval(500 * time.Millisecond),
		RebalanceTimeout(10 * time.Second),
		TransactionTimeout(10 * time.Second),
		Logger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// randomLines returns n lines of words from a vocabulary of vocab words, and
// the number of words per word.
func randomLines(seed uint64, n, vocab int) ([]string, map[string]int, int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	want := map[string]int{}
	total := 0
	lines := make([]string, n)
	for i := range lines {
		k := 1 + rng.IntN(8)
		ws := make([]string, k)
		for j := range ws {
			ws[j] = fmt.Sprintf("w%d", rng.IntN(vocab))
			want[ws[j]]++
		}
		total += k
		lines[i] = strings.Join(ws, " ")
	}
	return lines, want, total
}

func produceLines(t testing.TB, brokers []string, topic string, lines []string) {
	t.Helper()
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing input: %v", err)
	}
}

// waitRecords consumes topic with read_committed until it has seen n records
// or the timeout passes, and returns how many it saw.
func waitRecords(t testing.TB, brokers []string, topic string, n int, timeout time.Duration) int {
	t.Helper()
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil {
		seen += cl.PollFetches(ctx).NumRecords()
	}
	return seen
}

// checkCounts asserts the exactly-once property of a word count output: for
// every word the values read by a read_committed consumer are exactly 1, 2,
// ..., n with no gap and no repeat, and n is the word's count in the input.
// It returns the number of duplicates and gaps, for reporting.
func checkCounts(t testing.TB, recs []*kgo.Record, want map[string]int) {
	t.Helper()
	last := map[string]int{}
	bad := 0
	for _, r := range recs {
		w := string(r.Key)
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("output %q=%q is not a count", r.Key, r.Value)
		}
		if v != last[w]+1 {
			if bad < 10 {
				t.Errorf("word %s: count %d follows %d (partition %d offset %d): a duplicate or a gap", w, v, last[w], r.Partition, r.Offset)
			}
			bad++
		}
		last[w] = v
	}
	for w, n := range want {
		if last[w] != n {
			if bad < 20 {
				t.Errorf("word %s: final count %d, want %d", w, last[w], n)
			}
			bad++
		}
	}
	for w := range last {
		if _, ok := want[w]; !ok {
			t.Errorf("word %s in the output was never in the input", w)
		}
	}
	if bad > 0 {
		t.Fatalf("%d violations of exactly-once in %d output records", bad, len(recs))
	}
}

// txnOffsetCommitAnswer answers every partition of req with code, for kfake
// control functions that refuse a transaction's offset commit.
func txnOffsetCommitAnswer(req *kmsg.TxnOffsetCommitRequest, code *kerr.Error) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	resp.Version = req.Version
	for _, rt := range req.Topics {
		tt := kmsg.NewTxnOffsetCommitResponseTopic()
		tt.Topic, tt.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			pp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			pp.Partition = rp.Partition
			pp.ErrorCode = code.Code
			tt.Partitions = append(tt.Partitions, pp)
		}
		resp.Topics = append(resp.Topics, tt)
	}
	return resp
}
