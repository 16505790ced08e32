package stream

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
)

// appendFunc appends exactly what Encode returns, and only for the codecs
// that copy.
func TestAppendFuncMatchesEncode(t *testing.T) {
	check := func(name string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: appended %q, Encode %q", name, got, want)
		}
	}
	for _, s := range []string{"", "a", "wörd", strings.Repeat("x", 3000)} {
		want, _ := codec.String{}.Encode(s)
		check("String", appendFunc[string](codec.String{})([]byte("pre"), s), append([]byte("pre"), want...))
		check("*String", appendFunc[string](&codec.String{})(nil, s), want)
	}
	for _, v := range []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64} {
		want, _ := codec.Int64{}.Encode(v)
		check("Int64", appendFunc[int64](codec.Int64{})(nil, v), want)
		want, _ = codec.Int64Text{}.Encode(v)
		check("Int64Text", appendFunc[int64](codec.Int64Text{})(nil, v), want)
	}
	if appendFunc[[]byte](codec.Bytes{}) != nil || appendFunc[map[string]int](codec.JSON[map[string]int]{}) != nil {
		t.Error("appendFunc for Bytes or JSON; want nil (Bytes must not copy, JSON is not known)")
	}
}

// The arena hands out every byte once: earlier slices stay as they were
// while later ones are carved, over several chunks, and appending to a
// slice never writes into the next one.
func TestArenaNeverReuses(t *testing.T) {
	var a arena
	app := appendFunc[string](codec.String{})
	var got [][]byte
	var want []string
	for i := 0; i < 3*arenaChunk/10; i++ {
		s := strings.Repeat(string(rune('a'+i%26)), 1+i%17)
		if i%500 == 0 {
			s = strings.Repeat("L", arenaChunk) // larger than a chunk
		}
		b := appendOutput(&a, app, s)
		if len(b) != cap(b) {
			t.Fatalf("slice %d: len %d cap %d; want capped", i, len(b), cap(b))
		}
		got, want = append(got, b), append(want, s)
		if i > 0 {
			_ = append(got[i-1], "XXXX"...) // must copy, not overwrite b
		}
	}
	for i := range got {
		if string(got[i]) != want[i] {
			t.Fatalf("slice %d changed: %q, want %q", i, got[i], want[i])
		}
	}
	if b := appendOutput(&a, app, ""); b != nil {
		t.Errorf("empty encoding = %#v; want nil (the codec decides)", b)
	}
}

// Only the codecs known to encode into a new slice hand their encodings to
// the store without a copy: Bytes returns its argument, which the caller
// may modify later, and a user codec may document a reused buffer.
func TestFreshEncoding(t *testing.T) {
	for _, c := range []any{codec.String{}, &codec.String{}, codec.Int64{}, codec.Int64Text{}} {
		if !freshEncoding(c) {
			t.Errorf("freshEncoding(%T) = false", c)
		}
	}
	for _, c := range []any{codec.Bytes{}, &codec.Bytes{}, codec.JSON[int]{}} {
		if freshEncoding(c) {
			t.Errorf("freshEncoding(%T) = true; its encodings must be copied", c)
		}
	}
}
