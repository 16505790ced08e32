package stream

import (
	"bytes"
	"encoding/binary"
)

// SuppressUntilWindowCloses holds back the updates of a windowed table
// (the result of a windowed aggregation, possibly through TableFilter or
// TableMapValues) until their window closes, and then emits each window's
// final value once (Kafka Streams' suppress(untilWindowCloses)): a window
// closes when the task's stream time reaches its end plus the grace period
// (sessions: their last record + gap + grace). Windows deleted before they
// close (sessions merged into others) emit nothing. The released record
// carries the timestamp of the window's last update; Change.HasOld is false.
//
// Windows are released inside the record that moved stream time, and each
// release flows downstream on its own: a windowed operator or stream-stream
// join downstream in the same stage that finds it late drops it (counted in
// processor.StageMetrics.Late), as happens when its windows close no later
// than these (a roll-up of windows needs a grace period longer than theirs,
// plus any jump of stream time it must absorb); a release that fails downstream
// (a function's error, an output too large) is discarded alone and goes to
// the runtime's error policy as a *HookError. Neither fails the record that
// moved stream time.
//
// The pending windows are kept in a buffer store named after the operator
// (see Named), with a changelog "<app>-<name>-changelog", keyed by close
// time then windowed key, so that releasing the windows a stream-time
// advance closes is one scan of the buffer's head. The value released is
// the table's value at that moment, looked up in the windowed store; the
// buffer holds only the window and the timestamp. Since stream time is
// restored with the task's state, a restarted task releases exactly the
// windows the crashed one would have, once.
//
// A table without windows makes Build return ErrInvalidArgument.
func SuppressUntilWindowCloses[K, V any](t Table[Windowed[K], V], opts ...Option) Table[Windowed[K], V] {
	n := t.child("SuppressUntilWindowCloses", configure(opts))
	if n == nil {
		return Table[Windowed[K], V]{}
	}
	b := n.b
	out := &tableNode[Windowed[K], V]{n: n, kc: t.t.kc, window: t.t.window}
	if t.t.window == nil {
		b.fail(ErrInvalidArgument, "%s: %s is not a windowed table; suppress the result of a windowed aggregation (WindowedCount, ...)", n.label(), t.t.n.label())
		return Table[Windowed[K], V]{out}
	}
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label()}
	b.stores = append(b.stores, st)
	b.useStore(n, st)
	n.usesTime = true
	n.details = "[until window closes; store " + n.name + "]"
	out.stores = []*storeDecl{st}
	if t.t.get == nil || t.t.kc == nil {
		return Table[Windowed[K], V]{out} // Build fails
	}
	// Lookups of the suppressed table see the windows' current values
	// (they were not released yet, but they are the table's values).
	out.get, out.stores = t.t.get, append(cloneStores(t.t.stores), st)
	spec, kc, get := *t.t.window, t.t.kc, t.t.get
	label, target := n.label(), "store "+quote(st.name)
	t.attach(func(h *Handle, k Windowed[K], c Change[V]) error {
		store, err := h.taskStore(st)
		if err != nil {
			return err
		}
		kb, err := kc.Encode(k)
		if err != nil {
			return h.codecError("encode", "key", target, label, err)
		}
		key := encTime(make([]byte, 0, 8+len(kb)), spec.closeTime(millis(k.Window.Start), millis(k.Window.End)))
		key = append(key, kb...)
		if !c.HasNew {
			return store.Delete(key)
		}
		return store.Put(key, binary.BigEndian.AppendUint64(nil, uint64(millis(h.ts))))
	})
	kd := newDecoder(kc)
	n.timeHooks = append(n.timeHooks, timeHook{phase: 0, fn: func(h *Handle, from, to int64) error {
		store, err := h.taskStore(st)
		if err != nil {
			return err
		}
		type pending struct{ key, ts []byte }
		var due []pending
		err = store.Scan(dueFrom(h, st, -1, nil, from), encTime(nil, to+1), func(k, v []byte) error {
			due = append(due, pending{bytes.Clone(k), bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range due {
			if err := store.Delete(p.key); err != nil {
				return err
			}
			wk, err := kd.decode(p.key[8:])
			if err != nil {
				return h.codecError("decode", "key", target, label, err)
			}
			v, ok, err := get(h, wk)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if len(p.ts) == 8 {
				h.ts = fromMillis(int64(binary.BigEndian.Uint64(p.ts)))
			}
			// One window's release is one hook output: it fails (or is
			// dropped as late downstream) on its own; see hookOutput.
			if err := h.hookOutput(n, h.ts, func() error { return out.forward(h, wk, Change[V]{New: v, HasNew: true}) }); err != nil {
				return err
			}
		}
		return nil
	}})
	return Table[Windowed[K], V]{out}
}

// cloneStores returns a copy of s that appends do not share.
func cloneStores(s []*storeDecl) []*storeDecl { return append([]*storeDecl(nil), s...) }
