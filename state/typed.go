package state

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/codec"
)

// KV is a typed view of a [Store]: keys and values go through codecs. Make
// one with [Typed]; it is a small value, cheap to copy.
//
// Keys are stored as their encoded bytes, so Scan order (on the underlying
// Store) is the order of those bytes.
type KV[K, V any] struct {
	s  *Store
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// Typed returns the typed view of s with key codec kc and value codec vc.
// With a nil argument, every method of the view returns an error.
//
// A value decoded by a codec that does not copy (codec.Bytes) refers to the
// Store's buffer, and is valid only until the next call on s.
func Typed[K, V any](s *Store, kc codec.Codec[K], vc codec.Codec[V]) KV[K, V] {
	return KV[K, V]{s: s, kc: kc, vc: vc}
}

func (kv KV[K, V]) check() error {
	if kv.s == nil || kv.kc == nil || kv.vc == nil {
		return errors.New("state: Typed needs a store, a key codec and a value codec")
	}
	return nil
}

func (kv KV[K, V]) encodeKey(k K) ([]byte, error) {
	kb, err := kv.kc.Encode(k)
	if err != nil {
		return nil, fmt.Errorf("state: store %q: encode key: %w", kv.s.name, err)
	}
	return kb, nil
}

// Get returns the value of k, and false when k has no value. An error from
// the value codec matches codec.ErrDecode and names the store.
func (kv KV[K, V]) Get(k K) (V, bool, error) {
	var zero V
	if err := kv.check(); err != nil {
		return zero, false, err
	}
	kb, err := kv.encodeKey(k)
	if err != nil {
		return zero, false, err
	}
	vb, ok, err := kv.s.Get(kb)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := kv.vc.Decode(vb)
	if err != nil {
		return zero, false, fmt.Errorf("state: store %q partition %d: decode value of key %q: %w",
			kv.s.name, kv.s.partition, kb, err)
	}
	return v, true, nil
}

// Put sets k to v.
func (kv KV[K, V]) Put(k K, v V) error {
	if err := kv.check(); err != nil {
		return err
	}
	kb, err := kv.encodeKey(k)
	if err != nil {
		return err
	}
	vb, err := kv.vc.Encode(v)
	if err != nil {
		return fmt.Errorf("state: store %q: encode value: %w", kv.s.name, err)
	}
	return kv.s.Put(kb, vb)
}

// Delete removes k. Deleting a missing key is not an error.
func (kv KV[K, V]) Delete(k K) error {
	if err := kv.check(); err != nil {
		return err
	}
	kb, err := kv.encodeKey(k)
	if err != nil {
		return err
	}
	return kv.s.Delete(kb)
}
