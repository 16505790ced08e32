// Package gokacodec adapts goka codecs to sluice's typed codecs, and back, so
// that a goka application moving to sluice keeps its codecs (see
// docs/from-goka.md). Users migrating from goka import it; it is part of
// sluice's stable API with package codec.
//
// It does not import goka: Codec declares goka's codec interface
// (github.com/lovoo/goka v1.1.x, goka.Codec) with the same method set, which
// every goka codec satisfies, so neither this package nor sluice pulls in
// goka's dependencies (sarama, Kerberos, LevelDB, Redis: 30 more modules).
//
//	var userCodec goka.Codec = new(UserCodec)           // your goka codec
//	users := stream.SourceTable(b, "users", codec.String{}, gokacodec.From[*User](userCodec))
package gokacodec

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/sluicehq/sluice/codec"
)

// Codec is goka's codec interface (goka.Codec): it encodes and decodes values
// of dynamic type.
type Codec interface {
	Encode(value any) (data []byte, err error)
	Decode(data []byte) (value any, err error)
}

// From returns a codec.Codec[T] that encodes and decodes with the goka codec
// c. T is the dynamic type c's Decode returns and its Encode accepts, such as
// string for goka's codec.String, int64 for codec.Int64, or the pointer
// type a custom codec returns.
//
// Decode fails with an error matching codec.ErrDecode (a
// *codec.DecodeError) when c's Decode fails, or when it returns a value
// that is not a T (a nil value decodes to T's zero value). Since goka codecs
// may return values that alias their input (goka's codec.Bytes does), From's
// Decode hands c a copy of data, as sluice's codec contract asks. c must be
// safe for concurrent use: the runtime decodes in one goroutine per stage.
func From[T any](c Codec) codec.Codec[T] {
	return from[T]{c: c, name: fmt.Sprintf("goka(%T)", c)}
}

type from[T any] struct {
	c    Codec
	name string
}

func (f from[T]) Encode(v T) ([]byte, error) {
	b, err := f.c.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("codec: %s: %w", f.name, err)
	}
	return b, nil
}

func (f from[T]) Decode(data []byte) (T, error) {
	var zero T
	v, err := f.c.Decode(bytes.Clone(data))
	if err != nil {
		return zero, &codec.DecodeError{Codec: f.name, Reason: err.Error(), Err: err}
	}
	if v == nil {
		return zero, nil
	}
	t, ok := v.(T)
	if !ok {
		return zero, &codec.DecodeError{Codec: f.name,
			Reason: fmt.Sprintf("decoded a %T, want a %v", v, reflect.TypeFor[T]())}
	}
	return t, nil
}

// To returns c as a goka codec, for goka processors and emitters that share
// topics with a sluice topology while an application moves over. Encode
// fails for a value that is not a T.
func To[T any](c codec.Codec[T]) Codec { return to[T]{c} }

type to[T any] struct{ c codec.Codec[T] }

func (t to[T]) Encode(value any) ([]byte, error) {
	v, ok := value.(T)
	if !ok {
		var zero T
		if value != nil {
			return nil, fmt.Errorf("gokacodec: value to encode is a %T, want a %T", value, zero)
		}
		v = zero
	}
	return t.c.Encode(v)
}

func (t to[T]) Decode(data []byte) (any, error) { return t.c.Decode(data) }
