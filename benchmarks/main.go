// Command benchmarks measures sluice against the practical limit of a Kafka
// broker (bare franz-go loops, at-least-once and transactional) and against
// goka, on the same broker and the same data, in one run. See
// docs/performance.md for the results and how to read them.
//
// It is a module of its own (so goka stays out of the library's go.mod): run
// it inside benchmarks/, or with go -C benchmarks from the repository root.
//
//	go run .                                   # everything on an in-process kfake
//	go run . -brokers 127.0.0.1:9092 -json results.jsonl
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
	c := DefaultConfig()
	fs := flag.NewFlagSet("benchmarks", flag.ExitOnError)
	c.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run . [flags]   (inside benchmarks/; or go -C benchmarks run . [flags])\n\n"+
			"Loads each scenario's input, then measures every system draining it\n"+
			"(records/s, MB/s, CPU, peak RSS, exact output check), then its end-to-end\n"+
			"latency with a paced producer. Without -brokers it starts an in-process kfake.\n\n")
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
