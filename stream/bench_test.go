package stream_test

import (
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// discardTask is an exec.Task whose emits go nowhere, so that benchmarks
// measure the Program.
type discardTask struct{ *fakeTask }

func (discardTask) Emit(exec.Output) error { return nil }

// BenchmarkStatelessStage measures Source -> Filter -> MapValues -> To.
func BenchmarkStatelessStage(b *testing.B) {
	bld := stream.NewBuilder()
	s := src(bld, "in")
	s = stream.Filter(s, func(k, v string) bool { return len(v) > 0 })
	stream.To(stream.MapValues(s, func(k, v string) int64 { return int64(len(v)) }), "out", codec.String{}, codec.Int64{})
	topo, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	p, task := topology.Of(topo).Stages[0].Program("app"), discardTask{newTask(0)}
	r := rec("in", 0, 0, "key", "some value")
	b.ReportAllocs()
	for b.Loop() {
		if err := p(task, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkCountStage measures the word count's second stage: decode, count
// in a (map-backed) store, encode, emit.
func BenchmarkCountStage(b *testing.B) {
	p := topology.Of(wordCount(b)).Stages[1].Program("app")
	task := discardTask{newTask(0, "counts")}
	r := rec("app-by-word-repartition", 0, 0, "word", "word")
	b.ReportAllocs()
	for b.Loop() {
		if err := p(task, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
