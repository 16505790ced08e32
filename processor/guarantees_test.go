package processor

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// TestIntegrationGuaranteesWithoutFaults: without faults every guarantee
// gives exact counts, each stage commits its input offsets, and the metrics
// count the time spent committing and applying.
func TestIntegrationGuaranteesWithoutFaults(t *testing.T) {
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, AtMostOnce} {
		t.Run(g.String(), func(t *testing.T) {
			f := newFixture(t, 2)
			f.produce(records("v", 300)...)
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(WithGuarantee(g), MaxRecordsPerTransaction(50))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p, func() bool { return sum(f.committedOffsets("count")) == 300 }, time.Minute); err != nil {
				t.Fatal(err)
			}
			checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), map[string]int{"k0": 60, "k1": 60, "k2": 60, "k3": 60, "k4": 60})
			f.assertStateMatchesChangelog("count", "totals")
			if m := p.Metrics().Stages["count"]; m.Commits == 0 || m.CommitTime <= 0 || m.ApplyTime <= 0 {
				t.Errorf("metrics after %d records: %d commits taking %v to commit and %v to apply; want all positive", m.Records, m.Commits, m.CommitTime, m.ApplyTime)
			}
		})
	}
}

// TestIntegrationAtLeastOnceFailPolicy: under at-least-once a failing
// record stops the stage after the records before it were flushed, applied
// and committed; nothing at or past it is committed.
func TestIntegrationAtLeastOnceFailPolicy(t *testing.T) {
	f := newFixture(t, 1)
	in := records("v", 100)
	in[70] = "k0=boom"
	f.produce(in...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(WithGuarantee(AtLeastOnce), CommitInterval(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	err = f.run(p, func() bool { return false }, time.Minute)
	var rerr *RecordError
	if !errors.As(err, &rerr) || rerr.Offset != 70 {
		t.Fatalf("Run: %v, want a *RecordError at offset 70", err)
	}
	if got := f.committedOffsets("count")[0]; got != 70 {
		t.Errorf("committed offset %d, want 70", got)
	}
	if got := len(testbroker.ReadCommitted(t, f.brokers, f.output)); got != 70 {
		t.Errorf("output holds %d records, want 70", got)
	}
	f.assertStateMatchesChangelog("count", "totals")
}

type event struct {
	N int64 `json:"n"`
}

// sumTopology sums the values of a topic per key; the value codec decides
// what a bad record is.
func sumTopology[V any](t testing.TB, input, output string, vc codec.Codec[V], n func(V) int64) *stream.Topology {
	b := stream.NewBuilder()
	totals := stream.DeclareStore(b, "totals", codec.String{}, codec.Int64{})
	out := stream.DeclareOutput(b, output, codec.String{}, codec.Int64Text{})
	src := stream.Source(b, input, codec.String{}, vc, stream.Named("count"))
	stream.Process(src, func(h *stream.Handle, r stream.Record[string, V]) error {
		s, _, err := stream.Get(h, totals, r.Key)
		if err != nil {
			return err
		}
		s += n(r.Value)
		if n(r.Value) < 0 {
			panic("negative value")
		}
		if err := stream.Put(h, totals, r.Key, s); err != nil {
			return err
		}
		return stream.Emit(h, out, r.Key, s)
	}, stream.Uses(totals), stream.EmitsTo(out))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// TestIntegrationDeadLetter: malformed JSON, a truncated binary value and a
// panic in user code, in the middle of a batch, each land in the dead-letter
// topic exactly once with headers naming the error and the source; the good
// records around them are committed exactly once.
func TestIntegrationDeadLetter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topo  func(f *fixture) *stream.Topology
		good  string
		bad   []string
		wants []string // substrings of each bad record's sluice.error header
	}{
		{"json", func(f *fixture) *stream.Topology {
			return sumTopology(t, f.input, f.output, codec.JSON[event]{}, func(e event) int64 { return e.N })
		}, `{"n":1}`, []string{`{"n":`, `not json`, `{"n":-1}`}, []string{"decode", "decode", "panic: negative value"}},
		{"binary", func(f *fixture) *stream.Topology {
			return sumTopology(t, f.input, f.output, codec.Int64{}, func(n int64) int64 { return n })
		}, "\x00\x00\x00\x00\x00\x00\x00\x01", []string{"\x00\x01", "", "\xff\xff\xff\xff\xff\xff\xff\xff"}, []string{"wants 8 bytes", "wants 8 bytes", "panic: negative value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1)
			var in []string
			for i := 0; i < 30; i++ {
				in = append(in, "k"+strconv.Itoa(i%3)+"="+tc.good)
				if i%10 == 5 {
					in = append(in, "k0="+tc.bad[i/10])
				}
			}
			f.produce(in...)
			dlq := f.app + "-dead"
			p, err := New(tc.topo(f), f.opts(ErrorPolicy(DeadLetter), DeadLetterTopic(dlq))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 33 }, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := p.Metrics().Stages["count"].DeadLettered; got != 3 {
				t.Errorf("dead-lettered %d records, want 3", got)
			}
			checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), map[string]int{"k0": 10, "k1": 10, "k2": 10})
			dead := testbroker.ReadCommitted(t, f.brokers, dlq)
			if len(dead) != 3 {
				t.Fatalf("dead-letter topic holds %d records, want 3", len(dead))
			}
			for i, r := range dead {
				h := headers(r)
				wantOffset := strconv.Itoa(6 + 11*i)
				if string(r.Value) != tc.bad[i] || h["sluice.topic"] != f.input || h["sluice.partition"] != "0" || h["sluice.offset"] != wantOffset || h["sluice.stage"] != "count" {
					t.Errorf("dead letter %d: value %q headers %v; want value %q from %s/0@%s", i, r.Value, h, tc.bad[i], f.input, wantOffset)
				}
				if !strings.Contains(h["sluice.error"], tc.wants[i]) {
					t.Errorf("dead letter %d: error %q does not mention %q", i, h["sluice.error"], tc.wants[i])
				}
			}
			f.assertStateMatchesChangelog("count", "totals")
		})
	}
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}
