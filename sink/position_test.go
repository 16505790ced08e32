package sink_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
)

// topicID returns topic's id as the broker reports it.
func topicID(t *testing.T, brokers []string, topic string) sink.TopicID {
	t.Helper()
	id, err := tryTopicID(t, brokers, topic)
	if err != nil {
		t.Fatalf("describing %s: %v", topic, err)
	}
	return id
}

func tryTopicID(t *testing.T, brokers []string, topic string) (sink.TopicID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tds, err := testbroker.Admin(t, brokers).ListTopics(ctx, topic)
	if err == nil {
		err = tds.Error()
	}
	return sink.TopicID(tds[topic].ID), err
}

// recreateTopic deletes topic and creates it again (with a new id), waiting
// until the broker reports the new id.
func recreateTopic(t *testing.T, brokers []string, topic string, partitions int32) {
	t.Helper()
	old := topicID(t, brokers, topic)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := testbroker.Admin(t, brokers)
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		t.Fatalf("deleting %s: %v", topic, err)
	}
	for {
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("creating %s again: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond) // the deletion may still be under way
	}
	// A real broker takes a while to show the new topic in its metadata.
	for {
		id, err := tryTopicID(t, brokers, topic)
		if err == nil && id != old && !id.IsZero() {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: still the old id or none (%v)", topic, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runUntilError runs r until Run returns, for at most timeout.
func runUntilError(t *testing.T, r *sink.Runner, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cancel()
		err := <-done
		t.Fatalf("Run did not return within %v (metrics %+v; Run then returned %v)", timeout, r.Metrics(), err)
		return nil
	}
}

// writtenSince returns, per partition and offset, how often the batches
// committed from the n-th on wrote it.
func (m *memSink) writtenSince(n int) map[int32]map[int64]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]map[int64]int{}
	for _, b := range m.batches[n:] {
		for _, r := range b.Records {
			if out[r.Partition] == nil {
				out[r.Partition] = map[int64]int{}
			}
			out[r.Partition][r.Offset]++
		}
	}
	return out
}

// waitPosition waits until the sink stores want for partition 0.
func waitPosition(t *testing.T, m *memSink, group, topic string, want sink.Position, runErr <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		pos, _ := m.position(group, topic, 0)
		if pos == want {
			return
		}
		select {
		case err := <-runErr:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink stores %+v, want %+v", pos, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *memSink) committed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.batches)
}

// A topic deleted and created again under the same name (issue 13, item 2)
// must not be consumed from the old topic's offset: with the new topic
// below it, franz-go reset the position and the runner dropped every
// record below the stored offset; with the new topic past it, the runner
// skipped its first records. Neither said anything. Now Run fails with
// ErrTopicRecreated, naming the fix, and with RestartRecreatedTopics the
// new topic is written from its beginning, each record once.
func TestTopicRecreated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after int // records in the new topic
	}{
		{"new topic below the stored offset", 10},
		{"new topic past the stored offset", 110},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := testbroker.Brokers(t)
			app := testbroker.Unique(t, "sink")
			topic := app + "-in"
			group := app + "-sink"
			testbroker.CreateTopic(t, brokers, topic, 1, nil)
			produceN(t, brokers, topic, 0, 100)
			oldID := topicID(t, brokers, topic)

			m := newMemSink()
			r, err := sink.New(m, testOpts(brokers, app, topic)...)
			if err != nil {
				t.Fatal(err)
			}
			errs, stop := startRunner(t, r)
			waitStored(t, m, group, topic, map[int32]int64{0: 100}, time.Minute, errs)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if pos, _ := m.position(group, topic, 0); pos != (sink.Position{Offset: 100, TopicID: oldID}) {
				t.Fatalf("stored position %+v, want offset 100 of topic id %s", pos, oldID)
			}

			recreateTopic(t, brokers, topic, 1)
			newID := topicID(t, brokers, topic)
			produceN(t, brokers, topic, 0, tc.after)
			before := m.committed()

			r, err = sink.New(m, testOpts(brokers, app, topic)...)
			if err != nil {
				t.Fatal(err)
			}
			err = runUntilError(t, r, 30*time.Second)
			var perr *sink.PositionError
			if !errors.Is(err, sink.ErrTopicRecreated) || !errors.As(err, &perr) {
				t.Fatalf("Run = %v, want a PositionError wrapping ErrTopicRecreated", err)
			}
			if perr.Topic != topic || perr.Partition != 0 || perr.Stored.TopicID != oldID || perr.TopicID != newID || perr.Stored.Offset != 100 {
				t.Errorf("PositionError %+v: want %s/0, stored 100 of %s, now %s", perr, topic, oldID, newID)
			}
			for _, want := range []string{"deleted and created again", "sink.RestartRecreatedTopics()", topic} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
			if n := m.committed(); n != before {
				t.Errorf("%d batches written from the recreated topic before failing", n-before)
			}

			// Opting in: the new topic from its beginning, each record once.
			r, err = sink.New(m, append(testOpts(brokers, app, topic), sink.RestartRecreatedTopics())...)
			if err != nil {
				t.Fatal(err)
			}
			errs, stop = startRunner(t, r)
			waitPosition(t, m, group, topic, sink.Position{Offset: int64(tc.after), TopicID: newID}, errs)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			w := m.writtenSince(before)
			for o := range int64(tc.after) {
				if w[0][o] != 1 {
					t.Errorf("new topic's offset %d written %d times, want once", o, w[0][o])
				}
			}
			if met := r.Metrics(); met.Records != int64(tc.after) || met.Stale != 0 {
				t.Errorf("metrics %+v: want %d records, none stale", met, tc.after)
			}
		})
	}
}

