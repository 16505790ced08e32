package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Topology builds the sessions: each user's events (key = user, value =
// event) are grouped into sessions of activity, a session ending after gap
// without events of its user (event time: the records' timestamps); an
// out-of-order event still extends or merges its user's sessions unless the
// session it would make has closed (last event + gap + grace before stream
// time). Each
// session's count of events is held back until the session closes (stream
// time past its last event + gap + grace) and then written once to output:
// key = user, value = Session.String ("start end count"). Records with an
// empty key are clock ticks: they count no event, but advance the stream
// time, so that the last sessions close.
func Topology(events, output string, gap, grace time.Duration) (*stream.Topology, error) {
	b := stream.NewBuilder()
	evs := stream.Source(b, events, codec.String{}, codec.String{}, stream.Named("events"))
	activity := stream.Filter(evs, func(user, _ string) bool { return user != "" }, stream.Named("drop-ticks"))
	byUser := stream.GroupByKey(activity, codec.String{}, codec.String{}, stream.Named("by-user"))
	counts := stream.SessionAggregate(stream.WindowedBy(byUser, stream.Sessions(gap).Grace(grace)),
		func() int64 { return 0 },
		func(_, _ string, n int64) int64 { return n + 1 },
		func(_ string, a, b int64) int64 { return a + b },
		codec.Int64{}, stream.Named("sessions"))
	final := stream.SuppressUntilWindowCloses(counts, stream.Named("closed-sessions"))
	stream.To(stream.Map(final.ToStream(), func(w stream.Windowed[string], n int64) (string, string) {
		return w.Key, Session{w.Window.Start, w.Window.End, n}.String()
	}, stream.Named("format")), output, codec.String{}, codec.String{}, stream.Named("write-sessions"))
	return b.Build()
}

// Session is a closed session: its first and last events' times and its
// count of events.
type Session struct {
	Start, End time.Time
	Count      int64
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// String is the output value: "start end count", times in RFC 3339 with
// milliseconds, UTC.
func (s Session) String() string {
	return s.Start.UTC().Format(timeFormat) + " " + s.End.UTC().Format(timeFormat) + " " + strconv.FormatInt(s.Count, 10)
}

// ParseSession parses an output value.
func ParseSession(v string) (Session, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return Session{}, fmt.Errorf("session %q: want \"start end count\"", v)
	}
	start, err1 := time.Parse(timeFormat, f[0])
	end, err2 := time.Parse(timeFormat, f[1])
	n, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Session{}, fmt.Errorf("session %q: want \"start end count\"", v)
	}
	return Session{start, end, n}, nil
}
