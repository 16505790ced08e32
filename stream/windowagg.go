package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
)

// Windowed stores. A windowed aggregation keeps its windows in one store
// named after it (changelog "<app>-<name>-changelog"), with this key layout
// (times as encTime: 8 bytes, big-endian, sign bit flipped, so that byte
// order is time order):
//
//	time window:  0x00 | uvarint(len(key)) | key | start
//	session:      0x00 | uvarint(len(key)) | key | end | start
//	expiry index: 0x01 | expiry time | the data key without its 0x00
//
// The length prefix makes a key's windows one contiguous range, ordered by
// start (sessions: by end, and since a key's sessions never overlap, by
// start too): a record's windows are point lookups, and the sessions a
// record may merge with are one bounded scan from its timestamp - gap. The
// expiry index orders every window of the task by when it expires (time
// windows: start + retention; sessions: when they close), so expiring them
// as stream time passes is one scan of the index's head, whatever the keys;
// each expired window is deleted with a Delete, which the runtime turns
// into a tombstone in the changelog, so a restore never brings it back.
// Values are the aggregates encoded with the aggregate codec; index values
// are empty.
const (
	windowData   byte = 0x00
	windowExpiry byte = 0x01
)

// dueFrom returns the lower bound of the scan for the entries of an index of
// times (prefix | encTime(t) | ...) that fall due as stream time moves from
// `from` to a later time: prefix | encTime(from); or prefix alone, the whole
// index up to the new time, before the first record (from is noTime) and on
// the first scan of the index by this task instance (exec.MemoryTask; every
// scan, when the runtime keeps no memory). st and index name the index.
//
// Every entry with a time before `from` was deleted when the stream time
// moved past it, and none is written later: an operator writes an entry
// (a window's close or expiry, a buffered join record's expiry) only for a
// window or record it accepted, that is, whose time is after the stream
// time then. That holds for the state one task instance made; state
// restored from changelogs written without a transaction (at-least-once,
// at-most-once) may hold the stream time of a cycle whose other changelog
// records were lost in a crash, so the first scan after a (re)start looks at
// the whole index. Scanning from the index's start on every record would
// instead step over the tombstone of every entry released since the store
// last compacted, on every record that moves the stream time, which grows
// without bound: thousands of tombstones per record after a restore,
// seconds per poll. The entries at `from` itself are scanned again (at most
// a millisecond's worth), so that no rounding of an accepted time can hide
// one.
//
// The first scan is noted before it runs: if the record that runs it then
// fails (its writes discarded, including the releases), an entry that only
// a whole scan would find waits for the task's next instance.
func dueFrom(h *Handle, st *storeDecl, index int, prefix []byte, from int64) []byte {
	if from == noTime {
		return prefix
	}
	m, _ := h.task.(exec.MemoryTask)
	if m == nil {
		return prefix
	}
	mem := m.Memory()
	if mem == nil {
		return prefix
	}
	key := indexScan{st, index}
	if mem[key] == nil {
		mem[key] = true
		return prefix
	}
	return encTime(prefix, from)
}

// indexScan names an index of times in a task's memory (dueFrom): a store
// and the index's first byte (-1: the store is the index).
type indexScan struct {
	st    *storeDecl
	index int
}

// windowKeyPrefix returns 0x00 | uvarint(len(kb)) | kb.
func windowKeyPrefix(kb []byte) []byte {
	p := make([]byte, 0, 1+binary.MaxVarintLen64+len(kb)+16)
	p = append(p, windowData)
	p = binary.AppendUvarint(p, uint64(len(kb)))
	return append(p, kb...)
}

// expiryKey returns the index key of data key dk expiring at t.
func expiryKey(t int64, dk []byte) []byte {
	e := make([]byte, 0, 9+len(dk))
	e = append(e, windowExpiry)
	e = encTime(e, t)
	return append(e, dk[1:]...)
}