// A stored offset above the high watermark of the same topic (the broker
// lost records) is an error that says so; without a stored topic id (a
// position stored before ids were kept) the error says the topic was
// probably recreated, and RestartRecreatedTopics takes it for that. A
// position without an id inside the topic is trusted, and the first write
// stores the topic's id with it.
func TestOffsetAboveHighWatermark(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	group := app + "-sink"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 10)
	id := topicID(t, brokers, topic)

	for _, tc := range []struct {
		name   string
		stored sink.Position
		want   string
	}{
		{"same topic", sink.Position{Offset: 100, TopicID: id}, "the broker lost records"},
		{"no stored id", sink.Position{Offset: 100}, "sink.RestartRecreatedTopics()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemSink()
			m.setPosition(group, topic, 0, tc.stored)
			r, err := sink.New(m, testOpts(brokers, app, topic)...)
			if err != nil {
				t.Fatal(err)
			}
			err = runUntilError(t, r, 30*time.Second)
			var perr *sink.PositionError
			if !errors.Is(err, sink.ErrOffsetAboveEnd) || !errors.As(err, &perr) || perr.HighWatermark != 10 || perr.Stored != tc.stored {
				t.Fatalf("Run = %v, want a PositionError wrapping ErrOffsetAboveEnd, high watermark 10", err)
			}
			for _, want := range []string{tc.want, "above the partition's high watermark 10", "offset 100"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
			if m.committed() != 0 {
				t.Errorf("batches written")
			}
		})
	}

	t.Run("no stored id, restarting recreated topics", func(t *testing.T) {
		m := newMemSink()
		m.setPosition(group, topic, 0, sink.Position{Offset: 100})
		r, err := sink.New(m, append(testOpts(brokers, app, topic), sink.RestartRecreatedTopics())...)
		if err != nil {
			t.Fatal(err)
		}
		errs, stop := startRunner(t, r)
		waitPosition(t, m, group, topic, sink.Position{Offset: 10, TopicID: id}, errs)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		checkExactlyOnce(t, m, nil, map[int32]int64{0: 10})
	})

	t.Run("no stored id, within the topic", func(t *testing.T) {
		m := newMemSink()
		m.setPosition(group, topic, 0, sink.Position{Offset: 4})
		r, err := sink.New(m, testOpts(brokers, app, topic)...)
		if err != nil {
			t.Fatal(err)
		}
		errs, stop := startRunner(t, r)
		waitStored(t, m, group, topic, map[int32]int64{0: 10}, time.Minute, errs)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		checkExactlyOnce(t, m, map[int32]int64{0: 4}, map[int32]int64{0: 10})
		if pos, _ := m.position(group, topic, 0); pos != (sink.Position{Offset: 10, TopicID: id}) {
			t.Errorf("stored position %+v, want offset 10 of %s", pos, id)
		}
	})
}

