package stream

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
)

// JoinWindows say which records of two streams a stream-stream join pairs:
// those with equal keys whose timestamps are at most a duration apart.
// Create them with Within.
type JoinWindows struct {
	within, grace time.Duration
}

// Within returns join windows that pair records whose timestamps differ by
// at most d (either side may come first), with no grace period.
func Within(d time.Duration) JoinWindows { return JoinWindows{within: d} }

// Grace returns w with a grace period: an input record is late, and handed
// to the error policy (ErrLateRecord), when its timestamp + the join window
// + d is behind the task's stream time (one emitted by a stream-time hook
// upstream is dropped instead, see ErrLateRecord). Default 0.
func (w JoinWindows) Grace(d time.Duration) JoinWindows { w.grace = d; return w }

// The stream-stream joins buffer both sides in one store named after the
// operator (changelog "<app>-<name>-changelog"), so that each record meets
// the other side's records of its window, whichever comes first:
//
//	left record:   0x00 | uvarint(len(key)) | key | timestamp
//	right record:  0x01 | uvarint(len(key)) | key | timestamp
//	expiry index:  0x02 | expiry time | the record's key above
//
// (times as encTime), so a record finds its matches with one bounded scan of
// the other side. The value holds the records of that key and timestamp, in
// arrival order, each as a flag byte (1: it has been joined), uvarint(len)
// and the value encoded with the side's codec. A buffered record can pair
// with records that are not late, whose timestamps are at least stream time
// - window - grace; so it expires when stream time passes its timestamp + 2
// window + grace: then the left and outer joins emit it unpaired if it never
// was, and it is deleted (a tombstone in the changelog).
const (
	joinLeft   byte = 0x00
	joinRight  byte = 0x01
	joinExpiry byte = 0x02
)

type joinMode int

const (
	innerJoin joinMode = iota
	leftJoin
	outerJoin
)

// StreamJoin joins two streams on their keys within a time window (Kafka
// Streams' KStream-KStream join): for every pair of records with equal keys
// whose timestamps are at most w apart, fn(key, left value, right value)
// flows downstream once, when the later of the two arrives, with the later
// timestamp. lc and rc encode the values in the join's buffer store, named
// after the operator (see Named).
//
// Both streams run in one stage, so they must be co-partitioned: still
// partitioned by their keys (no Map, FlatMap, SelectKey or ProcessTo since
// they were read, or a Repartition after them), keys encoded with the same
// codec; Build returns ErrNotCoPartitioned otherwise, and the runtime checks
// the partition counts. A record more than the window plus the grace period
// behind the task's stream time is late (ErrLateRecord).
func StreamJoin[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], w JoinWindows, fn func(k K, lv VL, rv VR) VO,
	lc codec.Codec[VL], rc codec.Codec[VR], opts ...Option) Stream[K, VO] {
	var f func(K, VL, bool, VR, bool) VO
	if fn != nil {
		f = func(k K, lv VL, _ bool, rv VR, _ bool) VO { return fn(k, lv, rv) }
	}
	return streamJoin(l, r, w, innerJoin, "StreamJoin", f, lc, rc, opts)
}

// StreamLeftJoin is StreamJoin that keeps every left record: one that no
// right record paired with by the time its window can no longer pair it
// (stream time passes its timestamp + 2 windows + grace) flows downstream
// then, as fn(key, value, zero, false), with its own timestamp, as Kafka
// Streams (since 3.1) does; the delay avoids emitting an unpaired result for
// a record whose partner is only late. The unpaired result is emitted
// inside the record that moved stream time, on its own: an operator
// downstream in the same stage that finds it late drops it (a window of
// the record's timestamp has often closed by then: give it a grace of at
// least 2 windows + grace), and a failure downstream goes to the error
// policy as a *HookError, without failing that record.
func StreamLeftJoin[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], w JoinWindows, fn func(k K, lv VL, rv VR, ok bool) VO,
	lc codec.Codec[VL], rc codec.Codec[VR], opts ...Option) Stream[K, VO] {
	var f func(K, VL, bool, VR, bool) VO
	if fn != nil {
		f = func(k K, lv VL, _ bool, rv VR, rok bool) VO { return fn(k, lv, rv, rok) }
	}
	return streamJoin(l, r, w, leftJoin, "StreamLeftJoin", f, lc, rc, opts)
}

