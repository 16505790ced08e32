package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Version is the encoding version [Checkpoint.MarshalBinary] writes as the
// first byte, and the only one [Checkpoint.UnmarshalBinary] accepts.
const Version = 1

// ErrCorrupt is matched (with errors.Is) by the error
// [Checkpoint.UnmarshalBinary] returns when its input is not a checkpoint it
// can read: empty, an unknown version, truncated, trailing bytes, or keys out
// of order. The error's text says which.
var ErrCorrupt = errors.New("checkpoint: corrupt")

// Checkpoint is what one task's local state has applied.
type Checkpoint struct {
	// Stores holds one entry per state store of the task, keyed by store
	// name.
	Stores map[string]Store
	// Inputs maps each input topic of the task to the next offset to
	// consume, as of the transaction that wrote this checkpoint. It is for
	// information (debugging, tooling) only: the committed consumer group
	// offsets, not these, decide where consumption resumes.
	Inputs map[string]int64
	// Written is a wall time before which no changelog record at or
	// after the stores' Next offsets was written: the moment the
	// transaction whose records end at Next began to end, or, for a
	// checkpoint a restore writes part-way, the time of the checkpoint it
	// resumed from (or the moment a rebuild began). It is not the time the
	// checkpoint reached disk: stamping that would make the checkpoint look
	// younger than the records after it, and Plan, which compares it with
	// the changelog's delete.retention.ms, would trust it past the moment
	// compaction may have removed a tombstone among them. It is encoded
	// with nanosecond precision and decodes in UTC, without a monotonic
	// clock reading.
	Written time.Time
}

// Store is the changelog position of one state store.
type Store struct {
	// TopicID is the Kafka topic id of the store's changelog topic, or all
	// zeros when unknown. A different id on restore means the topic was
	// deleted and recreated.
	TopicID [16]byte
	// Next is the next changelog offset to read on restore: every record
	// below it is applied to the local state.
	Next int64
}

// MarshalBinary encodes c: version byte 1, then the stores, the inputs and
// the write time. Map entries are written in key order, so equal checkpoints
// encode to equal bytes. It never fails; the error is there to satisfy
// encoding.BinaryMarshaler.
//
// Layout after the version byte (uvarint = binary.PutUvarint, varint =
// binary.PutVarint):
//
//	uvarint(len(Stores)), then per store: uvarint(len(name)) name TopicID[16] varint(Next)
//	uvarint(len(Inputs)), then per input: uvarint(len(topic)) topic varint(offset)
//	varint(Written.Unix()) uvarint(Written.Nanosecond())
func (c Checkpoint) MarshalBinary() ([]byte, error) {
	n := 1 + binary.MaxVarintLen64*2 + binary.MaxVarintLen64 + binary.MaxVarintLen32
	for name := range c.Stores {
		n += binary.MaxVarintLen64 + len(name) + 16 + binary.MaxVarintLen64
	}
	for topic := range c.Inputs {
		n += binary.MaxVarintLen64 + len(topic) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, Version)

	b = binary.AppendUvarint(b, uint64(len(c.Stores)))
	for _, name := range slices.Sorted(maps.Keys(c.Stores)) {
		s := c.Stores[name]
		b = appendString(b, name)
		b = append(b, s.TopicID[:]...)
		b = binary.AppendVarint(b, s.Next)
	}

	b = binary.AppendUvarint(b, uint64(len(c.Inputs)))
	for _, topic := range slices.Sorted(maps.Keys(c.Inputs)) {
		b = appendString(b, topic)
		b = binary.AppendVarint(b, c.Inputs[topic])
	}

	b = binary.AppendVarint(b, c.Written.Unix())
	b = binary.AppendUvarint(b, uint64(c.Written.Nanosecond()))
	return b, nil
}

