// Command benchmarks measures sluice against the limit of a Kafka broker and
// client (bare franz-go loops, at-least-once and transactional) and against
// goka (with its defaults and tuned), on the same broker and the same data,
// in one run: throughput in rounds with a random order and the spread of the
// rounds, latency under a paced load, and the sustainable throughput (the
// highest paced rate whose p99 stays within its bound). See
// docs/performance.md for the results and how to read them.
//
// It is a module of its own (so goka stays out of the library's go.mod): run
// it inside benchmarks/, or with go -C benchmarks from the repository root.
//
//	go run . -repeat 1 -window 2s -sustainable=false  # a quick look, on an in-process kfake
//	go run . -brokers 127.0.0.1:9092 -scenario wordcount -json results.jsonl
//	go run . -brokers 127.0.0.1:9092 -scenario wordcount -out-of-process
//	go run . -brokers 127.0.0.1:9092 -table=false -sweep -chart ../docs/performance-sweep.png
//	go run . -brokers 127.0.0.1:9092 -table=false -restore
//
// The same code runs from testing.B (bench_test.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain()) // -out-of-process: this is the system's process
	}
	c := DefaultConfig()
	fs := flag.NewFlagSet("benchmarks", flag.ExitOnError)
	c.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run . [flags]   (inside benchmarks/; or go -C benchmarks run . [flags])\n\n"+
			"Loads each scenario's input, then measures every system on it in rounds\n"+
			"(records/s in a fixed window, MB/s, CPU, peak RSS, output checked record\n"+
			"by record), then its end-to-end latency with a paced producer at half of its\n"+
			"throughput and its sustainable throughput. Without -brokers it starts an\n"+
			"in-process kfake.\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, c, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchmarks: %v\n", err)
		os.Exit(1)
	}
	for _, r := range rep.Results {
		if !r.Correct && !r.Unsupported {
			os.Exit(2) // a wrong or failed run: the numbers do not count
		}
	}
}

func createFile(path string) (*os.File, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return os.Create(path)
}
