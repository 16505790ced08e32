package stream

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/codec"
)

// Windows group a key's records by their timestamps (event time, see
// ExtractTimestamp) for windowed aggregations: TimeWindows (tumbling and
// hopping) and SessionWindows. Pass them to WindowedBy.
//
// A time window [start, end) closes when the task's stream time reaches end
// plus the grace period; a session when stream time passes its last record
// plus the gap plus the grace. From then on its result is final
// (SuppressUntilWindowCloses emits it then). An input record is late when
// no window that could take it is open: for time windows, when every window
// holding its timestamp has closed; for sessions, when the session it would
// start, extend or merge into would be closed already. The aggregation then
// returns a *LateRecordError (ErrLateRecord) and the runtime's error policy
// handles the record. A record at most the grace period behind stream time
// is never late; one further behind is late only if those windows closed. A
// late record emitted by a stream-time hook upstream in the same stage (a
// released window, an unpaired join result) is dropped and counted instead
// (see ErrLateRecord).
type Windows interface {
	spec() windowSpec
}

// windowKind tells time windows from sessions.
type windowKind int

const (
	timeWindows windowKind = iota
	sessionWindows
)

// windowSpec is a window definition in milliseconds.
type windowSpec struct {
	kind                 windowKind
	size, advance, grace int64 // time windows: size and advance; both: grace
	gap                  int64 // sessions: the inactivity gap
	retention            int64 // time windows: how long a window is kept from its start
	desc                 string
	bad                  string // why the definition is invalid, or ""
}

// closeTime returns when window w closes: it is final once the stream time
// reaches it (Unix milliseconds).
func (s windowSpec) closeTime(start, end int64) int64 {
	if s.kind == sessionWindows {
		// end is the session's last record, inclusive: a record up to
		// gap later still extends it.
		return end + s.gap + s.grace + 1
	}
	return end + s.grace
}

// TimeWindows are fixed-size windows aligned to the Unix epoch: tumbling
// (Tumbling: adjacent, every record in exactly one) or hopping (Hopping:
// overlapping, a record in size/advance of them). A window [start, end)
// holds the records with start <= timestamp < end: a record exactly at a
// window's end belongs to the next one.
type TimeWindows struct {
	size, advance, grace, retention time.Duration
}

// Tumbling returns adjacent windows of the given size, with no grace
// period (see Grace).
func Tumbling(size time.Duration) TimeWindows { return TimeWindows{size: size, advance: size} }

// Hopping returns windows of the given size starting every advance (0 <
// advance <= size), with no grace period (see Grace).
func Hopping(size, advance time.Duration) TimeWindows {
	return TimeWindows{size: size, advance: advance}
}

// Grace returns w with a grace period: a window [start, end) accepts
// records while stream time is below end + d, and closes when stream time
// reaches end + d. Default 0: a window closes as soon as stream time
// reaches its end; an out-of-order record is then taken only by a window
// that is still open (one whose end is after stream time), and otherwise
// is late.
func (w TimeWindows) Grace(d time.Duration) TimeWindows { w.grace = d; return w }

// Retention returns w with windows kept in the store for d from their
// start, so that lookups (a join with the windowed table) find them after
// they closed. Default and minimum: size + grace, which deletes a window as
// it closes. Expired windows are deleted as stream time passes them, with a
// tombstone in the store's changelog.
func (w TimeWindows) Retention(d time.Duration) TimeWindows { w.retention = d; return w }

func (w TimeWindows) spec() windowSpec {
	s := windowSpec{kind: timeWindows, size: w.size.Milliseconds(), advance: w.advance.Milliseconds(),
		grace: w.grace.Milliseconds(), retention: w.retention.Milliseconds()}
	switch {
	case s.size < 1:
		s.bad = fmt.Sprintf("window size %v must be at least a millisecond", w.size)
	case s.advance < 1 || s.advance > s.size:
		s.bad = fmt.Sprintf("hopping advance %v must be between a millisecond and the size %v", w.advance, w.size)
	case s.grace < 0:
		s.bad = fmt.Sprintf("grace %v must not be negative", w.grace)
	case w.retention != 0 && s.retention < s.size+s.grace:
		s.bad = fmt.Sprintf("retention %v is shorter than size + grace (%v): windows would be deleted before they close", w.retention, w.size+w.grace)
	}
	if s.retention == 0 {
		s.retention = s.size + s.grace
	}
	if s.advance == s.size {
		s.desc = fmt.Sprintf("tumbling %v", w.size)
	} else {
		s.desc = fmt.Sprintf("hopping %v every %v", w.size, w.advance)
	}
	s.desc += fmt.Sprintf(", grace %v", w.grace)
	if w.retention != 0 {
		s.desc += fmt.Sprintf(", retention %v", w.retention)
	}
	return s
}

