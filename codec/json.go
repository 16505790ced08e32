package codec

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// JSON is the Codec[T] that uses encoding/json, with its rules for field
// names, tags, omitempty and unknown fields (unknown fields are ignored).
type JSON[T any] struct{}

var _ Codec[struct{}] = JSON[struct{}]{}

// Encode returns json.Marshal(v). It fails for values encoding/json cannot
// represent (channels, functions, NaN or infinite floats, cyclic data); the
// error names the codec and wraps encoding/json's error.
func (JSON[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: %s cannot encode: %w", jsonName[T](), err)
	}
	return b, nil
}

// Decode returns json.Unmarshal(data) into a new T. Nil or empty data, malformed
// JSON and JSON that does not fit T (a string where T wants a number) are each
// a *DecodeError that unwraps to encoding/json's error.
func (JSON[T]) Decode(data []byte) (T, error) {
	var v T
	if len(data) == 0 {
		return v, decodeErrorf(jsonName[T](), nil, "wants a JSON document, got no bytes")
	}
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, decodeErrorf(jsonName[T](), err, "cannot decode: %v", err)
	}
	return v, nil
}

// jsonName returns "JSON[<type of T>]" for error messages.
func jsonName[T any]() string {
	return "JSON[" + reflect.TypeFor[T]().String() + "]"
}
