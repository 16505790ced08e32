package codec

import (
	"encoding/binary"
	"strconv"
)

// Int64 is the Codec[int64] that stores a number as 8 bytes, big-endian
// (two's complement). It is compact and fast; use [Int64Text] for topics that
// people read with console tools.
type Int64 struct{}

var _ Codec[int64] = Int64{}

// Encode returns the 8 big-endian bytes of v. It never fails.
func (Int64) Encode(v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)), nil
}

// Decode reads exactly 8 big-endian bytes. Any other length, including nil
// or empty data, is a *DecodeError naming the length, e.g. "codec: Int64
// wants 8 bytes, got 3".
func (Int64) Decode(data []byte) (int64, error) {
	if len(data) != 8 {
		return 0, decodeErrorf("Int64", nil, "wants 8 bytes, got %d", len(data))
	}
	return int64(binary.BigEndian.Uint64(data)), nil
}

// Int64Text is the Codec[int64] that stores a number as decimal text, such as
// "42" or "-7", for topics that people read with console tools.
//
// Decode accepts exactly what strconv.ParseInt(s, 10, 64) accepts: an
// optional sign followed by decimal digits, with no spaces and no
// underscores.
type Int64Text struct{}

var _ Codec[int64] = Int64Text{}

// Encode returns v in base 10. It never fails.
func (Int64Text) Encode(v int64) ([]byte, error) {
	return strconv.AppendInt(make([]byte, 0, 20), v, 10), nil
}

// Decode parses data as a base-10 int64. Empty data, a non-number and a
// number out of the int64 range are each a *DecodeError that quotes the
// input (truncated when long) and unwraps to the *strconv.NumError.
func (Int64Text) Decode(data []byte) (int64, error) {
	if len(data) == 0 {
		return 0, decodeErrorf("Int64Text", nil, "wants a decimal number, got no bytes")
	}
	v, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		reason := "not a decimal number"
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			reason = "out of the int64 range"
		}
		return 0, decodeErrorf("Int64Text", err, "cannot decode %s: %s", quoteTrunc(data), reason)
	}
	return v, nil
}

// quoteTrunc quotes data for an error message, keeping at most 32 bytes.
func quoteTrunc(data []byte) string {
	const limit = 32
	if len(data) > limit {
		return strconv.Quote(string(data[:limit])) + "..."
	}
	return strconv.Quote(string(data))
}