// A topic deleted and created again while the runner consumes it: the
// client's position is reset (out of range) and records below the stored
// offset arrive. The runner must not drop them silently; it rejoins, finds
// the new topic id, and Run fails with ErrTopicRecreated.
func TestTopicRecreatedWhileRunning(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	group := app + "-sink"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 50)

	m := newMemSink()
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitStored(t, m, group, topic, map[int32]int64{0: 50}, time.Minute, done)
	before := m.committed()
	recreateTopic(t, brokers, topic, 1)
	produceN(t, brokers, topic, 0, 20)
	select {
	case err := <-done:
		if !errors.Is(err, sink.ErrTopicRecreated) {
			t.Fatalf("Run = %v, want ErrTopicRecreated", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("Run still running after the topic was recreated (metrics %+v)", r.Metrics())
	}
	if n := m.committed(); n != before {
		t.Errorf("%d batches written from the recreated topic", n-before)
	}
	if met := r.Metrics(); met.Stale != 0 {
		t.Errorf("metrics %+v: records dropped as stale", met)
	}
}

// A stored offset below the log start offset (retention deleted records
// the sink never got) goes on at StartOffset: the records still there are
// written once, and the lost ones are not waited for.
func TestOffsetBelowLogStart(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	group := app + "-sink"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 10)
	id := topicID(t, brokers, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var to kadm.Offsets
	to.AddOffset(topic, 0, 6, -1)
	resp, err := testbroker.Admin(t, brokers).DeleteRecords(ctx, to)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("deleting records: %v", err)
	}

	m := newMemSink()
	m.setPosition(group, topic, 0, sink.Position{Offset: 2, TopicID: id})
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	waitPosition(t, m, group, topic, sink.Position{Offset: 10, TopicID: id}, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.checkBatches(t, map[int32]int64{0: 2})
	w := m.written()
	for o := range int64(10) {
		if want := map[bool]int{true: 1}[o >= 6]; w[0][o] != want {
			t.Errorf("offset %d written %d times, want %d", o, w[0][o], want)
		}
	}
}

// A record below the stored offset means franz-go reset the position (an
// out-of-range fetch after adjust had checked the offset). The runner does
// not drop it silently: it rejoins, checks the partition again, and resumes
// at the stored offset, once (no rejoin loop), writing nothing twice.
// kfake only: its first fetch of the partition is answered with
// OFFSET_OUT_OF_RANGE, which a real broker cannot be made to send.
func TestPositionResetRejoins(t *testing.T) {
	if testbroker.Real() {
		t.Skip("needs kfake's fetch control")
	}
	kf := testbroker.NewKfake(t)
	brokers := kf.ListenAddrs()
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	group := app + "-sink"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 10)
	id := topicID(t, brokers, topic)

	var fired atomic.Bool
	kf.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.FetchRequest)
		hit := false
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				hit = hit || rp.FetchOffset == 5
			}
		}
		if !hit || fired.Load() {
			kf.KeepControl()
			return nil, nil, false
		}
		fired.Store(true)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	m := newMemSink()
	m.setPosition(group, topic, 0, sink.Position{Offset: 5, TopicID: id})
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	waitPosition(t, m, group, topic, sink.Position{Offset: 10, TopicID: id}, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("the out-of-range fetch was never injected")
	}
	m.checkBatches(t, map[int32]int64{0: 5})
	checkExactlyOnce(t, m, map[int32]int64{0: 5}, map[int32]int64{0: 10})
	if met := r.Metrics(); met.Restarts != 1 || met.Stale != 0 || met.Records != 5 {
		t.Errorf("metrics %+v: want 1 rejoin, nothing stale, 5 records", met)
	}
}
