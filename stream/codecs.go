package stream

import (
	"bytes"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
)

// decoder decodes with a codec and makes sure the result owns its memory.
//
// The runtime's record and store buffers are valid only during a Program call
// (records, unless the runtime marks them Owned) or until the next store call
// (stores). The codec contract says a
// Decode result does not refer to its input unless the codec documents
// otherwise; codec.Bytes does (it returns its input). For it the decoder
// decodes a copy, so that values handed to user functions, kept in Records,
// or passed on to Emit (where the runtime keeps them until the transaction
// ends) never alias runtime buffers. A user codec that returns its input must
// copy it itself.
type decoder[T any] struct {
	c     codec.Codec[T]
	clone bool
}

func newDecoder[T any](c codec.Codec[T]) decoder[T] {
	d := decoder[T]{c: c}
	switch any(c).(type) {
	case codec.Bytes, *codec.Bytes:
		d.clone = true
	}
	return d
}

func (d decoder[T]) decode(data []byte) (T, error) {
	if d.clone && len(data) > 0 {
		data = bytes.Clone(data)
	}
	return d.c.Decode(data)
}

// decodeOwned decodes data that the runtime neither reuses nor needs again
// (an input record it marked Owned), so no copy is needed.
func (d decoder[T]) decodeOwned(data []byte, owned bool) (T, error) {
	if owned {
		return d.c.Decode(data)
	}
	return d.decode(data)
}

// freshEncoding reports whether c's Encode is known to return a new slice
// that nothing else refers to: the codecs of package codec but Bytes, whose
// Encode returns its argument. The codec contract lets a user codec
// document otherwise (say, a buffer reused by the next call), so only these
// count.
func freshEncoding(c any) bool {
	switch c.(type) {
	case codec.String, *codec.String, codec.Int64, *codec.Int64, codec.Int64Text, *codec.Int64Text:
		return true
	}
	return false
}

// putEncoded writes key kb and value vb to store. When fresh says both are
// fresh encodings (freshEncoding), made for this write and not kept by the
// caller, it hands them to the store instead of having it copy them.
func putEncoded(store exec.Store, kb, vb []byte, fresh bool) error {
	if fresh {
		if o, ok := store.(exec.OwningStore); ok {
			return o.PutOwned(kb, vb)
		}
	}
	return store.Put(kb, vb)
}
