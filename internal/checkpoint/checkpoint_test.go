package checkpoint_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

func id(b byte) [16]byte {
	var x [16]byte
	for i := range x {
		x[i] = b
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		cp   checkpoint.Checkpoint
	}{
		{"zero", checkpoint.Checkpoint{}},
		{"one store", checkpoint.Checkpoint{
			Stores:  map[string]checkpoint.Store{"counts": {TopicID: id(7), Next: 42}},
			Written: time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC),
		}},
		{"many", checkpoint.Checkpoint{
			Stores: map[string]checkpoint.Store{
				"b": {TopicID: id(1), Next: 0},
				"a": {Next: math.MaxInt64},
				"":  {TopicID: id(0xff), Next: -1},
			},
			Inputs:  map[string]int64{"words": 10, "clicks": 0, "z": math.MinInt64},
			Written: time.Unix(1, 0).UTC(),
		}},
		{"before 1970", checkpoint.Checkpoint{Written: time.Date(1900, 1, 1, 0, 0, 0, 5, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.cp.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != checkpoint.Version {
				t.Fatalf("version byte = %d", b[0])
			}
			var got checkpoint.Checkpoint
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !reflect.DeepEqual(got, tt.cp) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, tt.cp)
			}
			b2, _ := got.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
			}
		})
	}
}

func TestWrittenLocationAndMonotonic(t *testing.T) {
	now := time.Now() // carries a monotonic reading and the local zone
	b, _ := checkpoint.Checkpoint{Written: now}.MarshalBinary()
	var got checkpoint.Checkpoint
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !got.Written.Equal(now) || got.Written.Location() != time.UTC {
		t.Fatalf("Written = %v, want %v in UTC", got.Written, now)
	}
}

func TestDeterministic(t *testing.T) {
	cp := checkpoint.Checkpoint{
		Stores: map[string]checkpoint.Store{},
		Inputs: map[string]int64{},
	}
	for i := range 50 {
		name := string(rune('a'+i%26)) + strings.Repeat("x", i)
		cp.Stores[name] = checkpoint.Store{Next: int64(i)}
		cp.Inputs[name] = int64(i * 3)
	}
	first, _ := cp.MarshalBinary()
	for range 20 {
		b, _ := cp.MarshalBinary()
		if !bytes.Equal(b, first) {
			t.Fatal("MarshalBinary is not deterministic")
		}
	}
	// nil and empty maps encode alike.
	a, _ := checkpoint.Checkpoint{}.MarshalBinary()
	e, _ := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{}, Inputs: map[string]int64{}}.MarshalBinary()
	if !bytes.Equal(a, e) {
		t.Fatalf("nil maps %x != empty maps %x", a, e)
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	valid, _ := checkpoint.Checkpoint{
		Stores:  map[string]checkpoint.Store{"s": {TopicID: id(3), Next: 5}},
		Inputs:  map[string]int64{"in": 7},
		Written: time.Unix(100, 0),
	}.MarshalBinary()

	tests := []struct {
		name string
		data []byte
		want string // substring of the error
	}{
		{"nil", nil, "empty input"},
		{"unknown version", []byte{2, 0, 0, 0, 0}, "unknown version 2"},
		{"version zero", []byte{0}, "unknown version 0"},
		{"only version", []byte{1}, "truncated or invalid store count"},
		{"huge store count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, "store count 4294967295 does not fit"},
		{"store name too long", append([]byte{1, 1, 50, 'a'}, make([]byte, 20)...), "truncated store name: want 50 bytes, have 21"},
		{"truncated topic id", truncatedTopicID(), "truncated topic id of store b: want 16 bytes, have 3"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "1 trailing bytes"},
		{"bad nanoseconds", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, "nanoseconds 4294967295 out of range"},
		{"unsorted stores", unsortedStores(), `store name "a" is not after "b"`},
		{"non-minimal uvarint", []byte{1, 0x80, 0x00, 0, 0, 0}, "non-minimal encoding of store count"},
		{"non-minimal varint", []byte{1, 0, 0, 0x80, 0x00, 0}, "non-minimal encoding of write time seconds"},
	}
	// Every strict prefix of a valid encoding is corrupt.
	for i := range len(valid) {
		tests = append(tests, struct {
			name string
			data []byte
			want string
		}{"prefix " + string(rune('0'+i%10)), valid[:i], ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := checkpoint.Checkpoint{Inputs: map[string]int64{"keep": 1}}
			err := cp.UnmarshalBinary(tt.data)
			if err == nil {
				t.Fatalf("UnmarshalBinary(%x) succeeded", tt.data)
			}
			if !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if cp.Inputs["keep"] != 1 || cp.Stores != nil {
				t.Fatalf("failed UnmarshalBinary modified its receiver: %+v", cp)
			}
		})
	}
}

func truncatedTopicID() []byte {
	b := []byte{1, 2, 30}
	b = append(b, bytes.Repeat([]byte{'a'}, 30)...)
	b = append(b, make([]byte, 16)...)
	b = append(b, 0)
	return append(b, 1, 'b', 1, 2, 3)
}

func unsortedStores() []byte {
	b := []byte{1, 2}
	for _, name := range []string{"b", "a"} {
		b = append(b, 1, name[0])
		b = append(b, make([]byte, 16)...)
		b = append(b, 0)
	}
	return append(b, 0, 0, 0)
}

func FuzzUnmarshal(f *testing.F) {
	valid, _ := checkpoint.Checkpoint{
		Stores:  map[string]checkpoint.Store{"s": {Next: 5}, "t": {TopicID: id(1)}},
		Inputs:  map[string]int64{"in": 7},
		Written: time.Unix(100, 5),
	}.MarshalBinary()
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var cp checkpoint.Checkpoint
		if err := cp.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, checkpoint.ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes is canonical: it re-encodes to the same bytes.
		b, _ := cp.MarshalBinary()
		if !bytes.Equal(b, data) {
			t.Fatalf("decoded %x but re-encoded %x", data, b)
		}
	})
}
