package stream

import (
	"encoding/binary"
	"strconv"

	"github.com/sluicehq/sluice/codec"
)

// The encodings of output records (To, GroupBy's repartition) live from the
// Emit to the end of the transaction, in the runtime's produced record, and
// nothing else refers to them. For the codecs whose encoding the stage can
// append (appendFunc), a Program carves them from an arena instead of
// allocating each: the per-record path of a word count allocated two small
// slices per word for its repartition and two per count for its output.

// arenaChunk is the size of an arena's chunks; arenaMinFree is the room
// below which the next encoding starts a new chunk.
const (
	arenaChunk   = 8 << 10
	arenaMinFree = 256
)

// arena hands out byte slices carved from chunks.
//
// INVARIANT: a byte of a chunk is handed out at most once and never written
// after it was handed out: each slice is capped at its length (an append to
// it copies), and a chunk is never reused, only dropped when full, so the
// garbage collector frees it once no slice of it is referenced. The runtime
// may therefore keep every slice until its record is produced, as it keeps
// any encoding.
//
// An arena is not safe for concurrent use (see program.scratch).
type arena struct{ buf []byte }

// appendOutput returns app(nil, v), carved from a if it fits. An empty
// result is nil: callers fall back to the codec, whose Encode decides
// whether an empty encoding is nil (Kafka's null) or not.
func appendOutput[T any](a *arena, app func([]byte, T) []byte, v T) []byte {
	if cap(a.buf)-len(a.buf) < arenaMinFree {
		a.buf = make([]byte, 0, arenaChunk)
	}
	free := a.buf[len(a.buf):]
	out := app(free, v)
	if len(out) == 0 {
		return nil
	}
	if cap(out) == cap(free) {
		a.buf = a.buf[:len(a.buf)+len(out)]
	} // else it did not fit: append made it an array of its own
	return out[:len(out):len(out)]
}

// encoder encodes values of T for output records: into the Handle's arena
// when it knows how to append c's encoding, else with c.
type encoder[T any] struct {
	c   codec.Codec[T]
	app func([]byte, T) []byte // nil: c.Encode only
}

func newEncoder[T any](c codec.Codec[T]) encoder[T] {
	return encoder[T]{c: c, app: appendFunc(c)}
}

// encode returns v's encoding, which the caller hands to the runtime as an
// output's key or value and does not keep or modify.
func (e encoder[T]) encode(h *Handle, v T) ([]byte, error) {
	if e.app != nil && h.arena != nil {
		if b := appendOutput(h.arena, e.app, v); b != nil {
			return b, nil
		}
	}
	return e.c.Encode(v)
}

// appendFunc returns a function appending c's encoding of a value to a
// slice, byte for byte what c.Encode returns, for the codecs of package
// codec that encode without failing and copy (not Bytes, whose Encode
// returns its argument, which must not be copied into an arena); nil for
// the others.
func appendFunc[T any](c codec.Codec[T]) func([]byte, T) []byte {
	var f any
	switch any(c).(type) {
	case codec.String, *codec.String:
		f = func(b []byte, s string) []byte { return append(b, s...) }
	case codec.Int64, *codec.Int64:
		f = func(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }
	case codec.Int64Text, *codec.Int64Text:
		f = func(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
	default:
		return nil
	}
	app, _ := f.(func([]byte, T) []byte)
	return app
}
