package processor

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestAtLeastOnceLeaderAckWarns: at-least-once with leader-only acks (which
// needs Idempotence(false)) is accepted, as Kafka Streams accepts acks=1
// under at_least_once, but New says in a warning that acknowledged records
// can then be lost, naming the option and what to use instead. The default
// at-least-once producer (acks=all, idempotent) draws no such warning.
func TestAtLeastOnceLeaderAckWarns(t *testing.T) {
	topo := wordcount(t, "lines", "counts")
	const warning = "at-least-once with processor.ProducerAcks(processor.LeaderAck) can lose acknowledged records"
	for _, tc := range []struct {
		name  string
		opts  []Opt
		warns []string // where the warning names, empty if none
	}{
		{"topology default", []Opt{WithGuarantee(AtLeastOnce), Idempotence(false), ProducerAcks(LeaderAck)}, []string{"topology default"}},
		{"one stage", []Opt{ForStage("by-word", WithGuarantee(AtLeastOnce), Idempotence(false), ProducerAcks(LeaderAck))}, []string{"stage by-word"}},
		{"at-least-once defaults", []Opt{WithGuarantee(AtLeastOnce)}, nil},
		{"at-least-once without idempotence, acks=all", []Opt{WithGuarantee(AtLeastOnce), Idempotence(false)}, nil},
		{"at-most-once (acks=1 by default)", []Opt{WithGuarantee(AtMostOnce)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			opts := append([]Opt{
				Brokers("127.0.0.1:9092"), ApplicationID("app"), StateDir(t.TempDir()),
				Logger(slog.New(slog.NewTextHandler(&buf, nil))),
			}, tc.opts...)
			if _, err := New(topo, opts...); err != nil {
				t.Fatalf("New: %v", err)
			}
			logged := buf.String()
			if got := strings.Count(logged, warning); got != len(tc.warns) {
				t.Fatalf("New logged the acks=1 warning %d times, want %d:\n%s", got, len(tc.warns), logged)
			}
			for _, where := range tc.warns {
				if !strings.Contains(logged, where+": "+warning) {
					t.Errorf("the warning does not name %q:\n%s", where, logged)
				}
			}
			if len(tc.warns) > 0 && !strings.Contains(logged, "processor.ProducerAcks(processor.AllAcks)") {
				t.Errorf("the warning does not say what to use instead:\n%s", logged)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
