package processor

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kgox"
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

// metadataMinAge is the shortest time between two metadata refreshes of a
// client (kgo.MetadataMinAge; franz-go's default is 5 s). When a broker
// dies, the cluster moves its leaderships after broker.session.timeout.ms
// (9 s by default); a client that refreshed while the dead broker still led
// would then wait up to the min age to see the new leaders, and a
// transaction's flush, bounded by the transaction timeout (10 s), runs out
// first: the stage restarts instead of committing (issue 11, measured on
// scripts/kafka's cluster). Kafka's Java client retries after 100 ms to
// 1 s (retry.backoff.ms, retry.backoff.max.ms). Refreshes are triggered
// only by errors, so a short min age costs requests only during failures.
const metadataMinAge = 500 * time.Millisecond

// baseOpts returns the options every Kafka client of the processor starts
// with: the seed brokers, the dial timeout, the metadata min age, TLS and
// SASL, and franz-go's log lines written to log. A client appends its own
// options, then the user's KafkaOptions, then the options its correctness
// rests on: franz-go applies options in order, and the last of a kind wins.
func (c *cfg) baseOpts(log *slog.Logger) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.DialTimeout(c.dialTimeout),
		kgo.MetadataMinAge(metadataMinAge),
		kgo.WithLogger(kgox.Logger(log)),
	}, kgox.Security(c.tls, c.sasl)...)
}

// newClient returns a client with baseOpts, then the user's KafkaOptions,
// then enforced, which no user option can replace. The client is not
// connected yet: an unreachable broker shows at its first request.
func (c *cfg) newClient(log *slog.Logger, enforced ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(slices.Concat(c.baseOpts(log), c.kgoOpts, enforced)...)
}
