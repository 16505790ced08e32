// Command paced feeds a word count with lines at a fixed rate and reports how
// long each output record took to become visible to a read_committed reader.
// It is the probe behind docs/performance.md's "Latency under live traffic",
// used to compare two builds of examples/wordcount run as their own
// processes (the harness's -out-of-process mode measures the published
// numbers). Each line has -words words from a 10,000-word vocabulary and its
// send time as timestamp; the word count copies the timestamp to every
// output record, so an output's latency is its arrival minus its timestamp.
//
//	go run ./cmd/paced -brokers B -create -in lines -out counts   # create the topics (4 partitions)
//	go run ./cmd/paced -brokers B -in lines -out counts -rate 10000 -d 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9192", "")
	in := flag.String("in", "lines", "")
	out := flag.String("out", "word-counts", "")
	rate := flag.Int("rate", 10000, "lines/s")
	dur := flag.Duration("d", 10*time.Second, "")
	words := flag.Int("words", 10, "")
	create := flag.Bool("create", false, "")
	flag.Parse()
	vocab := make([]string, 10000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%04d", i)
	}
	ctx := context.Background()
	if *create {
		acl, err := kgo.NewClient(kgo.SeedBrokers(*brokers))
		if err != nil {
			fmt.Fprintln(os.Stderr, "paced:", err)
			os.Exit(1)
		}
		defer acl.Close()
		r, err := kadm.NewClient(acl).CreateTopics(ctx, 4, 1, nil, *in, *out)
		if err == nil {
			err = r.Error()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "paced: creating topics:", err)
			os.Exit(1)
		}
		return
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.DefaultProduceTopic(*in), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "paced:", err)
		os.Exit(1)
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.ConsumeTopics(*out), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "paced:", err)
		os.Exit(1)
	}
	// make sure reader has positions
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	rd.PollFetches(pctx) // join the output topic before the first line is sent
	pcancel()
	var expect atomic.Int64
	start := time.Now()
	go func() {
		tick := time.NewTicker(time.Millisecond)
		sent := 0
		for range tick.C {
			el := time.Since(start)
			if el > *dur {
				break
			}
			want := int(el.Seconds() * float64(*rate))
			for ; sent < want; sent++ {
				var b strings.Builder
				for j := 0; j < *words; j++ {
					if j > 0 {
						b.WriteByte(' ')
					}
					b.WriteString(vocab[rand.Intn(len(vocab))])
				}
				expect.Add(int64(*words))
				prod.Produce(ctx, &kgo.Record{Value: []byte(b.String()), Timestamp: time.Now()}, nil)
			}
		}
		fmt.Fprintf(os.Stderr, "sent %d lines in %v\n", sent, time.Since(start))
	}()
	var lat []time.Duration
	last := time.Now()
	var perSec = map[int][]time.Duration{}
	for {
		pc, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := rd.PollFetches(pc)
		cancel()
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			l := now.Sub(r.Timestamp)
			lat = append(lat, l)
			s := int(r.Timestamp.Sub(start).Seconds())
			perSec[s] = append(perSec[s], l)
			last = now
		})
		if time.Since(start) > *dur && (int64(len(lat)) >= expect.Load() || time.Since(last) > 5*time.Second) {
			break
		}
	}
	if len(lat) == 0 {
		fmt.Fprintln(os.Stderr, "paced: no output record arrived")
		os.Exit(1)
	}
	slices.Sort(lat)
	q := func(s []time.Duration, f float64) time.Duration {
		return s[int(f*float64(len(s)-1))].Round(time.Millisecond)
	}
	fmt.Printf("rate=%d lines/s n=%d/%d p50=%v p99=%v max=%v\n", *rate, len(lat), expect.Load(), q(lat, .5), q(lat, .99), lat[len(lat)-1].Round(time.Millisecond))
	for s := 0; s <= int(dur.Seconds()); s++ {
		v := perSec[s]
		if len(v) == 0 {
			continue
		}
		slices.Sort(v)
		fmt.Printf("  sec %2d: n=%6d p50=%v p99=%v\n", s, len(v), q(v, .5), q(v, .99))
	}
}
