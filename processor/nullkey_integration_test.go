package processor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// Records with a null or empty key on the three paths that write them into a
// store (a SourceTable, a Count after GroupByKey in place, a Put in a
// Process). Each store write reaches a changelog, a compacted topic, and a
// real broker rejects a keyless record there with INVALID_RECORD, which
// stopped the stage at flush, outside the error policy, and again on every
// restart. Now each such record fails on its own (stream.ErrNullKey), so the
// Skip policy skips it (DeadLetter dead-letters it) and the stage goes on
// with the records after it.
//
// kfake does not validate keys on compacted topics: only the real broker
// shows the failure.
func TestIntegrationNullKeyRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	cases := []struct {
		name  string
		build func(b *stream.Builder, in, out string)
	}{
		{"SourceTable", func(b *stream.Builder, in, out string) {
			tb := stream.SourceTable(b, in, codec.Bytes{}, codec.String{}, stream.Named("table"))
			stream.To(tb.ToStream(), out, codec.Bytes{}, codec.String{}, stream.Named("write"))
		}},
		{"GroupByKeyCount", func(b *stream.Builder, in, out string) {
			s := stream.Source(b, in, codec.Bytes{}, codec.String{}, stream.Named("read"))
			n := stream.Count(stream.GroupByKey(s, codec.Bytes{}, codec.String{}), stream.Named("counts"))
			stream.To(stream.MapValues(n.ToStream(), func(_ []byte, n int64) string { return "counted" }),
				out, codec.Bytes{}, codec.String{}, stream.Named("write"))
		}},
		{"ProcessPut", func(b *stream.Builder, in, out string) {
			s := stream.Source(b, in, codec.Bytes{}, codec.String{}, stream.Named("read"))
			st := stream.DeclareStore(b, "latest", codec.Bytes{}, codec.String{})
			o := stream.DeclareOutput(b, out, codec.Bytes{}, codec.String{})
			stream.Process(s, func(h *stream.Handle, r stream.Record[[]byte, string]) error {
				if err := stream.Put(h, st, r.Key, r.Value); err != nil {
					return err
				}
				return stream.Emit(h, o, r.Key, r.Value)
			}, stream.Named("put"), stream.Uses(st), stream.EmitsTo(o))
		}},
	}
	// The SourceTable again under DeadLetter: the records go to the
	// dead-letter topic, with their null and empty keys.
	cases = append(cases, cases[0])
	cases[len(cases)-1].name = "SourceTableDeadLetter"
	for _, tc := range cases {
		policy := Skip
		if tc.name == "SourceTableDeadLetter" {
			policy = DeadLetter
		}
		t.Run(tc.name, func(t *testing.T) {
			app := testbroker.Unique(t, "nullkey")
			in, out := app+"-in", app+"-out"
			testbroker.CreateTopic(t, brokers, in, 1, nil)
			testbroker.CreateTopic(t, brokers, out, 1, nil)
			b := stream.NewBuilder()
			tc.build(b, in, out)
			topo, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}

			cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(in))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// A null key, an empty key, then a keyed record that must come
			// through.
			if err := cl.ProduceSync(ctx,
				&kgo.Record{Key: nil, Value: []byte("null")},
				&kgo.Record{Key: []byte{}, Value: []byte("empty")},
				&kgo.Record{Key: []byte("a"), Value: []byte("keyed")},
			).FirstErr(); err != nil {
				t.Fatal(err)
			}

			p, err := New(topo, append(testOpts(t, brokers, app), ErrorPolicy(policy), CommitInterval(50*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(rctx) }()

			waitRecords(t, brokers, out, 1, 40*time.Second)
			time.Sleep(time.Second) // for anything that should not come
			got := testbroker.ReadCommitted(t, brokers, out)
			var runErr error
			select {
			case runErr = <-done:
				runErr = errors.Join(errors.New("Run returned before it was stopped"), runErr)
			default:
			}
			stop()
			if runErr == nil {
				runErr = <-done
			}
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
			var keyed int
			for _, r := range got {
				if string(r.Key) == "a" {
					keyed++
				} else {
					t.Errorf("output record with key %q (value %q): a null-key record went through", r.Key, r.Value)
				}
			}
			if keyed != 1 {
				t.Errorf("%d output records with key \"a\", want 1: the stage stopped at the null-key records", keyed)
			}
			var handled, nulls int64
			for _, m := range p.Metrics().Stages {
				handled += m.Skipped + m.DeadLettered
				nulls += m.NullKeys
			}
			if nulls != 2 {
				t.Errorf("NullKeys = %d, want 2", nulls)
			}
			if handled != 2 {
				t.Errorf("%d records skipped or dead-lettered, want 2 (the null key and the empty key); metrics: %+v", handled, p.Metrics())
			}
			if policy == DeadLetter {
				dlq := testbroker.ReadCommitted(t, brokers, app+"-dlq")
				if len(dlq) != 2 || len(dlq[0].Key) != 0 || len(dlq[1].Key) != 0 {
					t.Errorf("dead-letter topic holds %d records, want the 2 with null and empty keys", len(dlq))
				}
			}
		})
	}
}
