package stream

import (
	"bytes"
	"errors"
	"slices"

	"github.com/sluicehq/sluice/internal/exec"
)

// The functions below are a Process function's typed access to stores and
// outputs. Reads see every write made earlier in the same transaction. Writes
// and emits become durable and visible only if the record's transaction
// commits; if the record fails, the runtime discards all of them.
//
// Each returns an error wrapping ErrUndeclaredStore (ErrUndeclaredOutput for
// Emit) when the calling Process did not list the store (output) in its Uses
// (EmitsTo) option, a *CodecError when a key or value does not encode or a
// stored value does not decode, and, for Put and Delete, an error wrapping
// ErrNullKey for a key that encodes to no bytes.

// useStore checks that the running processor declared d and returns the
// task's store.
func (h *Handle) useStore(d *storeDecl) (exec.Store, error) {
	switch {
	case h == nil:
		return nil, errors.New("stream: nil Handle: use the one passed to the Process function")
	case h.task == nil:
		return nil, errHandleDone()
	case d == nil:
		return nil, errorf(ErrUndeclaredStore, "zero StoreRef used; use one returned by stream.DeclareStore")
	case h.proc == nil:
		return nil, errorf(ErrUndeclaredStore, "store %q used outside a Process function", d.name)
	case !slices.Contains(h.proc.stores, d):
		return nil, errorf(ErrUndeclaredStore, "%s used store %q, which it does not declare; add stream.Uses(<the store's StoreRef>) to its options",
			h.proc.label(), d.name)
	}
	return h.taskStore(d)
}

func (h *Handle) storeCodecError(op, part string, d *storeDecl, err error) error {
	return h.codecError(op, part, "store "+quote(d.name), h.proc.label(), err)
}

// Get returns the value of key k in store s, and false if k has none.
func Get[K, V any](h *Handle, s StoreRef[K, V], k K) (V, bool, error) {
	var zero V
	d := s.storeDecl()
	st, err := h.useStore(d)
	if err != nil {
		return zero, false, err
	}
	kb, err := s.s.kc.Encode(k)
	if err != nil {
		return zero, false, h.storeCodecError("encode", "key", d, err)
	}
	vb, ok, err := st.Get(kb)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := s.s.vd.decode(vb)
	if err != nil {
		return zero, false, h.storeCodecError("decode", "value", d, err)
	}
	return v, true, nil
}

// Put sets key k of store s to v. A k that encodes to no bytes (a null key)
// returns an error wrapping ErrNullKey, and the record fails even if the
// error is ignored: the store's changelog cannot hold a record without a
// key (see ErrNullKey).
func Put[K, V any](h *Handle, s StoreRef[K, V], k K, v V) error {
	d := s.storeDecl()
	st, err := h.useStore(d)
	if err != nil {
		return err
	}
	kb, err := s.s.kc.Encode(k)
	if err != nil {
		return h.storeCodecError("encode", "key", d, err)
	}
	vb, err := s.s.vc.Encode(v)
	if err != nil {
		return h.storeCodecError("encode", "value", d, err)
	}
	return putEncoded(st, kb, vb, s.s.fresh)
}

// Delete removes key k from store s. Deleting a missing key is not an error;
// a null key is, as for Put.
func Delete[K, V any](h *Handle, s StoreRef[K, V], k K) error {
	d := s.storeDecl()
	st, err := h.useStore(d)
	if err != nil {
		return err
	}
	kb, err := s.s.kc.Encode(k)
	if err != nil {
		return h.storeCodecError("encode", "key", d, err)
	}
	return st.Delete(kb)
}

// Scan calls fn for every entry of store s in encoded-key order. An error from
// fn stops the scan and is returned. fn may read the store but must not
// write to it (collect the changes and make them after Scan returns).
func Scan[K, V any](h *Handle, s StoreRef[K, V], fn func(k K, v V) error) error {
	return scan(h, s, nil, nil, fn)
}

