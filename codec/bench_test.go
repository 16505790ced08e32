package codec_test

import (
	"testing"

	"github.com/sluicehq/sluice/codec"
)

var (
	sinkBytes  []byte
	sinkString string
	sinkInt    int64
)

func BenchmarkStringEncode(b *testing.B) {
	b.ReportAllocs()
	c := codec.String{}
	for b.Loop() {
		sinkBytes, _ = c.Encode("the quick brown fox")
	}
}

func BenchmarkStringDecode(b *testing.B) {
	b.ReportAllocs()
	c := codec.String{}
	in := []byte("the quick brown fox")
	for b.Loop() {
		sinkString, _ = c.Decode(in)
	}
}

func BenchmarkInt64Encode(b *testing.B) {
	b.ReportAllocs()
	c := codec.Int64{}
	for b.Loop() {
		sinkBytes, _ = c.Encode(1234567890)
	}
}

func BenchmarkInt64Decode(b *testing.B) {
	b.ReportAllocs()
	c := codec.Int64{}
	in, _ := c.Encode(1234567890)
	for b.Loop() {
		sinkInt, _ = c.Decode(in)
	}
}

func BenchmarkInt64TextEncode(b *testing.B) {
	b.ReportAllocs()
	c := codec.Int64Text{}
	for b.Loop() {
		sinkBytes, _ = c.Encode(1234567890)
	}
}

func BenchmarkInt64TextDecode(b *testing.B) {
	b.ReportAllocs()
	c := codec.Int64Text{}
	in := []byte("1234567890")
	for b.Loop() {
		sinkInt, _ = c.Decode(in)
	}
}
