package sink

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTopicRecreated is wrapped by the *PositionError Run returns when the
// topic id the sink stored with a partition's offset is not the topic's id
// now: the topic was deleted and created again under the same name, and
// the stored offset belongs to the old topic. RestartRecreatedTopics makes
// the runner start such a partition at the new topic's beginning instead.
var ErrTopicRecreated = errors.New("sink: the topic was deleted and created again since the sink stored its offset")

// ErrOffsetAboveEnd is wrapped by the *PositionError Run returns when a
// partition's stored offset lies above the partition's high watermark:
// Kafka no longer has records the sink says it consumed. Resuming anywhere
// would lose records or write them twice, so the runner stops and the
// error says what to change.
var ErrOffsetAboveEnd = errors.New("sink: the stored offset is above the partition's high watermark")

// PositionError is the error Run returns when a partition's stored position
// does not fit the topic in Kafka. It wraps ErrTopicRecreated or
// ErrOffsetAboveEnd, and its message names the cause and the fix.
type PositionError struct {
	Group     string
	Topic     string
	Partition int32
	// Stored is what the sink stores for the partition.
	Stored Position
	// TopicID is the topic's id now (zero if the broker reports none).
	TopicID TopicID
	// HighWatermark is the partition's high watermark now.
	HighWatermark int64
	// Err is ErrTopicRecreated or ErrOffsetAboveEnd.
	Err error
}

func (e *PositionError) Error() string {
	where := fmt.Sprintf("sink: group %s, topic %s partition %d", e.Group, e.Topic, e.Partition)
	row := "(sqlsink: the partition's row in the offsets table)"
	switch {
	case errors.Is(e.Err, ErrTopicRecreated):
		return fmt.Sprintf("%s: the sink stores offset %d of topic id %s, but the topic's id is now %s (high watermark %d): "+
			"the topic was deleted and created again, and the stored offset belongs to the old topic. "+
			"To write the new topic from its beginning, run with sink.RestartRecreatedTopics(); "+
			"to start it elsewhere, delete the stored offset %s and set sink.StartOffset",
			where, e.Stored.Offset, e.Stored.TopicID, e.TopicID, e.HighWatermark, row)
	case e.Stored.TopicID.IsZero():
		return fmt.Sprintf("%s: the sink stores offset %d, above the partition's high watermark %d, with no topic id (stored before the sink kept ids): "+
			"most likely the topic was deleted and created again. To write the new topic from its beginning, run with sink.RestartRecreatedTopics(); "+
			"if the broker lost records instead, set the stored offset %s to where the partition should resume (at most %d)",
			where, e.Stored.Offset, e.HighWatermark, row, e.HighWatermark)
	default:
		return fmt.Sprintf("%s: the sink stores offset %d, above the partition's high watermark %d, of the same topic (id %s): "+
			"the broker lost records the sink had already consumed (an unclean leader election, a cluster restored from a backup), "+
			"or the offsets come from another cluster. The runner will not guess where to resume: "+
			"set the stored offset %s to where the partition should resume (at most %d), or delete it to start at sink.StartOffset",
			where, e.Stored.Offset, e.HighWatermark, e.Stored.TopicID, row, e.HighWatermark)
	}
}

// Unwrap returns ErrTopicRecreated or ErrOffsetAboveEnd.
func (e *PositionError) Unwrap() error { return e.Err }

// position is the runner's view of an owned partition.
type position struct {
	// from and fromID are what the sink stores: the compare-and-set's
	// expected values (from == NoOffset: nothing stored).
	from   int64
	fromID TopicID
	// id is the topic's id now, stored with the next batch's To.
	id TopicID
	// min is the lowest offset a fetched record may have (-1: any). A
	// record below it means the client reset the position (its offset was
	// out of range): the runner rejoins to check the partition again
	// rather than drop the record.
	min int64
}

// live is what the broker says about a partition when it is assigned.
type live struct {
	id            TopicID // zero if the broker reports no topic ids
	logStart, hwm int64
}

// resume decides where an assigned partition starts, from what the sink
// stores (ok: anything) and what the broker says now (l). Order matters:
// a changed topic id explains an offset above the high watermark, so it is
// checked first.
func (c *cfg) resume(topic string, p int32, st Position, ok bool, l live) (kgo.Offset, position, error) {
	if !ok {
		return c.startOffset, position{from: NoOffset, id: l.id, min: -1}, nil
	}
	if st.Offset < 0 {
		return kgo.Offset{}, position{}, fmt.Errorf("sink: the sink stores offset %d for %s/%d", st.Offset, topic, p)
	}
	restart := position{from: st.Offset, fromID: st.TopicID, id: l.id, min: -1}
	perr := &PositionError{Group: c.group(), Topic: topic, Partition: p, Stored: st, TopicID: l.id, HighWatermark: l.hwm}
	if !st.TopicID.IsZero() && !l.id.IsZero() && st.TopicID != l.id {
		if c.restartRecreated {
			return kgo.NewOffset().AtStart(), restart, nil
		}
		perr.Err = ErrTopicRecreated
		return kgo.Offset{}, position{}, perr
	}
	if st.Offset > l.hwm {
		if st.TopicID.IsZero() && c.restartRecreated {
			return kgo.NewOffset().AtStart(), restart, nil
		}
		perr.Err = ErrOffsetAboveEnd
		return kgo.Offset{}, position{}, perr
	}
	if st.Offset < l.logStart {
		// Retention deleted records the sink never got: they are lost
		// to it. StartOffset decides where to go on.
		return c.startOffset, position{from: st.Offset, fromID: st.TopicID, id: l.id, min: -1}, nil
	}
	return kgo.NewOffset().At(st.Offset).WithEpoch(-1), position{from: st.Offset, fromID: st.TopicID, id: l.id, min: st.Offset}, nil
}