// StreamOuterJoin is StreamJoin that keeps every record of either side: an
// unpaired one flows downstream when its window can no longer pair it, as
// in StreamLeftJoin, with lok or rok false.
func StreamOuterJoin[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], w JoinWindows, fn func(k K, lv VL, lok bool, rv VR, rok bool) VO,
	lc codec.Codec[VL], rc codec.Codec[VR], opts ...Option) Stream[K, VO] {
	return streamJoin(l, r, w, outerJoin, "StreamOuterJoin", fn, lc, rc, opts)
}

func streamJoin[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], w JoinWindows, mode joinMode, op string,
	fn func(K, VL, bool, VR, bool) VO, lc codec.Codec[VL], rc codec.Codec[VR], opts []Option) Stream[K, VO] {
	n := l.child(op, configure(opts))
	if n == nil {
		return Stream[K, VO]{}
	}
	b := n.b
	out := &streamNode[K, VO]{n: n, keyCodec: l.s.keyCodec}
	checkFunc(n, "join function", fn == nil)
	checkCodec(n, "left value codec", lc == nil)
	checkCodec(n, "right value codec", rc == nil)
	within, grace := w.within.Milliseconds(), w.grace.Milliseconds()
	if within < 0 || grace < 0 {
		b.fail(ErrInvalidArgument, "%s: the join window %v and grace %v must not be negative", n.label(), w.within, w.grace)
	}
	if r.s == nil {
		b.fail(ErrInvalidArgument, "%s: the right stream is the zero Stream; pass one returned by this package", n.label())
		return Stream[K, VO]{out}
	}
	if r.s.n.b != b {
		b.fail(ErrForeignBuilder, "%s: the right stream belongs to another Builder; build both sides on one", n.label())
		return Stream[K, VO]{out}
	}
	b.link(n, r.s.n)
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label()}
	b.stores = append(b.stores, st)
	b.useStore(n, st)
	n.usesTime = true
	n.details = fmt.Sprintf("[%s; within %v, grace %v; store %s]", r.s.n.label(), w.within, w.grace, n.name)
	ok := true
	for _, side := range []struct {
		what    string
		rekeyed *node
	}{{"left", l.s.rekeyed}, {"right", r.s.rekeyed}} {
		if side.rekeyed != nil {
			b.fail(ErrNotCoPartitioned, "%s: the %s stream's key may have changed since it was read (after %s), so its records are not partitioned by it; "+
				"re-partition it by its key first with stream.Repartition", n.label(), side.what, side.rekeyed.label())
			ok = false
		}
	}
	checkKeyCodecs(n, "the left stream", l.s.keyCodec, "the right stream", r.s.keyCodec)
	kc, _ := l.s.keyCodec.(codec.Codec[K])
	if kc == nil || isNil(kc) {
		kc, _ = r.s.keyCodec.(codec.Codec[K])
	}
	if ok && (kc == nil || isNil(kc)) {
		b.fail(ErrNotCoPartitioned, "%s: the streams' key codec is unknown (a Merge of streams read with different key codecs?); re-partition them with stream.Repartition", n.label())
		ok = false
	}
	if !ok || fn == nil || lc == nil || rc == nil || within < 0 || grace < 0 {
		return Stream[K, VO]{out}
	}
	j := &ssJoin[K, VL, VR, VO]{n: n, st: st, within: within, grace: grace, mode: mode,
		kc: kc, kd: newDecoder(kc), lc: lc, ld: newDecoder(lc), rc: rc, rd: newDecoder(rc),
		fn: fn, out: out, label: n.label(), target: "store " + quote(st.name)}
	l.attach(j.left)
	r.attach(j.right)
	n.timeHooks = append(n.timeHooks, timeHook{phase: 0, fn: j.expire})
	return Stream[K, VO]{out}
}