// UnmarshalBinary decodes data written by [Checkpoint.MarshalBinary] into c,
// replacing all of c's fields. Empty maps decode as nil, and Written decodes
// in UTC (the zero time stays the zero time).
//
// Input that is not a valid version-1 checkpoint returns an error matching
// [ErrCorrupt] that names the problem and the byte offset, and leaves c
// unchanged. UnmarshalBinary does not keep data.
func (c *Checkpoint) UnmarshalBinary(data []byte) error {
	d := decoder{data: data}
	if len(data) == 0 {
		return d.fail("empty input")
	}
	if v := data[0]; v != Version {
		return d.fail(fmt.Sprintf("unknown version %d (this build reads version %d)", v, Version))
	}
	d.off = 1

	var out Checkpoint
	// Each store entry takes at least 1+16+1 bytes, each input at least 1+1:
	// the bound keeps a corrupt count from allocating a huge map.
	nStores, err := d.count("store count", 18)
	if err != nil {
		return err
	}
	if nStores > 0 {
		out.Stores = make(map[string]Store, nStores)
	}
	prev := ""
	for i := range nStores {
		name, err := d.string("store name")
		if err != nil {
			return err
		}
		if i > 0 && name <= prev {
			return d.fail(fmt.Sprintf("store name %q is not after %q (keys must be sorted and unique)", name, prev))
		}
		prev = name
		var s Store
		id, err := d.bytes("topic id of store "+name, 16)
		if err != nil {
			return err
		}
		copy(s.TopicID[:], id)
		if s.Next, err = d.varint("next offset of store " + name); err != nil {
			return err
		}
		out.Stores[name] = s
	}

	nInputs, err := d.count("input count", 2)
	if err != nil {
		return err
	}
	if nInputs > 0 {
		out.Inputs = make(map[string]int64, nInputs)
	}
	for i := range nInputs {
		topic, err := d.string("input topic")
		if err != nil {
			return err
		}
		if i > 0 && topic <= prev {
			return d.fail(fmt.Sprintf("input topic %q is not after %q (keys must be sorted and unique)", topic, prev))
		}
		prev = topic
		if out.Inputs[topic], err = d.varint("offset of input " + topic); err != nil {
			return err
		}
	}

	sec, err := d.varint("write time seconds")
	if err != nil {
		return err
	}
	nsec, err := d.uvarint("write time nanoseconds")
	if err != nil {
		return err
	}
	if nsec >= uint64(time.Second) {
		return d.fail(fmt.Sprintf("write time nanoseconds %d out of range", nsec))
	}
	out.Written = time.Unix(sec, int64(nsec)).UTC()

	if d.off != len(d.data) {
		return d.fail(fmt.Sprintf("%d trailing bytes", len(d.data)-d.off))
	}
	*c = out
	return nil
}

// uvarintLen returns the length of the shortest uvarint encoding of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the fields of an encoded checkpoint, turning every problem
// into an ErrCorrupt error that names the field and offset.
type decoder struct {
	data []byte
	off  int
}

func (d *decoder) fail(what string) error {
	return fmt.Errorf("%w: %s (at byte %d of %d)", ErrCorrupt, what, d.off, len(d.data))
}

func (d *decoder) uvarint(field string) (uint64, error) {
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		return 0, d.fail("truncated or invalid " + field)
	}
	// Only the shortest encoding is accepted, so that a checkpoint has
	// exactly one encoding.
	if n != uvarintLen(v) {
		return 0, d.fail("non-minimal encoding of " + field)
	}
	d.off += n
	return v, nil
}

func (d *decoder) varint(field string) (int64, error) {
	v, n := binary.Varint(d.data[d.off:])
	if n <= 0 {
		return 0, d.fail("truncated or invalid " + field)
	}
	if ux := uint64(v) << 1; n != uvarintLen(ux^uint64(v>>63)) {
		return 0, d.fail("non-minimal encoding of " + field)
	}
	d.off += n
	return v, nil
}

// count reads an entry count and checks that the remaining input could hold
// that many entries of at least minSize bytes each.
func (d *decoder) count(field string, minSize int) (int, error) {
	v, err := d.uvarint(field)
	if err != nil {
		return 0, err
	}
	if v > uint64((len(d.data)-d.off)/minSize) {
		return 0, d.fail(fmt.Sprintf("%s %d does not fit in the remaining %d bytes", field, v, len(d.data)-d.off))
	}
	return int(v), nil
}

func (d *decoder) bytes(field string, n int) ([]byte, error) {
	if len(d.data)-d.off < n {
		return nil, d.fail(fmt.Sprintf("truncated %s: want %d bytes, have %d", field, n, len(d.data)-d.off))
	}
	b := d.data[d.off : d.off+n]
	d.off += n
	return b, nil
}

func (d *decoder) string(field string) (string, error) {
	n, err := d.uvarint("length of " + field)
	if err != nil {
		return "", err
	}
	if n > uint64(len(d.data)-d.off) {
		return "", d.fail(fmt.Sprintf("truncated %s: want %d bytes, have %d", field, n, len(d.data)-d.off))
	}
	b, _ := d.bytes(field, int(n))
	return string(b), nil
}
