package topology_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// TestPlanPartitions checks the partition-count rules that the runtime and
// streamtest's driver share: co-partitioned inputs, repartition topics
// taking their Partitions or their writer's count, loops taking their
// stage's count, and every problem reported with what to change.
func TestPlanPartitions(t *testing.T) {
	type want struct {
		stages   []int
		internal map[string]int
		errs     []string // substrings of the error; none: no error
	}
	cases := []struct {
		name   string
		build  func(b *stream.Builder)
		topics map[string]int // existing user topics
		want   want
	}{
		{
			name: "repartition inherits the writer's count",
			build: func(b *stream.Builder) {
				r := stream.Repartition(src(b, "in"), codec.String{}, codec.String{}, stream.Named("r"))
				stream.To(r, "out", codec.String{}, codec.String{})
			},
			topics: map[string]int{"in": 3, "out": 1},
			want:   want{stages: []int{3, 3}, internal: map[string]int{"app-r-repartition": 3}},
		},
		{
			name: "repartition with Partitions",
			build: func(b *stream.Builder) {
				r := stream.Repartition(src(b, "in"), codec.String{}, codec.String{}, stream.Named("r"), stream.Partitions(5))
				stream.To(r, "out", codec.String{}, codec.String{})
			},
			topics: map[string]int{"in": 3, "out": 1},
			want:   want{stages: []int{3, 5}, internal: map[string]int{"app-r-repartition": 5}},
		},
		{
			name: "a loop takes its stage's count",
			build: func(b *stream.Builder) {
				loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("l"))
				all := stream.Merge([]stream.Stream[string, string]{src(b, "in"), loop.Stream()})
				stream.LoopTo(stream.Filter(all, func(k, v string) bool { return v != "" }), loop)
			},
			topics: map[string]int{"in": 4},
			want:   want{stages: []int{4}, internal: map[string]int{"app-l-loop": 4}},
		},
		{
			name: "inputs not co-partitioned",
			build: func(b *stream.Builder) {
				stream.Merge([]stream.Stream[string, string]{src(b, "a", stream.Named("a")), src(b, "b")})
			},
			topics: map[string]int{"a": 2, "b": 3},
			want: want{stages: []int{2}, internal: map[string]int{},
				errs: []string{"stage a reads topics that are not co-partitioned: a has 2 partitions, b has 3; give them the same partition count"}},
		},
		{
			name: "missing input and output topics",
			build: func(b *stream.Builder) {
				stream.To(stream.Merge([]stream.Stream[string, string]{src(b, "a", stream.Named("a")), src(b, "b")}), "out", codec.String{}, codec.String{})
			},
			topics: map[string]int{"a": 2},
			want: want{stages: []int{2}, internal: map[string]int{},
				errs: []string{"input topic b of stage a does not exist: create it first", "output topic out of stage a does not exist: create it first"}},
		},
		{
			name: "a stage reading only its loop",
			build: func(b *stream.Builder) {
				loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("l"))
				stream.LoopTo(loop.Stream(), loop)
			},
			want: want{stages: []int{0}, internal: map[string]int{},
				errs: []string{"stage l reads only its loop app-l-loop, whose partition count comes from the stage's other inputs; give the loop stream.Partitions"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := stream.NewBuilder()
			c.build(b)
			topo, err := b.Build()
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			plan, err := topology.Of(topo).PlanPartitions("app", func(topic string) (int, bool) {
				n, ok := c.topics[topic]
				return n, ok
			})
			if !slices.Equal(plan.Stages, c.want.stages) || !maps.Equal(plan.Internal, c.want.internal) {
				t.Errorf("plan = %v %v, want %v %v", plan.Stages, plan.Internal, c.want.stages, c.want.internal)
			}
			if len(c.want.errs) == 0 && err != nil {
				t.Errorf("PlanPartitions: %v", err)
			}
			if len(c.want.errs) > 0 && err == nil {
				t.Errorf("PlanPartitions succeeded, want %q", c.want.errs)
			}
			for _, w := range c.want.errs {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func src(b *stream.Builder, topic string, opts ...stream.SourceOption) stream.Stream[string, string] {
	return stream.Source(b, topic, codec.String{}, codec.String{}, opts...)
}