// ssJoin is a compiled stream-stream join.
type ssJoin[K, VL, VR, VO any] struct {
	n             *node
	st            *storeDecl
	within, grace int64
	mode          joinMode
	kc            codec.Codec[K]
	kd            decoder[K]
	lc            codec.Codec[VL]
	ld            decoder[VL]
	rc            codec.Codec[VR]
	rd            decoder[VR]
	fn            func(K, VL, bool, VR, bool) VO
	out           *streamNode[K, VO]
	label, target string
}

// joinItem is one buffered record's value.
type joinItem struct {
	matched bool
	value   []byte
}

func encodeItems(items []joinItem) []byte {
	var b []byte
	for _, it := range items {
		flag := byte(0)
		if it.matched {
			flag = 1
		}
		b = append(b, flag)
		b = binary.AppendUvarint(b, uint64(len(it.value)))
		b = append(b, it.value...)
	}
	return b
}

func decodeItems(b []byte) ([]joinItem, error) {
	var items []joinItem
	for len(b) > 0 {
		flag := b[0]
		n, w := binary.Uvarint(b[1:])
		if w <= 0 || flag > 1 || uint64(len(b)-1-w) < n {
			return nil, &codec.DecodeError{Codec: "stream-stream join buffer", Reason: "malformed entry"}
		}
		start := 1 + w
		items = append(items, joinItem{matched: flag == 1, value: bytes.Clone(b[start : start+int(n)])})
		b = b[start+int(n):]
	}
	return items, nil
}

// bufKey returns side | uvarint(len(kb)) | kb (the prefix of a key's records
// on one side).
func bufKey(side byte, kb []byte) []byte {
	p := make([]byte, 0, 1+binary.MaxVarintLen64+len(kb)+8)
	p = append(p, side)
	p = binary.AppendUvarint(p, uint64(len(kb)))
	return append(p, kb...)
}

type bufEntry struct {
	key   []byte
	ts    int64
	items []joinItem
}

func (j *ssJoin[K, VL, VR, VO]) left(h *Handle, k K, v VL) error {
	vb, err := j.lc.Encode(v)
	if err != nil {
		return h.codecError("encode", "value", j.target, j.label, err)
	}
	return j.record(h, k, joinLeft, vb, func(other []byte) (VO, error) {
		rv, err := j.rd.decode(other)
		if err != nil {
			return *new(VO), err
		}
		return j.fn(k, v, true, rv, true), nil
	})
}

func (j *ssJoin[K, VL, VR, VO]) right(h *Handle, k K, v VR) error {
	vb, err := j.rc.Encode(v)
	if err != nil {
		return h.codecError("encode", "value", j.target, j.label, err)
	}
	return j.record(h, k, joinRight, vb, func(other []byte) (VO, error) {
		lv, err := j.ld.decode(other)
		if err != nil {
			return *new(VO), err
		}
		return j.fn(k, lv, true, v, true), nil
	})
}

