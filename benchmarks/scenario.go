package main

import (
	"bytes"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"time"
)

// A scenario defines the input data, the keyed work every system does on it,
// and the exact output that work must produce.
//
//   - passthrough: one stage; key kept, value upper-cased (a stateless map).
//   - wordcount: two stages; lines split on spaces, re-keyed by word through a
//     repartition topic, counted per word; output word -> count (decimal).
//   - aggregate: one stage; per-key sum of the decimal number that starts each
//     value; output key -> running sum (decimal).
//
// Every system emits one output record per update (passthrough: per record;
// wordcount: per word occurrence; aggregate: per record), so the output is a
// multiset the harness knows in advance: it checks its size and an
// order-independent checksum.
type scenario struct {
	name   string
	stages int
	// defaultKeys and defaultValueSize apply when the Config leaves them 0.
	defaultKeys      int
	defaultValueSize int
	// fastest is a guess of the fastest row's input records/s on the
	// published machine, which sizes the default backlog. A guess too low
	// costs a rerun of one round (the input grows, loaded.topUp); too high
	// costs loading time and the expectation's memory.
	fastest float64
}

// backlog returns the default input size: the fastest row's records over
// the time to the end of a window (d), with a margin for startup bursts.
func (sc *scenario) backlog(d time.Duration) int {
	return int(1.3 * sc.fastest * d.Seconds())
}

var scenarioNames = []string{"passthrough", "wordcount", "aggregate"}

var scenarios = map[string]*scenario{
	"passthrough": {name: "passthrough", stages: 1, defaultKeys: 10000, defaultValueSize: 100, fastest: 1000000},
	"wordcount":   {name: "wordcount", stages: 2, defaultKeys: 10000, defaultValueSize: 60, fastest: 120000},
	"aggregate":   {name: "aggregate", stages: 1, defaultKeys: 100000, defaultValueSize: 100, fastest: 1000000},
}

// upper is the passthrough map: ASCII lower case to upper case, into a new
// slice.
func upper(v []byte) []byte {
	out := make([]byte, len(v))
	for i, c := range v {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// words calls fn for every space-separated word of line (no allocation).
func words(line []byte, fn func(w []byte)) {
	for len(line) > 0 {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			fn(line)
			return
		}
		if i > 0 {
			fn(line[:i])
		}
		line = line[i+1:]
	}
}

// leadingNumber parses the decimal number a value starts with (up to the
// first non-digit).
func leadingNumber(v []byte) int64 {
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// checksum is an order-independent digest of a multiset of records.
type checksum struct {
	n   int64
	sum uint64
}

var hashSeed = maphash.MakeSeed()

func recordHash(k, v []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.Write(k)
	h.WriteByte(0)
	h.Write(v)
	return h.Sum64()
}

func (c *checksum) add(k, v []byte) { c.addHash(recordHash(k, v)) }

func (c *checksum) addHash(h uint64) {
	c.n++
	c.sum += h
}

// generator produces a scenario's input records deterministically and keeps
// the state needed to know the outputs they must cause.
type generator struct {
	sc        *scenario
	keys      int
	valueSize int
	rng       *rand.Rand
	seq       int64
	vocab     [][]byte

	counts map[string]int64 // wordcount: count per word; aggregate: sum per key
	buf    []byte
	num    []byte
}

func newGenerator(sc *scenario, keys, valueSize int, seed uint64) *generator {
	if keys == 0 {
		keys = sc.defaultKeys
	}
	if valueSize == 0 {
		valueSize = sc.defaultValueSize
	}
	g := &generator{sc: sc, keys: keys, valueSize: valueSize,
		rng: rand.New(rand.NewPCG(seed, uint64(len(sc.name)))), counts: map[string]int64{}}
	if sc.name == "wordcount" {
		g.vocab = make([][]byte, keys)
		for i := range g.vocab {
			// 3 to 8 letters, distinct: a letter prefix by length, then
			// the index in base 26.
			w := []byte{byte('a' + i%6)}
			for n := i; ; n /= 26 {
				w = append(w, byte('a'+n%26))
				if n < 26 {
					break
				}
			}
			for len(w) < 3+i%6 {
				w = append(w, 'q')
			}
			g.vocab[i] = w
		}
	}
	return g
}

// next returns the next input record (fresh slices) and calls out for every
// output record it must cause, in order.
func (g *generator) next(out func(k, v []byte)) (key, value []byte) {
	seq := g.seq
	g.seq++
	switch g.sc.name {
	case "passthrough":
		key = []byte("k" + strconv.Itoa(g.rng.IntN(g.keys)))
		value = make([]byte, 0, g.valueSize)
		value = strconv.AppendInt(value, seq, 10)
		value = append(value, ':')
		for len(value) < g.valueSize {
			value = append(value, byte('a'+g.rng.IntN(26)))
		}
		if out != nil {
			out(key, upper(value))
		}
	case "wordcount":
		key = []byte(strconv.FormatInt(seq, 10))
		value = make([]byte, 0, g.valueSize+10)
		for len(value) < g.valueSize {
			if len(value) > 0 {
				value = append(value, ' ')
			}
			value = append(value, g.vocab[g.rng.IntN(len(g.vocab))]...)
		}
		if out != nil {
			words(value, func(w []byte) {
				n := g.counts[string(w)] + 1
				g.counts[string(w)] = n
				g.num = strconv.AppendInt(g.num[:0], n, 10)
				out(w, g.num)
			})
		}
	case "aggregate":
		key = []byte("k" + strconv.Itoa(g.rng.IntN(g.keys)))
		n := int64(1 + g.rng.IntN(1000))
		value = make([]byte, 0, g.valueSize)
		value = strconv.AppendInt(value, n, 10)
		value = append(value, '|')
		for len(value) < g.valueSize {
			value = append(value, byte('a'+g.rng.IntN(26)))
		}
		if out != nil {
			s := g.counts[string(key)] + n
			g.counts[string(key)] = s
			g.num = strconv.AppendInt(g.num[:0], s, 10)
			out(key, g.num)
		}
	}
	return key, value
}
