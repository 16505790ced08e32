package processor

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

type explicitKey struct{}

// explicitPartition marks a record (in kgo.Record.Context) whose Partition
// field was set by the runtime and must be kept: changelog records go to the
// task's own partition.
var explicitPartition = context.WithValue(context.Background(), explicitKey{}, true)

// partitioner keeps explicit partitions and otherwise hashes the key with
// murmur2, as Kafka's default partitioner does, so records with the same key
// land in the same partition whichever client produced them.
type partitioner struct{ keyed kgo.Partitioner }

func newPartitioner() kgo.Partitioner {
	return partitioner{kgo.StickyKeyPartitioner(nil)}
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return topicPartitioner{p.keyed.ForTopic(topic)}
}

type topicPartitioner struct{ keyed kgo.TopicPartitioner }

func (topicPartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (tp topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Context == explicitPartition {
		return int(r.Partition)
	}
	return tp.keyed.Partition(r, n)
}

func (tp topicPartitioner) OnNewBatch() {
	if nb, ok := tp.keyed.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}