// expireIndexed deletes every entry of the store's expiry index that is due
// by stream time `to` (as the stream time moves from `from`; see dueFrom), and the data key each one indexes; on each data key,
// before its deletion, it calls fn with the store (when fn is not nil). An index entry is index |
// expiry time (encTime) | the data key without its first len(dataPrefix)
// bytes, which are dataPrefix: windowed stores leave their data byte out of
// the index (expiryKey), the stream-stream join keeps its side byte in it.
func expireIndexed(h *Handle, st *storeDecl, index byte, dataPrefix []byte, from, to int64, fn func(store exec.Store, dk []byte) error) error {
	store, err := h.taskStore(st)
	if err != nil {
		return err
	}
	var due [][]byte
	err = store.Scan(dueFrom(h, st, int(index), []byte{index}, from), encTime([]byte{index}, to+1), func(k, _ []byte) error {
		due = append(due, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, ek := range due {
		dk := append(slices.Clone(dataPrefix), ek[9:]...)
		if fn != nil {
			if err := fn(store, dk); err != nil {
				return err
			}
		}
		if err := store.Delete(dk); err != nil {
			return err
		}
		if err := store.Delete(ek); err != nil {
			return err
		}
	}
	return nil
}

// WindowedCount counts the records per key and window. The counts live in a
// windowed store named after the operator (see Named), with a changelog
// "<app>-<name>-changelog". Every record emits the new counts of its windows
// downstream (hold them back until their windows close with
// SuppressUntilWindowCloses). For sessions, a record that merges sessions
// emits a deletion of each merged session and the count of the merged one.
func WindowedCount[K, V any](w WindowedGrouped[K, V], opts ...Option) Table[Windowed[K], int64] {
	return windowAggregate(w, "WindowedCount", codec.Int64{}, true, opts, nil,
		func(_ K, _ V, n int64, _ bool) int64 { return n + 1 },
		func(_ K, a, b int64) int64 { return a + b })
}

// WindowedReduce combines the records of every key and window into one
// value of their own type, as Reduce does, encoded in the windowed store
// with the grouping's value codec. For sessions, merged sessions are
// combined with fn too: fn must be associative.
func WindowedReduce[K, V any](w WindowedGrouped[K, V], fn func(agg, v V) V, opts ...Option) Table[Windowed[K], V] {
	var step func(K, V, V, bool) V
	var merge func(K, V, V) V
	if fn != nil {
		step = func(_ K, v, a V, had bool) V {
			if !had {
				return v
			}
			return fn(a, v)
		}
		merge = func(_ K, a, b V) V { return fn(a, b) }
	}
	return windowAggregate(w, "WindowedReduce", w.g.vc, false, opts,
		func(n *node) { checkFunc(n, "reduce function", fn == nil) }, step, merge)
}

// WindowedAggregate folds the records of every key and time window into a
// value of type A, as Aggregate does: a window's first record starts from
// init(). It takes time windows (Tumbling, Hopping); session windows need a
// merge function: use SessionAggregate.
func WindowedAggregate[K, V, A any](w WindowedGrouped[K, V], init func() A, add func(K, V, A) A, ac codec.Codec[A], opts ...Option) Table[Windowed[K], A] {
	var step func(K, V, A, bool) A
	if init != nil && add != nil {
		step = func(k K, v V, a A, had bool) A {
			if !had {
				a = init()
			}
			return add(k, v, a)
		}
	}
	return windowAggregate(w, "WindowedAggregate", ac, true, opts, func(n *node) {
		checkFunc(n, "init function", init == nil)
		checkFunc(n, "add function", add == nil)
		if w.w.kind == sessionWindows {
			n.b.fail(ErrInvalidArgument, "%s: session windows merge sessions, so they need a merge function: use stream.SessionAggregate", n.label())
		}
	}, step, nil)
}

// SessionAggregate folds the records of every key and session into a value
// of type A: a session's first record starts from init(); when a record
// bridges sessions, their aggregates are combined with merge (earlier
// session first) before the record is added. It takes session windows
// (Sessions).
func SessionAggregate[K, V, A any](w WindowedGrouped[K, V], init func() A, add func(K, V, A) A, merge func(k K, a, b A) A, ac codec.Codec[A], opts ...Option) Table[Windowed[K], A] {
	var step func(K, V, A, bool) A
	if init != nil && add != nil {
		step = func(k K, v V, a A, had bool) A {
			if !had {
				a = init()
			}
			return add(k, v, a)
		}
	}
	return windowAggregate(w, "SessionAggregate", ac, true, opts, func(n *node) {
		checkFunc(n, "init function", init == nil)
		checkFunc(n, "add function", add == nil)
		checkFunc(n, "merge function", merge == nil)
		if w.w.kind != sessionWindows && w.w.bad == "" {
			n.b.fail(ErrInvalidArgument, "%s: takes session windows (stream.Sessions); for time windows use stream.WindowedAggregate", n.label())
		}
	}, step, merge)
}

// windowAggregate adds a windowed aggregation operator. step folds a record
// into a window's value (had: the window existed); merge combines two
// sessions' values (nil for operators that take no sessions).
func windowAggregate[K, V, A any](w WindowedGrouped[K, V], op string, ac codec.Codec[A], checkAC bool, opts []Option,
	check func(n *node), step func(K, V, A, bool) A, merge func(K, A, A) A) Table[Windowed[K], A] {
	g := w.g
	if g.s == nil {
		return Table[Windowed[K], A]{}
	}
	s := Stream[K, V]{g.s}
	n := s.child(op, configure(opts))
	b := n.b
	if check != nil {
		check(n)
	}
	if checkAC {
		checkCodec(n, "aggregate codec", ac == nil)
	}
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label()}
	b.stores = append(b.stores, st)
	b.useStore(n, st)
	n.usesTime = true
	n.details = "[" + w.w.desc + "; store " + n.name + "]"
	spec := w.w
	var wkc codec.Codec[Windowed[K]]
	if g.kc != nil {
		wkc = WindowedCodec(g.kc)
	}
	out := &tableNode[Windowed[K], A]{n: n, kc: wkc, stores: []*storeDecl{st}, window: &spec}
	if step == nil || ac == nil || g.kc == nil || spec.bad != "" || (spec.kind == sessionWindows && merge == nil) {
		return Table[Windowed[K], A]{out} // Build fails
	}
	wa := &windowAgg[K, V, A]{n: n, st: st, spec: spec, kc: g.kc, ac: ac, ad: newDecoder(ac), out: out,
		step: step, merge: merge, label: n.label(), target: "store " + quote(st.name)}
	out.get = wa.get
	n.timeHooks = append(n.timeHooks, timeHook{phase: 1, fn: func(h *Handle, from, to int64) error {
		return expireIndexed(h, st, windowExpiry, []byte{windowData}, from, to, nil)
	}})
	if spec.kind == sessionWindows {
		s.attach(wa.session)
	} else {
		s.attach(wa.timeWindows)
	}
	return Table[Windowed[K], A]{out}
}

// windowAgg is a compiled windowed aggregation.
type windowAgg[K, V, A any] struct {
	n             *node
	st            *storeDecl
	spec          windowSpec
	kc            codec.Codec[K]
	ac            codec.Codec[A]
	ad            decoder[A]
	out           *tableNode[Windowed[K], A]
	step          func(K, V, A, bool) A
	merge         func(K, A, A) A
	label, target string
}

func (wa *windowAgg[K, V, A]) late(h *Handle, st int64) *LateRecordError {
	return &LateRecordError{Operator: wa.label, Timestamp: h.ts.UTC(), StreamTime: fromMillis(st),
		Grace: msDuration(wa.spec.grace)}
}

// timeWindows folds a record into each of its time windows that is still
// open.
func (wa *windowAgg[K, V, A]) timeWindows(h *Handle, k K, v V) error {
	st, err := h.streamTime()
	if err != nil {
		return err
	}
	store, err := h.taskStore(wa.st)
	if err != nil {
		return err
	}
	kb, err := wa.kc.Encode(k)
	if err != nil {
		return h.codecError("encode", "key", wa.target, wa.label, err)
	}
	prefix := windowKeyPrefix(kb)
	ts, size, adv := millis(h.ts), wa.spec.size, wa.spec.advance
	last := floorDiv(ts, adv) * adv // the latest window start <= ts
	first := last
	for first-adv+size > ts {
		first -= adv
	}
	accepted := false
	for start := first; start <= last; start += adv {
		end := start + size
		if end+wa.spec.grace <= st {
			continue // closed
		}
		accepted = true
		key := encTime(prefix[:len(prefix):len(prefix)], start)
		old, had, err := store.Get(key)
		if err != nil {
			return err
		}
		var a, prev A
		if had {
			if a, err = wa.ad.decode(old); err != nil {
				return h.codecError("decode", "value", wa.target, wa.label, err)
			}
			if wa.out.sendOld {
				if prev, err = wa.ad.decode(old); err != nil {
					return h.codecError("decode", "value", wa.target, wa.label, err)
				}
			}
		}
		a = wa.step(k, v, a, had)
		ab, err := wa.ac.Encode(a)
		if err != nil {
			return h.codecError("encode", "value", wa.target, wa.label, err)
		}
		if err := store.Put(key, ab); err != nil {
			return err
		}
		if !had {
			if err := store.Put(expiryKey(start+wa.spec.retention, key), nil); err != nil {
				return err
			}
		}
		if err := wa.out.forward(h, windowed(k, start, end), Change[A]{Old: prev, New: a, HasOld: had, HasNew: true}); err != nil {
			return err
		}
	}
	if !accepted {
		return h.dropLate(wa.late(h, st))
	}
	return nil
}

// session is a stored session of one key.
type session struct {
	start, end int64
	key, val   []byte
}

var errStopScan = errors.New("stop scan")

// touchedSessions returns the sessions of the key whose windowed-store keys
// start with prefix that a record at ts touches, with sessions gap apart:
// those ending at or after ts - gap and starting at or before ts + gap. A
// key's sessions never overlap, so in end order they are in start order
// too: the scan stops at the first that starts too late.
func touchedSessions(store exec.Store, prefix []byte, ts, gap int64) ([]session, error) {
	var found []session
	err := store.Scan(encTime(prefix[:len(prefix):len(prefix)], ts-gap), prefixEnd(prefix), func(key, val []byte) error {
		if len(key) != len(prefix)+16 {
			return nil
		}
		s := session{end: decTime(key[len(prefix):]), start: decTime(key[len(prefix)+8:])}
		if s.start > ts+gap {
			return errStopScan
		}
		s.key, s.val = bytes.Clone(key), bytes.Clone(val)
		found = append(found, s)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, err
	}
	return found, nil
}

// session merges a record into its key's sessions.
func (wa *windowAgg[K, V, A]) session(h *Handle, k K, v V) error {
	st, err := h.streamTime()
	if err != nil {
		return err
	}
	ts, gap := millis(h.ts), wa.spec.gap
	store, err := h.taskStore(wa.st)
	if err != nil {
		return err
	}
	kb, err := wa.kc.Encode(k)
	if err != nil {
		return h.codecError("encode", "key", wa.target, wa.label, err)
	}
	prefix := windowKeyPrefix(kb)
	found, err := touchedSessions(store, prefix, ts, gap)
	if err != nil {
		return err
	}
	start, end := ts, ts
	for _, s := range found {
		start, end = min(start, s.start), max(end, s.end)
	}
	// Late only if the merged session has closed, as in Kafka Streams'
	// KStreamSessionWindowAggregate: closeTime = observedStreamTime -
	// gracePeriodMs - inactivityGap; "if (mergedWindow.end() < closeTime)"
	// the record is dropped. A record inside (or within the gap of) a
	// session that is still open is not late, however far behind stream
	// time it is; one that starts a session of its own is late when that
	// session would be closed already (ts + gap + grace < stream time).
	// Sessions that closed were deleted (expiry), so found holds open ones.
	if st >= wa.spec.closeTime(start, end) {
		return h.dropLate(wa.late(h, st))
	}
	var a A
	for i, s := range found {
		sa, err := wa.ad.decode(s.val)
		if err != nil {
			return h.codecError("decode", "value", wa.target, wa.label, err)
		}
		if i == 0 {
			a = sa
		} else {
			a = wa.merge(k, a, sa)
		}
	}
	var prev A
	same := len(found) == 1 && found[0].start == start && found[0].end == end
	if same && wa.out.sendOld {
		if prev, err = wa.ad.decode(found[0].val); err != nil {
			return h.codecError("decode", "value", wa.target, wa.label, err)
		}
	}
	a = wa.step(k, v, a, len(found) > 0)
	ab, err := wa.ac.Encode(a)
	if err != nil {
		return h.codecError("encode", "value", wa.target, wa.label, err)
	}
	if same {
		if err := store.Put(found[0].key, ab); err != nil {
			return err
		}
		return wa.out.forward(h, windowed(k, start, end), Change[A]{Old: prev, New: a, HasOld: true, HasNew: true})
	}
	// The record extends or merges sessions: the old ones go, each with a
	// deletion downstream, and the merged one comes.
	for _, s := range found {
		if err := store.Delete(s.key); err != nil {
			return err
		}
		if err := store.Delete(expiryKey(wa.spec.closeTime(s.start, s.end), s.key)); err != nil {
			return err
		}
		old, err := wa.ad.decode(s.val)
		if err != nil {
			return h.codecError("decode", "value", wa.target, wa.label, err)
		}
		if err := wa.out.forward(h, windowed(k, s.start, s.end), Change[A]{Old: old, HasOld: true}); err != nil {
			return err
		}
	}
	key := encTime(encTime(prefix[:len(prefix):len(prefix)], end), start)
	if err := store.Put(key, ab); err != nil {
		return err
	}
	if err := store.Put(expiryKey(wa.spec.closeTime(start, end), key), nil); err != nil {
		return err
	}
	return wa.out.forward(h, windowed(k, start, end), Change[A]{New: a, HasNew: true})
}

// get looks a window up: the windowed table's lookup.
func (wa *windowAgg[K, V, A]) get(h *Handle, w Windowed[K]) (A, bool, error) {
	var zero A
	store, err := h.taskStore(wa.st)
	if err != nil {
		return zero, false, err
	}
	kb, err := wa.kc.Encode(w.Key)
	if err != nil {
		return zero, false, h.codecError("encode", "key", wa.target, wa.label, err)
	}
	key := windowKeyPrefix(kb)
	start, end := millis(w.Window.Start), millis(w.Window.End)
	if wa.spec.kind == sessionWindows {
		key = encTime(key, end)
	} else if end != start+wa.spec.size {
		return zero, false, nil
	}
	vb, ok, err := store.Get(encTime(key, start))
	if err != nil || !ok {
		return zero, false, err
	}
	a, err := wa.ad.decode(vb)
	if err != nil {
		return zero, false, h.codecError("decode", "value", wa.target, wa.label, err)
	}
	return a, true, nil
}
