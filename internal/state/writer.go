package state

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

// Writer writes store data and checkpoints without reading them back, for
// restoring a task from its changelog. It uses a plain (non-indexed) Pebble
// batch, which is cheaper than a Txn's indexed one.
//
// Changes reach the DB at Apply, all together. A restore applies every few
// MiB (see Len), each time with a checkpoint holding the changelog offset
// reached, so that a crash mid-restore resumes instead of starting over.
//
// A Writer is not safe for concurrent use. End it with Discard.
type Writer struct {
	db *DB
	b  *pebble.Batch // nil once discarded
	// buf holds the key being built; the batch copies it.
	buf []byte
}

// NewWriter returns an empty Writer. On a closed DB it returns a Writer whose
// every method fails with [ErrClosed].
func (db *DB) NewWriter() *Writer {
	w := &Writer{db: db}
	if !db.closed.Load() {
		w.b = db.pdb.NewBatch()
	}
	return w
}

func (w *Writer) check() error {
	if w.db.closed.Load() {
		return ErrClosed
	}
	if w.b == nil {
		return ErrDone
	}
	return nil
}

// Put sets key to value in the store's partition.
func (w *Writer) Put(store string, partition int32, key, value []byte) error {
	if err := w.check(); err != nil {
		return err
	}
	w.buf = append(appendDataPrefix(w.buf[:0], store, partition), key...)
	if err := w.b.Set(w.buf, value, nil); err != nil {
		return fmt.Errorf("state: restore put to store %q partition %d: %w", store, partition, err)
	}
	return nil
}

// Delete removes key from the store's partition. Deleting a missing key is
// not an error.
func (w *Writer) Delete(store string, partition int32, key []byte) error {
	if err := w.check(); err != nil {
		return err
	}
	w.buf = append(appendDataPrefix(w.buf[:0], store, partition), key...)
	if err := w.b.Delete(w.buf, nil); err != nil {
		return fmt.Errorf("state: restore delete from store %q partition %d: %w", store, partition, err)
	}
	return nil
}

// SetCheckpoint records task's checkpoint; Apply writes it in the same batch
// as the data written before it.
func (w *Writer) SetCheckpoint(task TaskID, cp checkpoint.Checkpoint) error {
	if err := w.check(); err != nil {
		return err
	}
	v, err := cp.MarshalBinary()
	if err != nil {
		return fmt.Errorf("state: encode checkpoint of task %s: %w", task, err)
	}
	if err := w.b.Set(checkpointKey(task), v, nil); err != nil {
		return fmt.Errorf("state: set checkpoint of task %s: %w", task, err)
	}
	return nil
}

// Len returns the size in bytes of the changes waiting for Apply (0 when
// there are none), for flushing every few MiB.
func (w *Writer) Len() int {
	if w.b == nil || w.b.Empty() {
		return 0
	}
	return w.b.Len()
}

// Apply writes the changes made since the last Apply to the DB in one Pebble
// batch, without waiting for the disk (pebble.NoSync; see Txn.Apply for why
// that is safe), and leaves the Writer empty and ready for more. An error
// means the batch may or may not be in the DB; the Writer is then empty too.
func (w *Writer) Apply() error {
	if err := w.check(); err != nil {
		return err
	}
	if w.b.Empty() {
		return nil
	}
	err := w.b.Commit(pebble.NoSync)
	// A committed batch is reset, not reused in place: Reset takes care of a
	// commit pipeline that still refers to the old data.
	w.b.Reset()
	if err != nil {
		return fmt.Errorf("state: apply restore batch: %w", err)
	}
	return nil
}

// Discard drops the changes made since the last Apply and ends the Writer.
// It is safe to call more than once.
func (w *Writer) Discard() {
	if w.b == nil {
		return
	}
	b := w.b
	w.b = nil
	if !w.db.closed.Load() {
		_ = b.Close()
	}
}
