package streamtest_test

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// exampleT is the streamtest.T of examples: it prints what fails.
type exampleT struct{}

func (exampleT) Helper()                           {}
func (exampleT) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// Records that reach the runtime together are processed together: within a
// task the lowest timestamp first, across the task's inputs. A user record
// piped after a view but timestamped before it is in the table when the
// view is joined; piped one by one, the view finds no user.
func ExampleDriver_Batch() {
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	stream.To(stream.Join(views, users, func(_, page, country string) string { return page + "@" + country }),
		"enriched", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, batch := range []bool{false, true} {
		d := streamtest.New(exampleT{}, topo)
		v := streamtest.NewInput(d, "views", codec.String{}, codec.String{})
		u := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
		out := streamtest.NewOutput(d, "enriched", codec.String{}, codec.String{})
		pipe := func() {
			v.PipeAt(t0.Add(10*time.Second), "ann", "/a")
			u.PipeAt(t0.Add(5*time.Second), "ann", "de")
		}
		if batch {
			if err := d.Batch(pipe); err != nil {
				fmt.Println(err)
			}
		} else {
			pipe()
		}
		fmt.Println(batch, out.ReadValues())
	}
	// Output:
	// false []
	// true [/a@de]
}