// record joins a record of one side with the other side's buffered records
// of its window, then buffers it. pair joins it with one buffered value.
func (j *ssJoin[K, VL, VR, VO]) record(h *Handle, k K, side byte, vb []byte, pair func(other []byte) (VO, error)) error {
	st, err := h.streamTime()
	if err != nil {
		return err
	}
	ts := millis(h.ts)
	if ts+j.within+j.grace < st {
		return h.dropLate(&LateRecordError{Operator: j.label, Timestamp: h.ts.UTC(), StreamTime: fromMillis(st),
			Grace: msDuration(j.within + j.grace)})
	}
	store, err := h.taskStore(j.st)
	if err != nil {
		return err
	}
	kb, err := j.kc.Encode(k)
	if err != nil {
		return h.codecError("encode", "key", j.target, j.label, err)
	}
	otherSide := joinRight
	if side == joinRight {
		otherSide = joinLeft
	}
	// Mark the other side's records as joined where an unpaired one would
	// be emitted: the left side's in left and outer joins, the right
	// side's in outer joins.
	mark := j.mode == outerJoin || (j.mode == leftJoin && otherSide == joinLeft)
	prefix := bufKey(otherSide, kb)
	var found []bufEntry
	err = store.Scan(encTime(prefix[:len(prefix):len(prefix)], ts-j.within), encTime(prefix[:len(prefix):len(prefix)], ts+j.within+1),
		func(key, val []byte) error {
			items, err := decodeItems(val)
			if err != nil {
				return err
			}
			found = append(found, bufEntry{key: bytes.Clone(key), ts: decTime(key[len(prefix):]), items: items})
			return nil
		})
	if err != nil {
		return h.codecError("decode", "value", j.target, j.label, err)
	}
	matched := false
	for _, e := range found {
		changed := false
		for i := range e.items {
			o, err := pair(e.items[i].value)
			if err != nil {
				return h.codecError("decode", "value", j.target, j.label, err)
			}
			matched = true
			if err := j.forwardAt(h, k, o, max(ts, e.ts)); err != nil {
				return err
			}
			if mark && !e.items[i].matched {
				e.items[i].matched, changed = true, true
			}
		}
		if changed {
			if err := store.Put(e.key, encodeItems(e.items)); err != nil {
				return err
			}
		}
	}
	// Buffer the record for the other side's records to come.
	key := encTime(bufKey(side, kb), ts)
	old, had, err := store.Get(key)
	if err != nil {
		return err
	}
	var items []joinItem
	if had {
		if items, err = decodeItems(old); err != nil {
			return h.codecError("decode", "value", j.target, j.label, err)
		}
	}
	items = append(items, joinItem{matched: matched, value: vb})
	if err := store.Put(key, encodeItems(items)); err != nil {
		return err
	}
	if !had {
		e := make([]byte, 0, 9+len(key))
		e = encTime(append(e, joinExpiry), ts+2*j.within+j.grace+1)
		if err := store.Put(append(e, key...), nil); err != nil {
			return err
		}
	}
	return nil
}

// forwardAt forwards a result with timestamp ts (Unix ms).
func (j *ssJoin[K, VL, VR, VO]) forwardAt(h *Handle, k K, o VO, ts int64) error {
	prev := h.ts
	h.ts = fromMillis(ts)
	err := j.out.forward(h, k, o)
	h.ts = prev
	return err
}

// expire emits the unpaired buffered records that can no longer pair (left
// and outer joins) and deletes every expired one.
func (j *ssJoin[K, VL, VR, VO]) expire(h *Handle, from, to int64) error {
	return expireIndexed(h, j.st, joinExpiry, nil, from, to, func(store exec.Store, dk []byte) error {
		if side := dk[0]; j.mode == outerJoin || (j.mode == leftJoin && side == joinLeft) {
			return j.emitUnpaired(h, store, dk)
		}
		return nil
	})
}

func (j *ssJoin[K, VL, VR, VO]) emitUnpaired(h *Handle, store interface {
	Get([]byte) ([]byte, bool, error)
}, dk []byte) error {
	val, ok, err := store.Get(dk)
	if err != nil || !ok {
		return err
	}
	items, err := decodeItems(val)
	if err != nil {
		return h.codecError("decode", "value", j.target, j.label, err)
	}
	n, w := binary.Uvarint(dk[1:])
	if w <= 0 || len(dk) != 1+w+int(n)+8 {
		return h.codecError("decode", "key", j.target, j.label, &codec.DecodeError{Codec: "stream-stream join buffer", Reason: "malformed key"})
	}
	k, err := j.kd.decode(dk[1+w : 1+w+int(n)])
	if err != nil {
		return h.codecError("decode", "key", j.target, j.label, err)
	}
	ts := decTime(dk[len(dk)-8:])
	for _, it := range items {
		if it.matched {
			continue
		}
		var o VO
		if dk[0] == joinLeft {
			lv, err := j.ld.decode(it.value)
			if err != nil {
				return h.codecError("decode", "value", j.target, j.label, err)
			}
			var zero VR
			o = j.fn(k, lv, true, zero, false)
		} else {
			rv, err := j.rd.decode(it.value)
			if err != nil {
				return h.codecError("decode", "value", j.target, j.label, err)
			}
			var zero VL
			o = j.fn(k, zero, false, rv, true)
		}
		if err := h.hookOutput(j.n, fromMillis(ts), func() error { return j.forwardAt(h, k, o, ts) }); err != nil {
			return err
		}
	}
	return nil
}
