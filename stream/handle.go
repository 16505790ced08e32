package stream

import (
	"bytes"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

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
	// hdrs are the headers of the record flowing through the operators now
	// and of what they emit: a copy of rec.Headers made on first use (the
	// runtime keeps an Output's headers until the transaction ends, but
	// rec.Headers only until the Program call returns), or the headers an
	// operator upstream set (WithHeaders). Operators that change them
	// restore them when their downstream call returns, so each path of a
	// fan-out sees its own.
	//
	hdrs    []exec.Header
	hdrsSet bool
	// ts is the timestamp of the record flowing through the operators now
	// and of what they emit: the input record's (or the one its Source
	// extracted), a stream-stream join's result's, a released window's, a
	// timer's now. Operators that change it restore it when their
	// downstream call returns, as for hdrs.
	ts time.Time
	// tm is the task's stream time as this call sees it.
	tm taskTime
	// arena holds output encodings (encoder); nil: none, encode with the
	// codec (timers).
	arena *arena
}

// program is what a Stage compiles for one application id (compileProgram,
// compilePunctuator).
type program struct {
	stage *Stage
	app   string
	// internal holds the physical names of the internal topics the stage
	// writes (repartition and loop topics).
	internal map[*topicRef]string
	// hooks run when a task's stream time advances, in order; wall are
	// the wall-clock timers (see compileTimers).
	hooks []timeHook
	wall  []wallTimer
	// scratch is what a Program call reuses from the previous one, taken
	// with an atomic swap so that concurrent calls (the runtime may run
	// tasks in parallel) each get their own: a call that finds none makes
	// one.
	scratch atomic.Pointer[scratch]
	// reuseHandle: no operator of the stage hands its Handle to user code
	// (Process, ProcessTo), so no one can keep it past its call, and the
	// Program reuses it (scratch.h) instead of allocating one per record.
	reuseHandle bool
}

// scratch is a Program call's reusable memory.
type scratch struct {
	h     Handle
	arena arena
}

// handle returns the Handle of a Program call on t and r, with the scratch
// it works in, which the caller hands back with done.
func (p *program) handle(t exec.Task, r *exec.Record) (*Handle, *scratch) {
	sc := p.scratch.Swap(nil)
	if sc == nil {
		sc = new(scratch)
	}
	h := &sc.h
	if !p.reuseHandle {
		h = new(Handle)
	}
	*h = Handle{task: t, rec: r, prog: p, ts: r.Timestamp, arena: &sc.arena}
	return h, sc
}

// done ends h's call: a Handle kept by a user function stops working
// (errHandleDone), and nothing of the call stays reachable from the scratch
// but the arena.
func (p *program) done(h *Handle, sc *scratch) {
	if h == &sc.h {
		*h = Handle{}
	} else {
		h.task = nil
	}
	p.scratch.Store(sc)
}

// topic returns the physical name of t.
func (p *program) topic(t *topicRef) string {
	if !t.internal {
		return t.name
	}
	if name, ok := p.internal[t]; ok {
		return name
	}
	return t.ref().TopicName(p.app)
}

// headers returns the headers outputs carry now (see Handle.hdrs).
func (h *Handle) headers() []exec.Header {
	if !h.hdrsSet {
		h.hdrsSet = true
		h.hdrs = cloneHeaders(h.rec.Headers)
	}
	return h.hdrs
}

// viewHeaders returns the current headers without copying the input
// record's: for reading during a call.
func (h *Handle) viewHeaders() []exec.Header {
	if !h.hdrsSet {
		return h.rec.Headers
	}
	return h.hdrs
}

// withHeaders runs fn with the current headers set to hs and restores them.
func (h *Handle) withHeaders(hs []exec.Header, fn func() error) error {
	prev, prevSet := h.hdrs, h.hdrsSet
	h.hdrs, h.hdrsSet = hs, true
	err := fn()
	h.hdrs, h.hdrsSet = prev, prevSet
	return err
}

func cloneHeaders(hs []exec.Header) []exec.Header {
	if len(hs) == 0 {
		return nil
	}
	c := make([]exec.Header, len(hs))
	for i, hd := range hs {
		c[i] = exec.Header{Key: hd.Key, Value: bytes.Clone(hd.Value)}
	}
	return c
}

// emit produces a record to the physical topic with the current timestamp
// (see Handle.ts) and the current headers, letting the runtime pick the
// partition from the key. A nil v is a tombstone.
func (h *Handle) emit(topic string, k, v []byte) error {
	return h.task.Emit(exec.Output{
		Topic:     topic,
		Partition: exec.AnyPartition,
		Key:       k,
		Value:     v,
		Headers:   h.headers(),
		Timestamp: h.ts,
	})
}

// Partition returns the partition of the task the Handle works for: the
// input partition of the current record, or, in a timer (Every), the task
// whose timer fires.
func (h *Handle) Partition() int32 {
	if h == nil || h.task == nil {
		return -1
	}
	return h.task.Partition()
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
