package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Topology builds the batcher: every record of input (key = item id, value =
// payload) is put into the task's buffer store; every interval of wall-clock
// time (stream.Every with stream.WallClock) a timer releases the task's
// buffer as one batch: it emits every buffered item to output (key = id,
// value = Item.String, "<batch> <payload>"), deletes it from the buffer, and
// emits the batch's summary to batches (key = the batch, "<partition>-<n>"
// with n counting the task's batches from 1; value = its number of items).
// A timer with an empty buffer does nothing: no batch, no summary. An id
// received twice before its batch is released is released once, with its
// last payload.
//
// A batch's items, summary and buffer deletions commit in the transaction of
// the cycle that fired the timer (under exactly-once), whether that cycle
// processed records or not, so a read_committed reader sees every item of
// the input exactly once, in a batch whose summary counts it.
func Topology(input, output, batches string, interval time.Duration) (*stream.Topology, error) {
	b := stream.NewBuilder()
	buffer := stream.DeclareStore(b, "buffer", codec.String{}, codec.String{})
	seq := stream.DeclareStore(b, "batch-seq", codec.String{}, codec.Int64{})
	items := stream.DeclareOutput(b, output, codec.String{}, codec.String{})
	summaries := stream.DeclareOutput(b, batches, codec.String{}, codec.String{})

	buffered := func(h *stream.Handle, r stream.Record[string, string]) error {
		return stream.Put(h, buffer, r.Key, r.Value)
	}
	release := func(h *stream.Handle, _ time.Time) error {
		var ids, payloads []string
		err := stream.Scan(h, buffer, func(id, payload string) error {
			ids, payloads = append(ids, id), append(payloads, payload)
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		n, _, err := stream.Get(h, seq, "last")
		if err != nil {
			return err
		}
		n++
		batch := fmt.Sprintf("%d-%d", h.Partition(), n)
		for i, id := range ids {
			if err := stream.Emit(h, items, id, Item{Batch: batch, Payload: payloads[i]}.String()); err != nil {
				return err
			}
			if err := stream.Delete(h, buffer, id); err != nil {
				return err
			}
		}
		if err := stream.Put(h, seq, "last", n); err != nil {
			return err
		}
		return stream.Emit(h, summaries, batch, strconv.Itoa(len(ids)))
	}
	stream.Process(stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("items")),
		buffered, stream.Uses(buffer, seq), stream.EmitsTo(items, summaries),
		stream.Every(interval, stream.WallClock, release), stream.Named("batch"))
	return b.Build()
}

// Item is an output value: the batch that released the item and its
// payload.
type Item struct {
	Batch, Payload string
}

// String is the output value: "<batch> <payload>".
func (it Item) String() string { return it.Batch + " " + it.Payload }

// ParseItem parses an output value.
func ParseItem(v string) (Item, error) {
	batch, payload, ok := strings.Cut(v, " ")
	if !ok || batch == "" {
		return Item{}, fmt.Errorf("item %q: want \"<batch> <payload>\"", v)
	}
	return Item{batch, payload}, nil
}
