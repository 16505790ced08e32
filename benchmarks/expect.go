package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// expectation is everything the loaded input must cause: per output key, the
// hashes of its output records in the order they must appear, and the
// multiset of all outputs.
//
// Why per key and in order: every system keeps a key in one partition from
// input to output (the loader, franz-go, sarama and sluice all hash the key),
// and processes a partition in order, so a key's outputs reach the output
// topic in the order the generator made them. A run stopped with a backlog
// left must therefore have produced, for every key, exactly a prefix of that
// key's expected outputs: a lost record shows as the next one in the wrong
// place, a duplicate as one repeated, a wrong value as a hash that does not
// match. So a window-mode run, which stops the system before it has drained
// its input, is checked record by record as strictly as a full drain is by
// count and checksum.
//
// Memory: one uint64 per expected output (no pointers, so the collector does
// not scan them), about 8 MB per million outputs.
type expectation struct {
	keys  map[string]int32 // output key -> index into seqs
	seqs  [][]uint64       // per key: recordHash of its outputs, in order
	total checksum         // all outputs
}

func newExpectation() *expectation { return &expectation{keys: map[string]int32{}} }

// add appends an output record (the generator's callback). k and v are not
// kept.
func (x *expectation) add(k, v []byte) {
	h := recordHash(k, v)
	x.total.addHash(h)
	id, ok := x.keys[string(k)]
	if !ok {
		id = int32(len(x.seqs))
		x.keys[string(k)] = id
		x.seqs = append(x.seqs, nil)
	}
	x.seqs[id] = append(x.seqs[id], h)
}

// outputCheck follows one run's output against an expectation. The
// expectation must not grow while a check uses it. Not safe for concurrent
// use.
type outputCheck struct {
	x        *expectation
	pos      []int // per key: outputs matched so far
	got      checksum
	bad      int64  // records that were not the next expected output of their key
	firstBad string // what the first of them was
}

func (x *expectation) newCheck() *outputCheck {
	return &outputCheck{x: x, pos: make([]int, len(x.seqs))}
}

// add checks one output record.
func (o *outputCheck) add(k, v []byte) {
	h := recordHash(k, v)
	o.got.addHash(h)
	id, ok := o.x.keys[string(k)]
	if !ok {
		o.fail("an output with key %q, which no input causes", k)
		return
	}
	seq, i := o.x.seqs[id], o.pos[id]
	switch {
	case i >= len(seq):
		o.fail("output %d of key %q, which has only %d (a duplicate?)", i+1, k, len(seq))
	case seq[i] != h:
		o.fail("output %d of key %q (value %q) is not the expected one (a duplicate, a loss or a wrong value)", i+1, k, v)
	default:
		o.pos[id]++
	}
}

func (o *outputCheck) fail(format string, args ...any) {
	if o.bad == 0 {
		o.firstBad = fmt.Sprintf(format, args...)
	}
	o.bad++
}

// complete reports whether the output is exactly the expected multiset.
func (o *outputCheck) complete() bool { return o.bad == 0 && o.got == o.x.total }

// verdict says whether the output was right: "exact" (every expected output,
// nothing else), "prefix" (every record was the next expected output of its
// key; the run was stopped with input left) or an error.
func (o *outputCheck) verdict() (string, error) {
	switch {
	case o.bad > 0:
		return "", fmt.Errorf("wrong output: %d of %d records were not the next expected output of their key; the first: %s", o.bad, o.got.n, o.firstBad)
	case o.complete():
		return "exact", nil
	case o.got.n >= o.x.total.n:
		return "", fmt.Errorf("wrong output: %d records (want %d), checksum %x (want %x)", o.got.n, o.x.total.n, o.got.sum, o.x.total.sum)
	default:
		return "prefix", nil
	}
}

// loaded is a scenario's input topic, loaded once and read by every system of
// the scenario from its start, and grown (topUp) when a system comes close
// to its end within a measurement window.
type loaded struct {
	sc    *scenario
	topic string
	g     *generator
	exp   *expectation
	bytes int64 // key + value bytes of all input records
	n     int   // input records
}

// outputsPerInput is the mean number of output records per input record
// (1, except wordcount: the words per line).
func (in *loaded) outputsPerInput() float64 {
	return float64(in.exp.total.n) / float64(in.n)
}

func loadScenario(ctx context.Context, e *env, c *Config, sc *scenario, tag string) (*loaded, error) {
	topic := e.name(sc.name, tag, "in")
	if err := e.createTopics(ctx, c.Partitions, nil, topic); err != nil {
		return nil, err
	}
	in := &loaded{sc: sc, topic: topic, g: newGenerator(sc, c.Keys, c.ValueSize, c.Seed), exp: newExpectation()}
	n := c.records(sc)
	c.progress("%s: loading %d records (keys %d, value %d bytes, %d partitions)", sc.name, n, in.g.keys, in.g.valueSize, c.Partitions)
	return in, in.grow(ctx, e, c, n)
}

// grow appends n records to the input.
func (in *loaded) grow(ctx context.Context, e *env, c *Config, n int) error {
	b, err := e.load(ctx, c, in.topic, in.g, n, in.exp.add)
	in.bytes += b
	in.n += n
	return err
}

// topUp grows the input so that it holds at least margin times the input
// records a run consumed before its window ended (consumed), so that the
// next run, if faster, still finds a backlog for its whole window.
func (in *loaded) topUp(ctx context.Context, e *env, c *Config, consumed float64) error {
	const margin = 1.5
	need := int(math.Ceil(margin * consumed))
	if need <= in.n {
		return nil
	}
	c.progress("  %s: the input is short for the fastest system; appending %d records (to %d)", in.sc.name, need-in.n, need)
	start := time.Now()
	err := in.grow(ctx, e, c, need-in.n)
	c.progress("  appended in %v", time.Since(start).Round(time.Millisecond))
	return err
}
