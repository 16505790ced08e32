package codec

import (
	"errors"
	"fmt"
)

// Codec encodes values of type T to bytes and decodes them back.
//
// Implementations must be safe for concurrent use, and Decode must report
// malformed input by returning an error that matches [ErrDecode] (use
// [DecodeError]), never by panicking.
type Codec[T any] interface {
	// Encode returns the bytes of v. Unless an implementation documents
	// otherwise, the caller owns the returned slice.
	Encode(v T) ([]byte, error)
	// Decode returns the value whose bytes are data. Unless an
	// implementation documents otherwise, the returned value does not
	// refer to data, so the caller may reuse data after Decode returns.
	Decode(data []byte) (T, error)
}

// ErrDecode is matched (with errors.Is) by every error a codec in this package
// returns from Decode because the input bytes are not a valid encoding. The
// concrete error is a *[DecodeError] that says what was wrong.
var ErrDecode = errors.New("codec: cannot decode")

// DecodeError reports input that a codec cannot decode. It matches
// [ErrDecode] with errors.Is, and unwraps to the underlying parser's error
// (from strconv or encoding/json) when there is one.
type DecodeError struct {
	// Codec names the codec, e.g. "Int64" or "JSON[main.Order]".
	Codec string
	// Reason says what is wrong with the input, e.g. "wants 8 bytes, got 3".
	Reason string
	// Err is the underlying parser's error, or nil.
	Err error
}

// Error returns "codec: <Codec> <Reason>", e.g. "codec: Int64 wants 8 bytes,
// got 3".
func (e *DecodeError) Error() string {
	return "codec: " + e.Codec + " " + e.Reason
}

// Unwrap returns the underlying parser's error, or nil.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrDecode].
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

// decodeErrorf builds a *DecodeError whose Reason is formatted from format and
// args.
func decodeErrorf(codec string, err error, format string, args ...any) error {
	return &DecodeError{Codec: codec, Reason: fmt.Sprintf(format, args...), Err: err}
}
