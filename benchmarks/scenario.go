package main

import (
	"bytes"
	"hash/maphash"
	"math/bits"
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
	copy(out, v)
	upperInPlace(out)
	return out
}

func upperInPlace(v []byte) {
	for i, c := range v {
		if 'a' <= c && c <= 'z' {
			v[i] = c - ('a' - 'A')
		}
	}
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

// recordHash is a 64-bit hash of a record's key and value (random per
// process: checksums are compared within one process only).
func recordHash(k, v []byte) uint64 {
	hk, hv := maphash.Bytes(hashSeed, k), maphash.Bytes(hashSeed, v)
	return (hk ^ (hk >> 29) ^ bits.RotateLeft64(hv, 31)) * 0x9e3779b97f4a7c15
}

func (c *checksum) add(k, v []byte) { c.addHash(recordHash(k, v)) }

func (c *checksum) addHash(h uint64) {
	c.n++
	c.sum += h
}

// generator produces a scenario's input records deterministically and keeps
// the state needed to know the outputs they must cause. It is fast enough
// (about 1-2 µs per record) for the loader to keep up with a broker on
// localhost.
type generator struct {
	sc        *scenario
	keys      int
	valueSize int
	rng       *rand.Rand
	seq       int64
	vocab     [][]byte
	keyNames  [][]byte // passthrough and aggregate: "k<i>"

	counts []int64 // wordcount: count per word; aggregate: sum per key (by index)
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
		rng: rand.New(rand.NewPCG(seed, uint64(len(sc.name)))), counts: make([]int64, keys)}
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
	} else {
		g.keyNames = make([][]byte, keys)
		for i := range g.keyNames {
			g.keyNames[i] = []byte("k" + strconv.Itoa(i))
		}
	}
	return g
}

// letters appends random lower-case letters to b up to length n, eight
// letters per random number.
func (g *generator) letters(b []byte, n int) []byte {
	for len(b) < n {
		r := g.rng.Uint64()
		for i := 0; i < 8 && len(b) < n; i++ {
			b = append(b, byte('a'+(r&0xff)%26))
			r >>= 8
		}
	}
	return b
}

// next returns the next input record (fresh slices) and calls out for every
// output record it must cause, in order. out must not keep its arguments.
func (g *generator) next(out func(k, v []byte)) (key, value []byte) {
	seq := g.seq
	g.seq++
	switch g.sc.name {
	case "passthrough":
		key = g.keyNames[g.rng.IntN(g.keys)]
		value = make([]byte, 0, g.valueSize)
		value = strconv.AppendInt(value, seq, 10)
		value = append(value, ':')
		value = g.letters(value, g.valueSize)
		if out != nil {
			g.num = append(g.num[:0], value...)
			upperInPlace(g.num)
			out(key, g.num)
		}
	case "wordcount":
		key = strconv.AppendInt(nil, seq, 10)
		value = make([]byte, 0, g.valueSize+10)
		var idx [32]int
		n := 0
		for len(value) < g.valueSize {
			if len(value) > 0 {
				value = append(value, ' ')
			}
			i := g.rng.IntN(len(g.vocab))
			value = append(value, g.vocab[i]...)
			if n < len(idx) {
				idx[n] = i
			}
			n++
		}
		if out != nil {
			if n > len(idx) {
				panic("benchmarks: a line of more than 32 words; -value-size is too large for wordcount")
			}
			for _, i := range idx[:n] {
				g.counts[i]++
				g.num = strconv.AppendInt(g.num[:0], g.counts[i], 10)
				out(g.vocab[i], g.num)
			}
		}
	case "aggregate":
		i := g.rng.IntN(g.keys)
		key = g.keyNames[i]
		n := int64(1 + g.rng.IntN(1000))
		value = make([]byte, 0, g.valueSize)
		value = strconv.AppendInt(value, n, 10)
		value = append(value, '|')
		value = g.letters(value, g.valueSize)
		if out != nil {
			g.counts[i] += n
			g.num = strconv.AppendInt(g.num[:0], g.counts[i], 10)
			out(key, g.num)
		}
	}
	return key, value
}
