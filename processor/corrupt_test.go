package processor

import (
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// corruptCheckpoint overwrites a task's checkpoint with bytes of an unknown
// version, writing Pebble directly (the key layout is state/keys.go's).
func corruptCheckpoint(t *testing.T, dir, stage string, partition int32) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{t}})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{0x02}
	key = binary.AppendUvarint(key, uint64(len(stage)))
	key = append(key, stage...)
	key = binary.BigEndian.AppendUint32(key, uint32(partition))
	if v, closer, err := db.Get(key); err != nil {
		t.Fatalf("no checkpoint at the expected key: %v", err)
	} else {
		if len(v) == 0 || v[0] != 1 {
			t.Fatalf("checkpoint %x does not start with version 1", v)
		}
		closer.Close()
	}
	if err := db.Set(key, []byte{99, 1, 2}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

type quietLogger struct{ t *testing.T }

func (quietLogger) Infof(string, ...any)           {}
func (l quietLogger) Errorf(f string, args ...any) { l.t.Logf(f, args...) }
func (l quietLogger) Fatalf(f string, args ...any) { l.t.Fatalf(f, args...) }
