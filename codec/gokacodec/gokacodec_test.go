package gokacodec_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/codec/gokacodec"
)

// The codecs of goka's codec package (v1.1.14), copied: pointer receivers,
// interface{} values, plain errors.
type gokaString struct{}

func (c *gokaString) Encode(value interface{}) ([]byte, error) {
	s, ok := value.(string)
	if !ok {
		return nil, fmt.Errorf("String: value to encode is not of type string but %T", value)
	}
	return []byte(s), nil
}

func (c *gokaString) Decode(data []byte) (interface{}, error) { return string(data), nil }

type gokaInt64 struct{}

func (c *gokaInt64) Encode(value interface{}) ([]byte, error) {
	i, ok := value.(int64)
	if !ok {
		return nil, fmt.Errorf("Int64: value to encode is not of type int64")
	}
	return []byte(strconv.FormatInt(i, 10)), nil
}

func (c *gokaInt64) Decode(data []byte) (interface{}, error) {
	i, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Error parsing data from string %d: %v", i, err)
	}
	return i, nil
}

type gokaBytes struct{}

func (d *gokaBytes) Encode(value interface{}) ([]byte, error) {
	data, ok := value.([]byte)
	if !ok {
		return nil, fmt.Errorf("DefaultCodec: value to encode is not of type []byte")
	}
	return data, nil
}

func (d *gokaBytes) Decode(data []byte) (interface{}, error) { return data, nil }

func TestFrom(t *testing.T) {
	s := gokacodec.From[string](new(gokaString))
	b, err := s.Encode("héllo")
	if err != nil || string(b) != "héllo" {
		t.Fatalf("Encode = %q, %v", b, err)
	}
	if v, err := s.Decode(b); err != nil || v != "héllo" {
		t.Fatalf("Decode = %q, %v", v, err)
	}

	n := gokacodec.From[int64](new(gokaInt64))
	if v, err := n.Decode([]byte("42")); err != nil || v != 42 {
		t.Fatalf("Decode(42) = %d, %v", v, err)
	}
	_, err = n.Decode([]byte("x"))
	var de *codec.DecodeError
	if !errors.Is(err, codec.ErrDecode) || !errors.As(err, &de) || de.Codec != "goka(*gokacodec_test.gokaInt64)" {
		t.Fatalf("Decode(x) = %v, want a DecodeError naming the goka codec", err)
	}

	// A codec that decodes to another type than asked for.
	wrong := gokacodec.From[int](new(gokaInt64))
	if _, err := wrong.Decode([]byte("1")); !errors.Is(err, codec.ErrDecode) {
		t.Fatalf("Decode into the wrong type = %v, want ErrDecode", err)
	}
	if _, err := gokacodec.From[string](new(gokaInt64)).Encode("x"); err == nil {
		t.Fatal("Encode of a value the goka codec refuses succeeded")
	}
}

// goka's Bytes codec returns its input; From must not let the value alias
// the caller's buffer.
func TestFromDoesNotAlias(t *testing.T) {
	c := gokacodec.From[[]byte](new(gokaBytes))
	buf := []byte("abc")
	v, err := c.Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	if string(v) != "abc" {
		t.Fatalf("decoded value changed with the input buffer: %q", v)
	}
}

func TestTo(t *testing.T) {
	g := gokacodec.To[int64](codec.Int64Text{})
	b, err := g.Encode(int64(7))
	if err != nil || string(b) != "7" {
		t.Fatalf("Encode = %q, %v", b, err)
	}
	v, err := g.Decode(b)
	if err != nil || v.(int64) != 7 {
		t.Fatalf("Decode = %v, %v", v, err)
	}
	if _, err := g.Encode("7"); err == nil {
		t.Fatal("Encode of a string into an int64 codec succeeded")
	}
	// Round trip through both adapters.
	back := gokacodec.From[int64](g)
	if v, err := back.Decode([]byte("9")); err != nil || v != 9 {
		t.Fatalf("round trip = %d, %v", v, err)
	}
}
