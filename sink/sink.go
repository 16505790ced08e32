package sink

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// NoOffset is Range.From for a partition the sink held no offset for when
// the runner took it over: Offsets did not return it. The sink must then
// store the partition's offset only if it still has none.
const NoOffset int64 = -1

// ErrFenced is wrapped by the error a Sink's Write returns when the offsets
// it holds for a partition of the batch are not the batch's Range.From:
// another writer (a newer owner of the partition, or an earlier attempt of
// the same batch whose commit reported an error but landed) moved them. A
// sink may also return it when another writer holds the partition's offset
// locked (a writer paused inside its transaction) for longer than it waits
// for a lock, since that writer may still commit a move. The write must then
// have changed nothing. The runner drops the batch, commits nothing for it,
// and rejoins the group, which reads the offsets from the sink again: it is
// not an error of Run, however often it happens.
var ErrFenced = errors.New("sink: fenced: the stored offsets moved under this writer")

// Sink is a system outside Kafka that stores records together with the
// input offsets they came from, in one transaction of its own. It is the
// truth about what was consumed: the runner starts every partition from the
// offset the sink stored, never from the consumer group's committed offsets.
//
// A Sink must be safe for concurrent use: the runner calls Offsets from the
// group's assignment while Write may be running for other partitions.
type Sink interface {
	// Offsets returns, for each partition of topic in partitions, the
	// position stored for group: the next offset to read and the id of the
	// topic it belongs to. A partition with no stored offset is absent from
	// the map (the runner then starts it at its StartOffset, and its first
	// batch has Range.From == NoOffset). An error fails the assignment: the
	// runner's client leaves the group session and rejoins after a backoff.
	Offsets(ctx context.Context, group, topic string, partitions []int32) (map[int32]Position, error)

	// Write stores every record of b and sets, for each of b.Ranges, the
	// partition's stored position from (From, FromTopicID) to (To, TopicID),
	// all in one atomic transaction of the sink's own: afterwards either all
	// of it is visible, or none of it.
	//
	// The update is a compare-and-set. If any range's stored position is not
	// (From, FromTopicID) (for From == NoOffset: if an offset is stored at
	// all), Write must roll back, change nothing, and return an error
	// wrapping ErrFenced (a *FencedError says which partition).
	//
	// Any other error means the outcome may be unknown (a commit whose reply
	// was lost). The runner retries the same batch, which is safe because of
	// the compare-and-set: a retry after a commit that landed is fenced.
	// ctx bounds the write; the runner gives it WriteTimeout even while
	// shutting down.
	//
	// The runner never modifies b after the call: Write may keep references
	// to its slices.
	Write(ctx context.Context, b *Batch) error
}

// TopicID is a Kafka topic's id (KIP-516). The broker gives every topic a
// new one when it is created, so a topic deleted and created again under
// the same name has another id, and its offsets start again at 0. The zero
// TopicID stands for "unknown".
type TopicID [16]byte

// String returns the id as Kafka's tools show it (kafka-topics.sh
// --describe: URL-safe base64 without padding), or "" for the zero id.
func (id TopicID) String() string {
	if id.IsZero() {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// IsZero reports whether the id is unknown.
func (id TopicID) IsZero() bool { return id == TopicID{} }

// ParseTopicID parses the form String returns; "" gives the zero id.
func ParseTopicID(s string) (TopicID, error) {
	var id TopicID
	if s == "" {
		return id, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("sink: %q is not a topic id (22 characters of URL-safe base64)", s)
	}
	copy(id[:], b)
	return id, nil
}

// Position is what a sink stores for one partition.
type Position struct {
	// Offset is the next offset to read.
	Offset int64
	// TopicID is the id of the topic Offset belongs to. Zero when the sink
	// stored none: a position written before the sink kept topic ids (the
	// next write stores it).
	TopicID TopicID
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one input record, as fetched with read_committed isolation.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte // nil for a null key
	Value     []byte // nil for a null value (a tombstone)
	Headers   []Header
	Timestamp time.Time
}

// Range is the span of input offsets of one partition that a batch covers.
//
// INVARIANT: the batch holds every record of the partition that a
// read_committed consumer returns at offsets in [From, To) (From taken as the
// first offset read when it is NoOffset), and no other record of it.
type Range struct {
	Topic     string
	Partition int32
	// From is the offset the sink stored for the partition when the batch
	// was made (NoOffset if none): the expected value of the
	// compare-and-set.
	From int64
	// FromTopicID is the topic id stored with From, also expected by the
	// compare-and-set (zero: none was stored, or From is NoOffset).
	FromTopicID TopicID
	// To is the offset to store: one past the batch's last record of the
	// partition.
	To int64
	// TopicID is the id of the topic the records were read from, to store
	// with To.
	TopicID TopicID
}

// Batch is what the runner hands to Write: the records of one commit
// interval and, per partition, the offsets they advance.
type Batch struct {
	// Group is the consumer group the offsets belong to (<app>-<name>).
	Group string
	// Records are in the order they were fetched: ascending offsets within
	// each partition, partitions interleaved.
	Records []Record
	// Ranges holds one entry per topic and partition that has records in
	// the batch, sorted by topic, then partition.
	Ranges []Range
}

// FencedError is the error a Sink returns when the compare-and-set of a
// partition's offset fails, or when another writer holds the partition's
// offset (or a row the batch writes) locked for longer than the sink is
// willing to wait. It wraps ErrFenced, and Cause if set.
type FencedError struct {
	Group     string
	Topic     string
	Partition int32
	// From is the offset the writer expected to find (NoOffset: none).
	From int64
	// Cause is what the sink saw instead of a plain mismatch, if anything:
	// a lock timeout, say. Nil when the stored offset simply differed.
	Cause error
}

func (e *FencedError) Error() string {
	from := fmt.Sprint(e.From)
	if e.From == NoOffset {
		from = "none"
	}
	msg := fmt.Sprintf("%v: group %s, %s/%d: expected stored offset %s", ErrFenced, e.Group, e.Topic, e.Partition, from)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns ErrFenced and Cause (if set).
func (e *FencedError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrFenced}
	}
	return []error{ErrFenced, e.Cause}
}
