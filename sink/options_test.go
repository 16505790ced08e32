package sink_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/sink"
)

func TestNewRejectsBadConfig(t *testing.T) {
	base := []sink.Opt{sink.Brokers("localhost:9092"), sink.ApplicationID("app"), sink.Topics("in")}
	for _, tc := range []struct {
		name string
		opts []sink.Opt
		want string // a fragment of the message
	}{
		{"no brokers", []sink.Opt{sink.ApplicationID("app"), sink.Topics("in")}, "no brokers"},
		{"bad broker", []sink.Opt{sink.Brokers("localhost"), sink.ApplicationID("app"), sink.Topics("in")}, "not host:port"},
		{"no app", []sink.Opt{sink.Brokers("h:1"), sink.Topics("in")}, "no application id"},
		{"bad app", []sink.Opt{sink.Brokers("h:1"), sink.ApplicationID("a b"), sink.Topics("in")}, "application id"},
		{"no topics", []sink.Opt{sink.Brokers("h:1"), sink.ApplicationID("app")}, "no input topics"},
		{"topic twice", append(base, sink.Topics("in")), "given twice"},
		{"bad name", append(base, sink.Name("")), "name"},
		{"bad instance", append(base, sink.InstanceID("x/y")), "instance id"},
		{"interval", append(base, sink.CommitInterval(0)), "commit interval"},
		{"max records", append(base, sink.MaxRecordsPerBatch(0)), "max records"},
		{"attempts", append(base, sink.WriteAttempts(0)), "write attempts"},
		{"heartbeat", append(base, sink.HeartbeatInterval(time.Minute)), "heartbeat"},
		{"write timeout vs rebalance", append(base, sink.WriteTimeout(time.Minute)), "rebalance timeout"},
		// Every attempt holds the rebalance back: 3 × 25s > 60s, although
		// one attempt fits.
		{"attempts times write timeout vs rebalance", append(base, sink.WriteTimeout(25*time.Second)), "lower sink.WriteAttempts or sink.WriteTimeout"},
		{"attempts vs rebalance", append(base, sink.WriteTimeout(time.Second), sink.WriteAttempts(40), sink.RebalanceTimeout(50*time.Second)), "40 write attempts"},
		{"huge attempts", append(base, sink.WriteAttempts(1<<40)), "raise sink.RebalanceTimeout"},
		{"logger", append(base, sink.Logger(nil)), "logger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sink.New(newMemSink(), tc.opts...)
			if !errors.Is(err, sink.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := sink.New(nil, base...); !errors.Is(err, sink.ErrConfig) {
		t.Errorf("New(nil sink) = %v, want ErrConfig", err)
	}
	r, err := sink.New(newMemSink(), append(base, sink.Name("orders"))...)
	if err != nil {
		t.Fatal(err)
	}
	if r.Group() != "app-orders" {
		t.Errorf("Group() = %q, want app-orders", r.Group())
	}
}

func TestFencedError(t *testing.T) {
	err := error(&sink.FencedError{Group: "g", Topic: "t", Partition: 3, From: sink.NoOffset})
	if !errors.Is(err, sink.ErrFenced) {
		t.Errorf("FencedError does not wrap ErrFenced")
	}
	if !strings.Contains(err.Error(), "t/3") || !strings.Contains(err.Error(), "none") {
		t.Errorf("message %q lacks the partition or the expected offset", err)
	}
}
