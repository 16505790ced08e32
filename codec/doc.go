// Package codec turns typed values into the bytes of Kafka record keys,
// record values and state-store entries, and back. Users import it wherever
// a topology, a test or a sink names its types; it is part of sluice's
// stable API (see package stream).
//
// A [Codec] is a small value with two methods. The codecs in this package are
// zero-size struct types with no configuration and no shared mutable state, so
// they are safe for concurrent use and cost nothing to copy:
//
//	codec.String{}      // Codec[string]: the string's bytes
//	codec.Bytes{}       // Codec[[]byte]: the bytes themselves, not copied
//	codec.Int64{}       // Codec[int64]: 8 bytes, big-endian
//	codec.Int64Text{}   // Codec[int64]: decimal text, e.g. "42"
//	codec.JSON[T]{}     // Codec[T]: encoding/json
//
// Int64 sorts like the numbers it holds only for non-negative values: its
// bytes are the two's-complement representation, so negative numbers sort
// after positive ones in a state-store scan.
//
// # Failure
//
// Decode never panics on malformed input. Every decode failure is a
// *[DecodeError] that names the codec and what was wrong with the input, and
// it matches [ErrDecode] with errors.Is, so a caller (the runtime's bad-record
// policy, for example) can tell "this record's bytes are bad" from every other
// failure without knowing which codec was used.
//
// # Empty input
//
// Kafka records may have a null key or value. Decode treats nil and empty
// input alike: String returns "", Bytes returns nil, and Int64, Int64Text and
// JSON return a *DecodeError because there is no number or JSON document to
// read.
package codec
