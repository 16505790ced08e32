package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/sink"
)

// Test hooks, for examples/tosql's crash test. Each is off unless its
// environment variable is set.
//
//   - SLUICE_TEST_TRACE=1: print "write-begin N" and "write-end N ok|err" to
//     standard error around every Write, and hold the transaction open 20ms
//     half-way through each batch, so that a kill can be aimed inside a
//     write and its landing judged afterwards.
//   - SLUICE_TEST_STOP_BEFORE_WRITE=N: stop the process with SIGSTOP just
//     before its Nth Write, holding a batch: a zombie once the test resumes
//     it (SIGCONT) after its session timeout.
func withTestHooks(s sink.Sink, stderr io.Writer) sink.Sink {
	trace := os.Getenv("SLUICE_TEST_TRACE") != ""
	stopAt, _ := strconv.Atoi(os.Getenv("SLUICE_TEST_STOP_BEFORE_WRITE"))
	if !trace && stopAt <= 0 {
		return s
	}
	return &hookSink{Sink: s, trace: trace, stopAt: int64(stopAt), out: stderr}
}

type hookSink struct {
	sink.Sink
	trace  bool
	stopAt int64
	out    io.Writer
	mu     sync.Mutex // serializes trace lines
	n      atomic.Int64
}

func (h *hookSink) Write(ctx context.Context, b *sink.Batch) error {
	n := h.n.Add(1)
	if n == h.stopAt {
		// The kernel stops the other threads asynchronously: without
		// waiting for the SIGCONT, this goroutine could run on into the
		// write and be stopped inside the database transaction, holding
		// its locks (a different case, see docs/guarantees.md).
		cont := make(chan os.Signal, 1)
		signal.Notify(cont, syscall.SIGCONT)
		h.printf("stopping before write %d\n", n)
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		<-cont
		signal.Stop(cont)
		h.printf("resumed before write %d\n", n)
	}
	if !h.trace {
		return h.Sink.Write(ctx, b)
	}
	// Hold the transaction open half-way through the batch.
	mid := b.Records[len(b.Records)/2]
	ctx = context.WithValue(ctx, pauseKey{}, mid)
	h.printf("write-begin %d\n", n)
	err := h.Sink.Write(ctx, b)
	res := "ok"
	if err != nil {
		res = "err"
	}
	h.printf("write-end %d %s\n", n, res)
	return err
}

// printf writes a trace line, prefixed with the time.
func (h *hookSink) printf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, time.Now().Format("15:04:05.000 ")+format, args...)
}

type pauseKey struct{}

// pauseIfMarked sleeps when r is the record hookSink marked in ctx.
func pauseIfMarked(ctx context.Context, r sink.Record) {
	if m, ok := ctx.Value(pauseKey{}).(sink.Record); ok && m.Topic == r.Topic && m.Partition == r.Partition && m.Offset == r.Offset {
		time.Sleep(20 * time.Millisecond)
	}
}
