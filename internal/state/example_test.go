package state_test

import (
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
)

func Example() {
	db, err := state.Open("state", state.FS(vfs.NewMem()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	// One transaction of the runtime: count words for task count/0.
	task := state.TaskID{Stage: "count", Partition: 0}
	txn := db.NewTxn()
	defer txn.Discard() // a no-op after Apply
	counts := txn.Store("counts", task.Partition)
	for _, w := range []string{"to", "be", "or", "not", "to", "be"} {
		v, _, err := counts.Get([]byte(w)) // sees this transaction's earlier Puts
		if err != nil {
			fmt.Println(err)
			return
		}
		n, _ := strconv.Atoi(string(v)) // 0 for a new word
		if err := counts.Put([]byte(w), strconv.AppendInt(nil, int64(n+1), 10)); err != nil {
			fmt.Println(err)
			return
		}
	}
	// After the Kafka transaction committed: apply the data together with
	// the changelog position it reached.
	err = txn.SetCheckpoint(task, checkpoint.Checkpoint{
		Stores:  map[string]checkpoint.Store{"counts": {Next: 6}},
		Written: time.Now(),
	})
	if err == nil {
		err = txn.Apply()
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	cp, found, _ := db.Checkpoint(task)
	fmt.Println(found, cp.Stores["counts"].Next)

	read := db.NewTxn()
	defer read.Discard()
	_ = read.Store("counts", 0).Scan(nil, nil, func(k, v []byte) error {
		fmt.Printf("%s=%s\n", k, v)
		return nil
	})
	// Output:
	// true 6
	// be=2
	// not=1
	// or=1
	// to=2
}
