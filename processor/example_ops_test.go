package processor_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// Metrics go to the application's Prometheus registry; the admin endpoints
// are mounted on the application's own HTTP server (AdminAddr would serve
// them on one of the processor's); a state listener sees the lifecycle.
func ExampleMetricsRegisterer() {
	b := stream.NewBuilder()
	stream.To(stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("copy")), "out", codec.String{}, codec.String{})
	topo, _ := b.Build()

	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1))
	defer cluster.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("in"))
	defer cl.Close()
	ctx := context.Background()
	kadm.NewClient(cl).CreateTopics(ctx, 1, 1, nil, "in", "out")
	cl.ProduceSync(ctx, kgo.StringRecord("a"), kgo.StringRecord("b"))

	dir, _ := os.MkdirTemp("", "sluice-example-")
	defer os.RemoveAll(dir)
	reg := prometheus.NewRegistry()
	running := make(chan struct{})
	p, err := processor.New(topo,
		processor.Brokers(cluster.ListenAddrs()...),
		processor.ApplicationID("example-ops"),
		processor.StateDir(dir),
		processor.MetricsRegisterer(reg),
		processor.StateListener(func(_, s processor.State) {
			if s == processor.StateRunning {
				close(running)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	<-running
	for p.Metrics().Stages["copy"].Records < 2 {
		select {
		case err := <-done:
			fmt.Println(err)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	<-done

	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.GetName() == "sluice_stage_records_total" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	fmt.Println(p.State())
	// Output:
	// sluice_stage_records_total 2
	// stopped
}
