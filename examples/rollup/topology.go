package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Params are the roll-up's durations, in event time.
type Params struct {
	// Within pairs an order with the payments of its account at most this
	// far apart; an order with none is unpaid once it can no longer pair
	// (stream time past its time + 2 × Within).
	Within time.Duration
	// Minute and MinuteGrace are the first windows; Hour and HourGrace the
	// windows they roll up into.
	Minute, MinuteGrace time.Duration
	Hour, HourGrace     time.Duration
}

// Topology builds the roll-up. Events (key = account, value "order" or
// "payment"; any other value is a clock tick that only moves stream time)
// are split into orders and payments, and a left join pairs each order with
// its account's payments within p.Within: "paid" for every pair, "unpaid"
// for an order that none paired with, emitted when stream time has passed
// it by 2 × Within, with the order's timestamp. The outcomes are counted
// per account in Minute windows, all in the events' stage; each window's
// final Tally is written once, when it closes, to minutes ("start end paid
// unpaid"). The final minutes are re-keyed by account (a repartition: a
// second stage) and summed per Hour window, written once to hours when the
// hour closes.
//
// An unpaid outcome comes late by construction: when it is emitted, the
// minute window of its order may have closed (grace too short for 2 ×
// Within), and the window operator drops it, counted as late; the record
// that moved stream time is not affected.
func Topology(events, minutes, hours string, p Params) (*stream.Topology, error) {
	b := stream.NewBuilder()
	evs := stream.Source(b, events, codec.String{}, codec.String{}, stream.Named("events"))
	orders := stream.Filter(evs, func(_, v string) bool { return v == "order" }, stream.Named("orders"))
	payments := stream.Filter(evs, func(_, v string) bool { return v == "payment" }, stream.Named("payments"))
	outcomes := stream.StreamLeftJoin(orders, payments, stream.Within(p.Within),
		func(_, _, _ string, paid bool) string {
			if paid {
				return "paid"
			}
			return "unpaid"
		}, codec.String{}, codec.String{}, stream.Named("order-payments"))
	byAccount := stream.GroupByKey(outcomes, codec.String{}, codec.String{}, stream.Named("by-account"))
	perMinute := stream.WindowedAggregate(stream.WindowedBy(byAccount, stream.Tumbling(p.Minute).Grace(p.MinuteGrace)),
		func() Tally { return Tally{} },
		func(_, outcome string, t Tally) Tally {
			if outcome == "paid" {
				t.Paid++
			} else {
				t.Unpaid++
			}
			return t
		}, TallyCodec{}, stream.Named("per-minute"))
	closedMinutes := stream.SuppressUntilWindowCloses(perMinute, stream.Named("closed-minutes")).ToStream()
	stream.To(stream.Map(closedMinutes, format, stream.Named("format-minutes")),
		minutes, codec.String{}, codec.String{}, stream.Named("write-minutes"))

	byAccountAgain := stream.GroupBy(closedMinutes, func(w stream.Windowed[string], _ Tally) string { return w.Key },
		codec.String{}, TallyCodec{}, stream.Named("minutes-by-account"))
	perHour := stream.WindowedReduce(stream.WindowedBy(byAccountAgain, stream.Tumbling(p.Hour).Grace(p.HourGrace)),
		func(a, b Tally) Tally { return Tally{a.Paid + b.Paid, a.Unpaid + b.Unpaid} }, stream.Named("per-hour"))
	stream.To(stream.Map(stream.SuppressUntilWindowCloses(perHour, stream.Named("closed-hours")).ToStream(), format,
		stream.Named("format-hours")), hours, codec.String{}, codec.String{}, stream.Named("write-hours"))
	return b.Build()
}

func format(w stream.Windowed[string], t Tally) (string, string) {
	return w.Key, Window{w.Window.Start, w.Window.End, t}.String()
}

// Tally counts outcomes.
type Tally struct {
	Paid, Unpaid int64
}

// TallyCodec encodes a Tally as "paid unpaid".
type TallyCodec struct{}

// Encode implements codec.Codec.
func (TallyCodec) Encode(t Tally) ([]byte, error) {
	return fmt.Appendf(nil, "%d %d", t.Paid, t.Unpaid), nil
}

// Decode implements codec.Codec.
func (TallyCodec) Decode(b []byte) (Tally, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Tally{}, &codec.DecodeError{Codec: "Tally", Reason: fmt.Sprintf("%q is not \"paid unpaid\"", b)}
	}
	paid, err1 := strconv.ParseInt(f[0], 10, 64)
	unpaid, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Tally{}, &codec.DecodeError{Codec: "Tally", Reason: fmt.Sprintf("%q is not \"paid unpaid\"", b)}
	}
	return Tally{paid, unpaid}, nil
}

// Window is a closed window's output: its bounds and tally.
type Window struct {
	Start, End time.Time
	Tally
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// String is the output value: "start end paid unpaid", times in RFC 3339
// with milliseconds, UTC.
func (w Window) String() string {
	return fmt.Sprintf("%s %s %d %d", w.Start.UTC().Format(timeFormat), w.End.UTC().Format(timeFormat), w.Paid, w.Unpaid)
}

// ParseWindow parses an output value.
func ParseWindow(v string) (Window, error) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return Window{}, fmt.Errorf("window %q: want \"start end paid unpaid\"", v)
	}
	start, err1 := time.Parse(timeFormat, f[0])
	end, err2 := time.Parse(timeFormat, f[1])
	t, err3 := TallyCodec{}.Decode([]byte(f[2] + " " + f[3]))
	if err1 != nil || err2 != nil || err3 != nil {
		return Window{}, fmt.Errorf("window %q: want \"start end paid unpaid\"", v)
	}
	return Window{start, end, t}, nil
}
