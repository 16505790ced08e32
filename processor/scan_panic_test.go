package processor

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// TestScanPanicUnderSkipLeaksNoIterator: a user function that panics inside
// a store scan's callback, under the Skip policy, is skipped and the stage
// goes on; the scan's Pebble iterator must be closed all the same, or it
// pins memtables and sstables until the process exits. Pebble's Close
// reports a leaked iterator, and Run returns Close's error, so Run must end
// without one. Some panics come before the record's first write in its
// transaction (the scan reads Pebble) and some after (the scan reads the
// transaction's indexed batch); both iterators are covered.
func TestScanPanicUnderSkipLeaksNoIterator(t *testing.T) {
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	const n = 60
	in := records("v", n)
	for i := 7; i < n; i += 10 {
		in[i] = "k0=panic"
	}
	f.produce(in...)

	b := stream.NewBuilder()
	totals := stream.DeclareStore(b, "totals", codec.String{}, codec.Int64{})
	src := stream.Source(b, f.input, codec.String{}, codec.String{}, stream.Named("count"))
	stream.Process(src, func(h *stream.Handle, r stream.Record[string, string]) error {
		if r.Value == "panic" {
			return stream.Scan(h, totals, func(string, int64) error { panic("user code panicked in a scan") })
		}
		v, _, err := stream.Get(h, totals, r.Key)
		if err != nil {
			return err
		}
		return stream.Put(h, totals, r.Key, v+1)
	}, stream.Uses(totals), stream.Named("counter"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	// One record per transaction, so that the scans find the transaction
	// without writes (they read Pebble); then two, so that they find it
	// with the record before's write (they read the indexed batch). The
	// second run is another application, which reads the input again.
	for i, max := range []int{1, 2} {
		app := f.app + "-" + strconv.Itoa(i)
		p, err := New(topo, append(f.opts(ErrorPolicy(Skip), MaxRecordsPerTransaction(max)), ApplicationID(app), StateDir(t.TempDir()))...)
		if err != nil {
			t.Fatal(err)
		}
		err = f.run(p, func() bool { return p.Metrics().Stages["count"].Records == n }, time.Minute)
		if err != nil {
			t.Fatalf("max records %d: Run: %v (a panicking scan callback left its iterator open?)", max, err)
		}
		if s := p.Metrics().Stages["count"].Skipped; s != 6 {
			t.Errorf("max records %d: skipped %d records, want 6", max, s)
		}
	}
}