// Range is Scan over the entries whose encoded keys lie in [enc(from),
// enc(to)).
func Range[K, V any](h *Handle, s StoreRef[K, V], from, to K, fn func(k K, v V) error) error {
	return scanKeys(h, s, from, to, false, fn)
}

// ScanPrefix is Scan over the entries whose encoded keys start with the
// encoding of prefix: with codec.String, the keys that start with prefix.
func ScanPrefix[K, V any](h *Handle, s StoreRef[K, V], prefix K, fn func(k K, v V) error) error {
	return scanKeys(h, s, prefix, prefix, true, fn)
}

func scanKeys[K, V any](h *Handle, s StoreRef[K, V], lo, hi K, prefix bool, fn func(k K, v V) error) error {
	d := s.storeDecl()
	if _, err := h.useStore(d); err != nil {
		return err
	}
	lb, err := s.s.kc.Encode(lo)
	if err != nil {
		return h.storeCodecError("encode", "key", d, err)
	}
	var ub []byte
	if prefix {
		ub = prefixEnd(lb) // nil: no upper bound
	} else {
		if ub, err = s.s.kc.Encode(hi); err != nil {
			return h.storeCodecError("encode", "key", d, err)
		}
		if bytes.Compare(lb, ub) >= 0 {
			return nil // empty range; a nil or empty ub must not mean "unbounded"
		}
	}
	return scan(h, s, lb, ub, fn)
}

// scan runs fn over the entries in [lower, upper); a nil upper means no upper
// bound.
func scan[K, V any](h *Handle, s StoreRef[K, V], lower, upper []byte, fn func(k K, v V) error) error {
	d := s.storeDecl()
	st, err := h.useStore(d)
	if err != nil {
		return err
	}
	if fn == nil {
		return errors.New("stream: nil scan function")
	}
	return st.Scan(lower, upper, func(kb, vb []byte) error {
		k, err := s.s.kd.decode(kb)
		if err != nil {
			return h.storeCodecError("decode", "key", d, err)
		}
		v, err := s.s.vd.decode(vb)
		if err != nil {
			return h.storeCodecError("decode", "value", d, err)
		}
		return fn(k, v)
	})
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Emit produces a record with key k and value v to output out (a declared
// output, or a Loop's Output). It carries the input record's timestamp and
// the current headers; the runtime picks the partition by hashing the key
// bytes. A key that encodes to no bytes is written to a Loop as an empty
// key, hashed like the others; to a declared output as a null key, which
// the producer spreads over the partitions.
func Emit[K, V any](h *Handle, out OutputRef[K, V], k K, v V) error {
	d := out.outputDecl()
	switch {
	case h == nil:
		return errors.New("stream: nil Handle: use the one passed to the Process function")
	case h.task == nil:
		return errHandleDone()
	case d == nil:
		return errorf(ErrUndeclaredOutput, "zero OutputRef used; use one returned by stream.DeclareOutput")
	case h.proc == nil:
		return errorf(ErrUndeclaredOutput, "output %q used outside a Process function", d.topic.name)
	case !slices.Contains(h.proc.emits, d):
		return errorf(ErrUndeclaredOutput, "%s emitted to output %q, which it does not declare; add stream.EmitsTo(<the output's OutputRef>) to its options",
			h.proc.label(), d.topic.name)
	}
	target := "topic " + quote(d.topic.name)
	kb, err := out.o.kc.Encode(k)
	if err != nil {
		return h.codecError("encode", "key", target, h.proc.label(), err)
	}
	vb, err := out.o.vc.Encode(v)
	if err != nil {
		return h.codecError("encode", "value", target, h.proc.label(), err)
	}
	if len(kb) == 0 && d.topic.internal {
		// A loop: the runtime's producer would spread a nil key over
		// the partitions (tasks); an empty key is hashed like any other,
		// as the test driver does.
		kb = []byte{}
	}
	return h.emit(h.prog.topic(d.topic), kb, vb)
}
