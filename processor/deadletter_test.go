package processor

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/exec"
)

// TestDeadLetterFitsTheLimit: a dead-letter record never exceeds
// MaxRecordBytes, whatever the size of the record and of its error; a broker
// would refuse it, and the stage would stop at the same record on every
// restart. What is left out is said in a header, and where the original is.
func TestDeadLetterFitsTheLimit(t *testing.T) {
	const limit = 1 << 20
	p := &Processor{}
	p.cfg.maxRecordBytes = limit
	p.cfg.dlq = "app-dlq"
	st := &stage{p: p, name: "s", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	size := func(r *kgo.Record) int {
		hs := make([]exec.Header, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = exec.Header{Key: h.Key, Value: h.Value}
		}
		return exec.RecordSize(r.Key, r.Value, hs)
	}
	header := func(r *kgo.Record, k string) (string, bool) {
		for _, h := range r.Headers {
			if h.Key == k {
				return string(h.Value), true
			}
		}
		return "", false
	}
	big := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	for _, tc := range []struct {
		name        string
		key, value  []byte
		headers     []kgo.RecordHeader
		errLen      int
		keepValue   bool
		keepKey     bool
		wantOmitted string
	}{
		{name: "small", key: []byte("k"), value: big(100), errLen: 50, keepValue: true, keepKey: true},
		{name: "value near the limit", key: []byte("k"), value: big(limit - 200), errLen: 50, keepKey: true, wantOmitted: "value"},
		{name: "huge error text", key: []byte("k"), value: big(limit - 6000), errLen: 1 << 20, keepValue: true, keepKey: true},
		{name: "headers near the limit", key: big(1000), value: big(10), headers: []kgo.RecordHeader{{Key: "h", Value: big(limit - 500)}}, errLen: 50, wantOmitted: "key, value and headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &kgo.Record{Topic: "in", Partition: 3, Offset: 42, Key: tc.key, Value: tc.value, Headers: tc.headers}
			d := st.deadLetter(r, errors.New(strings.Repeat("e", tc.errLen)))
			if n := size(d); n > limit {
				t.Fatalf("dead-letter record is %d bytes, above the limit %d", n, limit)
			}
			if got := len(d.Value) > 0; got != tc.keepValue {
				t.Errorf("value kept = %v, want %v", got, tc.keepValue)
			}
			if got := len(d.Key) > 0; got != tc.keepKey {
				t.Errorf("key kept = %v, want %v", got, tc.keepKey)
			}
			om, ok := header(d, "sluice.omitted")
			if (tc.wantOmitted != "") != ok || !strings.HasPrefix(om, tc.wantOmitted) {
				t.Errorf("sluice.omitted = %q (present %v), want prefix %q", om, ok, tc.wantOmitted)
			}
			for k, want := range map[string]string{"sluice.topic": "in", "sluice.partition": "3", "sluice.offset": "42", "sluice.stage": "s"} {
				if v, _ := header(d, k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
			if e, _ := header(d, "sluice.error"); len(e) == 0 || len(e) > maxErrorHeader+20 {
				t.Errorf("sluice.error is %d bytes", len(e))
			}
			if len(tc.headers) > 0 && r.Headers[0].Key != "h" || len(r.Headers) != len(tc.headers) {
				t.Errorf("the original record's headers changed: %d", len(r.Headers))
			}
		})
	}
}
