package stream

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// A key's windows are one contiguous range of the store, ordered by start,
// whatever the keys' bytes (a key that is a prefix of another, bytes that
// look like a time) and whatever the times' signs.
func TestWindowKeyLayout(t *testing.T) {
	keys := [][]byte{{}, []byte("a"), []byte("a\x80"), []byte("a\x00"), []byte("ab"), {0xff, 0xff}}
	times := []int64{-1 << 62, -1000, -1, 0, 1, 999, 1 << 40}
	type entry struct {
		key   int
		start int64
		b     []byte
	}
	var all []entry
	for i, k := range keys {
		for _, ts := range times {
			all = append(all, entry{i, ts, encTime(windowKeyPrefix(k), ts)})
		}
	}
	slices.SortFunc(all, func(x, y entry) int { return bytes.Compare(x.b, y.b) })
	for i := 1; i < len(all); i++ {
		p, c := all[i-1], all[i]
		if p.key == c.key && p.start >= c.start {
			t.Fatalf("key %q: window %d sorts after %d", keys[c.key], p.start, c.start)
		}
	}
	// Contiguity: once a key's run ends, it never comes back.
	seen := map[int]bool{}
	for i, e := range all {
		if i > 0 && all[i-1].key != e.key {
			if seen[e.key] {
				t.Fatalf("the windows of key %q are not contiguous", keys[e.key])
			}
		}
		seen[e.key] = true
	}
	// A key's range is exactly its prefix's.
	for i, k := range keys {
		p := windowKeyPrefix(k)
		for _, e := range all {
			if in := bytes.HasPrefix(e.b, p) && len(e.b) == len(p)+8; in != (e.key == i) {
				t.Fatalf("window of key %q under the prefix of key %q: %v", keys[e.key], k, in)
			}
		}
	}
	// The expiry index orders by time first.
	a, b := expiryKey(5, encTime(windowKeyPrefix([]byte("z")), 0)), expiryKey(6, encTime(windowKeyPrefix([]byte("a")), 0))
	if bytes.Compare(a, b) >= 0 || a[0] != windowExpiry {
		t.Fatalf("expiry keys out of time order")
	}
	if decTime(encTime(nil, -42)) != -42 {
		t.Fatal("encTime does not round-trip")
	}
}

func TestWindowedCodecRoundTrip(t *testing.T) {
	c := WindowedCodec[string](stringCodec{})
	w := windowed("k\x00", -5000, 7000)
	b, err := c.Encode(w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(b)
	if err != nil || got != w {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, w)
	}
	if _, err := c.Decode([]byte("short")); err == nil {
		t.Fatal("decoded 5 bytes")
	}
}

type stringCodec struct{}

func (stringCodec) Encode(s string) ([]byte, error) { return []byte(s), nil }
func (stringCodec) Decode(b []byte) (string, error) { return string(b), nil }

func TestCrossed(t *testing.T) {
	for _, c := range []struct {
		from, to, interval int64
		want               bool
	}{
		{0, 9, 10, false}, {9, 10, 10, true}, {10, 19, 10, false}, {10, 45, 10, true},
		{-11, -10, 10, true}, {-10, -1, 10, false}, {-1, 0, 10, true}, {-5, 5, 10, true},
	} {
		if got := crossed(c.from, c.to, time.Duration(c.interval)); got != c.want {
			t.Errorf("crossed(%d, %d, %d) = %v", c.from, c.to, c.interval, got)
		}
	}
}
