package checkpoint_test

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

func ExamplePlan() {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	topic := [16]byte{0x1f, 0x2e} // the changelog's topic id, from Metadata
	cp := checkpoint.Checkpoint{
		Stores:  map[string]checkpoint.Store{"counts": {TopicID: topic, Next: 42}},
		Inputs:  map[string]int64{"words": 1000},
		Written: now.Add(-time.Hour),
	}

	// The checkpoint survives an encode/decode round trip through Pebble.
	b, _ := cp.MarshalBinary()
	var stored checkpoint.Checkpoint
	if err := stored.UnmarshalBinary(b); err != nil {
		fmt.Println(err)
		return
	}

	log := checkpoint.LogState{TopicID: topic, LogStart: 0, HighWatermark: 60, DeleteRetention: 24 * time.Hour}
	fmt.Printf("%+v\n", checkpoint.Plan(stored, true, "counts", log, now))

	log.LogStart = 50 // retention deleted records the state never applied
	fmt.Printf("%+v\n", checkpoint.Plan(stored, true, "counts", log, now))
	// Output:
	// {Rebuild:false From:42 Reason:resume from checkpoint offset 42}
	// {Rebuild:true From:50 Reason:checkpoint offset 42 is below the log start offset 50}
}
