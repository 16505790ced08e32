// Command kafkaisr waits until every partition of every topic of a Kafka
// cluster (internal topics included) has a leader and all its replicas in
// its ISR: after a node of scripts/kafka's cluster came back, its replicas
// catch up before the next fault may be injected. scripts/kafka wait-isr runs
// it.
//
//	go run ./internal/testkit/kafkaisr -brokers host:port,... [-timeout 2m]
//
// It exits 0 once in sync, 1 with the partitions still out of sync after the
// timeout, 2 on bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/cluster"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated bootstrap addresses (required)")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	if *brokers == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: kafkaisr -brokers host:port,... [-timeout 2m]")
		os.Exit(2)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaisr: %v\n", err)
		os.Exit(2)
	}
	defer cl.Close()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := cluster.WaitInSync(ctx, kadm.NewClient(cl)); err != nil {
		fmt.Fprintf(os.Stderr, "kafkaisr: not in sync after %v: %v\n", *timeout, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kafkaisr: every partition in sync (waited %v)\n", time.Since(start).Round(100*time.Millisecond))
}