// SessionWindows group a key's records into sessions: records at most the
// inactivity gap apart (exactly one gap apart included, as in Kafka
// Streams) belong to one session, and a record that bridges two sessions
// merges them. A session's Window runs from its first record's timestamp to
// its last one's, both included (End is the last record's timestamp, as in
// Kafka Streams). It closes when stream time passes End + gap + grace: no
// record can extend it any more.
//
// A record is late only when the session it would start, extend or merge
// into would have closed (its End + gap + grace is before stream time), as
// in Kafka Streams' session aggregation: a record inside an open session is
// taken however far behind stream time it is, even with no grace.
type SessionWindows struct {
	gap, grace time.Duration
}

// Sessions returns session windows with the given inactivity gap and no
// grace period (see Grace).
func Sessions(gap time.Duration) SessionWindows { return SessionWindows{gap: gap} }

// Grace returns w with a grace period: a session closes when stream time
// passes its last record + gap + d, and a record that would start, extend
// or merge into a session that closed by then is late. Default 0.
func (w SessionWindows) Grace(d time.Duration) SessionWindows { w.grace = d; return w }

func (w SessionWindows) spec() windowSpec {
	s := windowSpec{kind: sessionWindows, gap: w.gap.Milliseconds(), grace: w.grace.Milliseconds()}
	switch {
	case s.gap < 1:
		s.bad = fmt.Sprintf("session gap %v must be at least a millisecond", w.gap)
	case s.grace < 0:
		s.bad = fmt.Sprintf("grace %v must not be negative", w.grace)
	}
	s.desc = fmt.Sprintf("sessions, gap %v, grace %v", w.gap, w.grace)
	return s
}

// Window is a window's time range. For time windows End is exclusive; for
// sessions it is the timestamp of the session's last record (inclusive).
// Both are UTC, with millisecond precision.
type Window struct {
	Start, End time.Time
}

// Windowed is the key of a windowed aggregation's result: the grouping key
// and the window.
type Windowed[K any] struct {
	Key    K
	Window Window
}

func windowed[K any](k K, start, end int64) Windowed[K] {
	return Windowed[K]{Key: k, Window: Window{Start: fromMillis(start), End: fromMillis(end)}}
}

// WindowedCodec encodes Windowed keys: the key encoded with kc, followed by
// the window's start and end as 8-byte big-endian Unix milliseconds. Use it
// to write a windowed table to a topic (TableTo), or to read one back.
func WindowedCodec[K any](kc codec.Codec[K]) codec.Codec[Windowed[K]] { return windowedCodec[K]{kc} }

type windowedCodec[K any] struct{ kc codec.Codec[K] }

func (c windowedCodec[K]) Encode(w Windowed[K]) ([]byte, error) {
	kb, err := c.kc.Encode(w.Key)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(kb)+16)
	b = append(b, kb...)
	b = binary.BigEndian.AppendUint64(b, uint64(millis(w.Window.Start)))
	return binary.BigEndian.AppendUint64(b, uint64(millis(w.Window.End))), nil
}

func (c windowedCodec[K]) Decode(data []byte) (Windowed[K], error) {
	if len(data) < 16 {
		return Windowed[K]{}, &codec.DecodeError{Codec: "Windowed", Reason: fmt.Sprintf("wants at least 16 bytes, got %d", len(data))}
	}
	n := len(data) - 16
	k, err := c.kc.Decode(data[:n])
	if err != nil {
		return Windowed[K]{}, err
	}
	return windowed(k, int64(binary.BigEndian.Uint64(data[n:])), int64(binary.BigEndian.Uint64(data[n+8:]))), nil
}

// WindowedGrouped is a grouped stream with windows, ready for the windowed
// aggregations (WindowedCount, WindowedReduce, WindowedAggregate,
// SessionAggregate). It is the result of WindowedBy.
type WindowedGrouped[K, V any] struct {
	g     Grouped[K, V]
	w     windowSpec
	label string
}

// WindowedBy applies windows to a grouped stream. It adds no operator: the
// aggregation that follows keeps one windowed store and does the work.
// Invalid windows (a zero size, an advance larger than the size, a negative
// grace, a retention shorter than size + grace) make Build return
// ErrInvalidArgument.
func WindowedBy[K, V any](g Grouped[K, V], w Windows) WindowedGrouped[K, V] {
	if g.s == nil {
		return WindowedGrouped[K, V]{}
	}
	label := "WindowedBy after " + g.s.n.label()
	if w == nil {
		g.s.n.b.fail(ErrInvalidArgument, "%s: the windows are nil; pass stream.Tumbling, stream.Hopping or stream.Sessions", label)
		return WindowedGrouped[K, V]{g: g, w: windowSpec{bad: "nil windows"}, label: label}
	}
	spec := w.spec()
	if spec.bad != "" {
		g.s.n.b.fail(ErrInvalidArgument, "%s: %s", label, spec.bad)
	}
	return WindowedGrouped[K, V]{g: g, w: spec, label: label}
}

// encTime encodes Unix milliseconds so that byte order is time order
// (big-endian with the sign bit flipped).
func encTime(b []byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(ms)^(1<<63))
}

func decTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }
