package stream

import (
	"fmt"
	"strconv"

	"github.com/sluicehq/sluice/internal/exec"
)

// Header is a Kafka record header.
type Header = exec.Header

// Handle is a Process function's access to the current task while it
// processes one record: its stores (Get, Put, Delete, Scan, Range,
// ScanPrefix) and its outputs (Emit).
//
// A Handle is valid only during the call it was passed to: do not keep it or
// hand it to another goroutine. Once the input record has been processed,
// every use returns an error.
//
// Internally the Handle is the per-call context of a stage's Program: one is
// allocated per input record and threaded through every compiled operator.
type Handle struct {
	task exec.Task
	rec  *exec.Record
	prog *program
	// proc is the Process operator running now, whose Uses and EmitsTo
	// options decide which stores and outputs it may use; nil outside
	// Process functions.
	proc *node
	// hdrs is the copy of rec.Headers that outputs carry, made on first use:
	// the runtime keeps an Output's headers until the transaction ends, but
	// rec.Headers only until the Program call returns.
	hdrs     []exec.Header
	hdrsCopy bool
}

// program is what Stage.Program compiles for one application id.
type program struct {
	stage *Stage
	// internal holds, by node id, the physical name of the internal topic a
	// repartitioning operator writes.
	internal []string
}

// headers returns the headers outputs carry: a copy of the input record's.
func (h *Handle) headers() []exec.Header {
	if !h.hdrsCopy {
		h.hdrsCopy = true
		if len(h.rec.Headers) > 0 {
			h.hdrs = make([]exec.Header, len(h.rec.Headers))
			for i, hd := range h.rec.Headers {
				h.hdrs[i] = exec.Header{Key: hd.Key, Value: append([]byte(nil), hd.Value...)}
			}
		}
	}
	return h.hdrs
}

// emit produces a record to the physical topic with the input record's
// timestamp and headers, letting the runtime pick the partition from the key.
func (h *Handle) emit(topic string, k, v []byte) error {
	return h.task.Emit(exec.Output{
		Topic:     topic,
		Partition: exec.AnyPartition,
		Key:       k,
		Value:     v,
		Headers:   h.headers(),
		Timestamp: h.rec.Timestamp,
	})
}

// taskStore returns the task's store st.
func (h *Handle) taskStore(st *storeDecl) (exec.Store, error) {
	s := h.task.Store(st.name)
	if s == nil {
		return nil, fmt.Errorf("stream: the runtime has no store %q in task %d of stage %q, which declares it",
			st.name, h.task.Partition(), h.prog.stage.Name)
	}
	return s, nil
}

func (h *Handle) codecError(op, part, target, operator string, err error) error {
	return &CodecError{Op: op, Part: part, Target: target, Operator: operator,
		Topic: h.rec.Topic, Partition: h.rec.Partition, Offset: h.rec.Offset, Err: err}
}

// errHandleDone is returned when a Handle is used after its call returned.
func errHandleDone() error {
	return fmt.Errorf("stream: Handle used after the record it was passed for was processed; use a Handle only during its call")
}

func quote(s string) string { return strconv.Quote(s) }
