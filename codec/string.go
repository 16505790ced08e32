package codec

// String is the Codec[string] that stores a string's bytes as they are.
//
// Decode does not check that the bytes are valid UTF-8: a Go string carries
// arbitrary bytes, and rejecting records that some other producer wrote in
// another encoding would turn a display problem into a processing failure.
// Use utf8.ValidString where validity matters.
//
// Encode and Decode copy: the result never shares memory with the argument.
type String struct{}

var _ Codec[string] = String{}

// Encode returns a new slice holding the bytes of v. It never fails.
func (String) Encode(v string) ([]byte, error) { return []byte(v), nil }

// Decode returns data as a string (a copy). Nil or empty data decodes to "".
// It never fails.
func (String) Decode(data []byte) (string, error) { return string(data), nil }

// Bytes is the Codec[[]byte] that passes bytes through unchanged.
//
// Neither method copies. Encode returns v itself, so v must not be modified
// while the result is in use (for a produced record: until the transaction
// ends). Decode returns data itself, so the result is valid only as long as
// data is; the runtime's record and store buffers are reused, so copy the
// result (bytes.Clone) to keep it.
type Bytes struct{}

var _ Codec[[]byte] = Bytes{}

// Encode returns v itself. It never fails.
func (Bytes) Encode(v []byte) ([]byte, error) { return v, nil }

// Decode returns data itself, or nil when data is empty. It never fails.
func (Bytes) Decode(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	return data, nil
}
