package streamtest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Known values of Kafka's Utils.murmur2, from Kafka's UtilsTest.
func TestMurmur2KnownValues(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := murmur2([]byte(c.in)); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// Partition agrees with franz-go's partitioner for keyed records, which the
// runtime uses.
func TestPartitionMatchesKgo(t *testing.T) {
	kp := kgo.StickyKeyPartitioner(nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		key := make([]byte, rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		if i%3 == 0 {
			key = []byte(fmt.Sprintf("key-%d", i))
		}
		n := 1 + rng.IntN(64)
		want := kp.ForTopic("t").Partition(&kgo.Record{Key: key}, n)
		if got := Partition(key, n); int(got) != want {
			t.Fatalf("Partition(%q, %d) = %d, kgo says %d", key, n, got, want)
		}
	}
	// Pinned: where the word count's words go among 4 partitions.
	for key, want := range map[string]int32{"a": 0, "b": 0, "c": 2, "the": 3, "sluice": 1} {
		if got := Partition([]byte(key), 4); got != want {
			t.Errorf("Partition(%q, 4) = %d, want %d", key, got, want)
		}
	}
}
