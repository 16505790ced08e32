package state

import (
	"encoding/binary"
)

// Key layout. Every task's stores and checkpoints share one Pebble DB; the
// first byte of a key says what it is.
//
//	store data:      0x01 | uvarint(len(store)) | store | partition (4 bytes, big-endian) | user key
//	task checkpoint: 0x02 | uvarint(len(stage)) | stage | partition (4 bytes, big-endian)
//
// The length prefix keeps store "a" apart from store "ab" (their prefixes
// differ in the length byte), and the fixed-width partition keeps partition 1
// apart from partition 10. So each (store, partition) is one contiguous key
// range, [dataPrefix, prefixEnd(dataPrefix)), that a scan can bound and a
// wipe can delete with a single DeleteRange. The partition is written as the
// uint32 of its bits, so even a negative partition has its own range.
//
// INVARIANT: no data key has a checkpoint key as a prefix or vice versa (the
// kind byte differs), and no (store, partition) range overlaps another.
const (
	kindData       byte = 0x01
	kindCheckpoint byte = 0x02
)

// appendDataPrefix appends the key prefix of store's partition to b.
func appendDataPrefix(b []byte, store string, partition int32) []byte {
	b = append(b, kindData)
	b = binary.AppendUvarint(b, uint64(len(store)))
	b = append(b, store...)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

// checkpointKey returns the key of task's checkpoint.
func checkpointKey(task TaskID) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(task.Stage)+4)
	b = append(b, kindCheckpoint)
	b = binary.AppendUvarint(b, uint64(len(task.Stage)))
	b = append(b, task.Stage...)
	return binary.BigEndian.AppendUint32(b, uint32(task.Partition))
}

// prefixEnd returns the smallest key greater than every key that starts with
// prefix, in a new slice.
func prefixEnd(prefix []byte) []byte {
	return appendPrefixEnd(nil, prefix)
}

// appendPrefixEnd appends to dst the smallest key greater than every key that
// starts with prefix. The prefixes built here always contain a byte below
// 0xff (the kind byte), so the appended key is never empty.
func appendPrefixEnd(dst, prefix []byte) []byte {
	start := len(dst)
	dst = append(dst, prefix...)
	for i := len(dst) - 1; i >= start; i-- {
		dst[i]++
		if dst[i] != 0 {
			return dst[:i+1]
		}
	}
	return dst[:start] // unreachable: see above
}
