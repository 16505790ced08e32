package codec_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/codec"
)

// FuzzInt64Text checks that Decode never panics, that every failure matches
// ErrDecode, and that whatever decodes re-encodes to strconv's canonical form
// and decodes to the same number.
func FuzzInt64Text(f *testing.F) {
	for _, s := range []string{"", "0", "42", "-7", "+5", "007", "-0", "abc", " 1",
		"9223372036854775807", "-9223372036854775808", "9223372036854775808", "1e3", "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := codec.Int64Text{}
		v, err := c.Decode(data)
		if err != nil {
			if !errors.Is(err, codec.ErrDecode) {
				t.Fatalf("Decode(%q) error %v does not match ErrDecode", data, err)
			}
			return
		}
		enc, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(enc) != strconv.FormatInt(v, 10) {
			t.Fatalf("Encode(%d) = %q", v, enc)
		}
		v2, err := c.Decode(enc)
		if err != nil || v2 != v {
			t.Fatalf("Decode(Encode(%d)) = %d, %v", v, v2, err)
		}
	})
}

// FuzzInt64 checks that Decode accepts exactly 8 bytes and round-trips them.
func FuzzInt64(f *testing.F) {
	for _, b := range [][]byte{nil, {1}, make([]byte, 8), bytes.Repeat([]byte{0xff}, 8), make([]byte, 9)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := codec.Int64{}
		v, err := c.Decode(data)
		if len(data) != 8 {
			if !errors.Is(err, codec.ErrDecode) {
				t.Fatalf("Decode of %d bytes: err = %v, want ErrDecode", len(data), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(%x): %v", data, err)
		}
		enc, _ := c.Encode(v)
		if !bytes.Equal(enc, data) {
			t.Fatalf("Encode(Decode(%x)) = %x", data, enc)
		}
	})
}

// FuzzString checks that String round-trips arbitrary bytes, valid UTF-8 or
// not.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "a", "grüße", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := codec.String{}.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := codec.String{}.Encode(s)
		if !bytes.Equal(enc, data) {
			t.Fatalf("round trip of %q = %q", data, enc)
		}
	})
}

// FuzzJSON checks that JSON Decode never panics on arbitrary input and that
// every failure matches ErrDecode.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{"", "{}", `{"id":"a","total":1}`, `{"id":`, "null", "[1]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := codec.JSON[order]{}.Decode(data)
		if err != nil && !errors.Is(err, codec.ErrDecode) {
			t.Fatalf("Decode(%q) error %v does not match ErrDecode", data, err)
		}
	})
}
