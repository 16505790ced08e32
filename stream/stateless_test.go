package stream_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// drive builds b and returns a driver running it.
func drive(t *testing.T, b *stream.Builder, opts ...streamtest.Opt) (*streamtest.Driver, *stream.Topology) {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return streamtest.New(t, topo, opts...), topo
}

func strIn(d *streamtest.Driver, topic string) *streamtest.Input[string, string] {
	return streamtest.NewInput(d, topic, codec.String{}, codec.String{})
}

func strOut(d *streamtest.Driver, topic string) *streamtest.Output[string, string] {
	return streamtest.NewOutput(d, topic, codec.String{}, codec.String{})
}

func kvList[K, V any](kvs []stream.KeyValue[K, V]) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%v=%v", kv.Key, kv.Value))
	}
	return strings.Join(parts, " ")
}

func wantKVs[K, V any](t *testing.T, o *streamtest.Output[K, V], want string) {
	t.Helper()
	if got := kvList(o.ReadKeyValues()); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestFilterNot(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.FilterNot(src(b, "in"), func(_, v string) bool { return len(v) == 2 })
	stream.To(s, "out", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	in, out := strIn(d, "in"), strOut(d, "out")
	for _, v := range []string{"a", "bb", "ccc"} {
		in.Pipe("k", v)
	}
	wantKVs(t, out, "k=a k=ccc")
}

func TestFlatMapValuesKeepsKeyAndPartitioning(t *testing.T) {
	b := stream.NewBuilder()
	chars := stream.FlatMapValues(src(b, "in", stream.Named("read")), func(_, v string) []string { return strings.Split(v, "") })
	stream.To(chars, "out", codec.String{}, codec.String{})
	// The key did not change: grouping by it needs no repartition.
	n := stream.Count(stream.GroupByKey(chars, codec.String{}, codec.String{}, stream.Named("g")), stream.Named("n"))
	stream.To(n.ToStream(), "counts", codec.String{}, codec.Int64Text{})
	d, topo := drive(t, b)
	if got := len(topology.Of(topo).Stages); got != 1 {
		t.Fatalf("%d stages, want 1:\n%v", got, topo)
	}
	strIn(d, "in").Pipe("k", "abc")
	wantKVs(t, strOut(d, "out"), "k=a k=b k=c")
	wantKVs(t, streamtest.NewOutput(d, "counts", codec.String{}, codec.Int64Text{}), "k=1 k=2 k=3")
}

func TestSelectKeyRepartitions(t *testing.T) {
	b := stream.NewBuilder()
	byFirst := stream.SelectKey(src(b, "in", stream.Named("read")), func(_, v string) string { return v[:1] })
	n := stream.Count(stream.GroupByKey(byFirst, codec.String{}, codec.String{}, stream.Named("by-first")), stream.Named("n"))
	stream.To(n.ToStream(), "counts", codec.String{}, codec.Int64Text{})
	d, topo := drive(t, b, streamtest.Partitions(3))
	if got := stageNames(topo); !slices.Equal(got, []string{"read", "by-first"}) {
		t.Fatalf("stages %v, want read, by-first:\n%v", got, topo)
	}
	in := strIn(d, "in")
	for i, v := range []string{"apple", "avocado", "banana", "apricot"} {
		in.Pipe(fmt.Sprint(i), v)
	}
	got := streamtest.ReadTable(streamtest.NewOutput(d, "counts", codec.String{}, codec.Int64Text{}), nil)
	if got["a"] != 3 || got["b"] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want a=3 b=1", got)
	}
	for _, e := range streamtest.OpenStore(d, "n", codec.String{}, codec.Int64{}).All() {
		if p := streamtest.Partition([]byte(e.Key), 3); e.Partition != p {
			t.Errorf("count of %q in task %d, want %d (murmur2)", e.Key, e.Partition, p)
		}
	}
}

func TestPeek(t *testing.T) {
	b := stream.NewBuilder()
	var seen []string
	s := stream.Peek(src(b, "in"), func(k, v string) { seen = append(seen, k+":"+v) })
	stream.To(s, "out", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	in := strIn(d, "in")
	in.Pipe("a", "1")
	in.Pipe("b", "2")
	if want := []string{"a:1", "b:2"}; !slices.Equal(seen, want) {
		t.Fatalf("Peek saw %v, want %v", seen, want)
	}
	wantKVs(t, strOut(d, "out"), "a=1 b=2")
}

func TestSplit(t *testing.T) {
	b := stream.NewBuilder()
	branches, rest := stream.Split(src(b, "in", stream.Named("read")), []stream.Branch[string, string]{
		{Name: "short", Pred: func(_, v string) bool { return len(v) < 3 }},
		{Pred: func(_, v string) bool { return strings.HasPrefix(v, "a") }},
	}, stream.Named("route"))
	stream.To(branches[0], "short", codec.String{}, codec.String{})
	stream.To(branches[1], "a-words", codec.String{}, codec.String{})
	stream.To(rest, "other", codec.String{}, codec.String{})
	d, topo := drive(t, b)
	for _, want := range []string{`Split "route"`, `Branch "short"`, `Branch "route-1"`, `Branch "route-default"`} {
		if !strings.Contains(topo.String(), want) {
			t.Errorf("description lacks %s:\n%v", want, topo)
		}
	}
	in := strIn(d, "in")
	for _, v := range []string{"ab", "apple", "kiwi", "an", "banana"} {
		in.Pipe("k", v)
	}
	// First match wins: "ab" and "an" are short, though they start with "a".
	wantKVs(t, strOut(d, "short"), "k=ab k=an")
	wantKVs(t, strOut(d, "a-words"), "k=apple")
	wantKVs(t, strOut(d, "other"), "k=kiwi k=banana")
}

// Records no branch takes go nowhere when the default branch is unused.
func TestSplitWithoutDefault(t *testing.T) {
	b := stream.NewBuilder()
	branches, _ := stream.Split(src(b, "in"), []stream.Branch[string, string]{
		{Pred: func(_, v string) bool { return v == "x" }},
	})
	stream.To(branches[0], "out", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	in := strIn(d, "in")
	in.Pipe("k", "y")
	in.Pipe("k", "x")
	wantKVs(t, strOut(d, "out"), "k=x")
}

func TestMergeSourcesMakesOneStage(t *testing.T) {
	b := stream.NewBuilder()
	a := src(b, "a", stream.Named("read-a"))
	c := stream.MapValues(src(b, "c", stream.Named("read-c")), func(_, v string) string { return strings.ToUpper(v) })
	m := stream.Merge([]stream.Stream[string, string]{a, c}, stream.Named("both"))
	stream.To(m, "out", codec.String{}, codec.String{})
	d, topo := drive(t, b, streamtest.Partitions(2))
	stages := topology.Of(topo).Stages
	if len(stages) != 1 || len(stages[0].Inputs) != 2 {
		t.Fatalf("want one stage reading a and c:\n%v", topo)
	}
	if !strings.Contains(topo.String(), `Merge "both" (see above)`) {
		t.Errorf("description does not show the merge under its second input:\n%v", topo)
	}
	strIn(d, "a").Pipe("1", "x")
	strIn(d, "c").Pipe("2", "y")
	strIn(d, "a").Pipe("3", "z")
	wantKVs(t, strOut(d, "out"), "1=x 2=Y 3=z")

	// The inputs of a merge must be co-partitioned; the driver, like the
	// runtime, checks the partition counts.
	err := streamtest.Validate(topo, streamtest.TopicPartitions("a", 2), streamtest.TopicPartitions("c", 3))
	if err == nil || !strings.Contains(err.Error(), "a has 2 partitions, c has 3") {
		t.Fatalf("Validate = %v, want a co-partitioning error naming a and c", err)
	}
}

func TestWithHeaders(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "in", stream.Named("read"))
	tagged := stream.WithHeaders(s, func(k, v string, hs stream.Headers) stream.Headers {
		return hs.Set("len", []byte(fmt.Sprint(len(v)))).Del("drop")
	})
	stream.To(tagged, "tagged", codec.String{}, codec.String{})
	stream.To(s, "plain", codec.String{}, codec.String{}) // a fan-out path keeps the input's headers
	// Headers cross a repartition, and a Process downstream reads them.
	var seen []string
	g := stream.GroupBy(tagged, byValue, codec.String{}, codec.String{}, stream.Named("g"))
	stream.Process(stream.Count(g, stream.Named("n")).ToStream(), func(_ *stream.Handle, r stream.Record[string, int64]) error {
		v, _ := r.Headers.Get("len")
		seen = append(seen, string(v))
		return nil
	})
	d, _ := drive(t, b)
	strIn(d, "in").PipeRecord(streamtest.Record[string, string]{Key: "k", Value: "abc",
		Headers: stream.Headers{{Key: "drop", Value: []byte("x")}, {Key: "keep", Value: []byte("y")}}})

	tr, _ := strOut(d, "tagged").Read()
	if v, _ := tr.Headers.Get("len"); string(v) != "3" || len(tr.Headers.Values("drop")) != 0 {
		t.Errorf("tagged headers %v, want len=3 and no drop", tr.Headers)
	}
	if v, _ := tr.Headers.Get("keep"); string(v) != "y" {
		t.Errorf("tagged headers %v lost keep", tr.Headers)
	}
	pr, _ := strOut(d, "plain").Read()
	if _, ok := pr.Headers.Get("len"); ok || len(pr.Headers) != 2 {
		t.Errorf("plain headers %v, want the input's two", pr.Headers)
	}
	if !slices.Equal(seen, []string{"3"}) {
		t.Errorf("Process after the repartition saw len %v, want [3]", seen)
	}
}

func TestForwardHeaders(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.ProcessTo(src(b, "in"), func(_ *stream.Handle, r stream.Record[string, string], fwd stream.Forwarder[string, string]) error {
		return fwd.ForwardHeaders(r.Key, r.Value, stream.Headers{}.Add("via", []byte("p")))
	})
	stream.To(s, "out", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	strIn(d, "in").Pipe("k", "v")
	r, _ := strOut(d, "out").Read()
	if v, _ := r.Headers.Get("via"); string(v) != "p" || len(r.Headers) != 1 {
		t.Fatalf("headers %v, want via=p", r.Headers)
	}
}

func TestHeadersMethods(t *testing.T) {
	var hs stream.Headers
	hs = hs.Add("a", []byte("1")).Add("b", []byte("2")).Add("a", []byte("3"))
	if v, ok := hs.Get("a"); !ok || string(v) != "3" {
		t.Errorf("Get(a) = %q, %v; want the last, 3", v, ok)
	}
	if vs := hs.Values("a"); len(vs) != 2 || string(vs[0]) != "1" {
		t.Errorf("Values(a) = %q", vs)
	}
	hs = hs.Set("a", []byte("4"))
	if vs := hs.Values("a"); len(vs) != 1 || string(vs[0]) != "4" || len(hs) != 2 {
		t.Errorf("after Set: %v", hs)
	}
	if hs = hs.Del("b"); len(hs) != 1 {
		t.Errorf("after Del: %v", hs)
	}
	if _, ok := hs.Get("nope"); ok {
		t.Error("Get of a missing key")
	}
}

func TestRepartitionWithPartitions(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.SelectKey(src(b, "in", stream.Named("read")), func(_, v string) string { return v })
	r := stream.Repartition(s, codec.String{}, codec.String{}, stream.Named("by-value"), stream.Partitions(3))
	stream.To(r, "out", codec.String{}, codec.String{})
	d, topo := drive(t, b, streamtest.ApplicationID("app"))
	stages := topology.Of(topo).Stages
	want := topology.TopicRef{Name: "by-value-repartition", Internal: true, Partitions: 3}
	if len(stages) != 2 || stages[0].Outputs[0] != want || stages[1].Inputs[0] != want {
		t.Fatalf("stages %+v, want a repartition topic %+v", stages, want)
	}
	if n := d.PartitionCount("app-by-value-repartition"); n != 3 {
		t.Fatalf("the driver made the repartition topic with %d partitions, want 3", n)
	}
	in := strIn(d, "in")
	for _, v := range []string{"a", "b", "c", "d", "e"} {
		in.Pipe("k", v)
	}
	for _, m := range d.Messages("app-by-value-repartition") {
		if p := streamtest.Partition(m.Key, 3); m.Partition != p {
			t.Errorf("key %q in partition %d, want %d", m.Key, m.Partition, p)
		}
	}
	wantKVs(t, strOut(d, "out"), "a=a b=b c=c d=d e=e")
	if !strings.Contains(topo.DOT(), `3 partitions`) {
		t.Errorf("DOT does not show the partition count:\n%s", topo.DOT())
	}
}

// GroupByKey with Partitions repartitions even though the key did not change.
func TestGroupByKeyWithPartitionsRepartitions(t *testing.T) {
	b := stream.NewBuilder()
	stream.Count(stream.GroupByKey(src(b, "in", stream.Named("read")), codec.String{}, codec.String{},
		stream.Named("g"), stream.Partitions(8)), stream.Named("n"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := stageNames(topo); !slices.Equal(got, []string{"read", "g"}) {
		t.Fatalf("stages %v, want read, g", got)
	}
}
