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

// stageMetadataMinAge is the shortest time between two metadata refreshes
// of a stage's client (kgo.MetadataMinAge; franz-go's default is 5 s). When
// a broker dies, the cluster moves its leaderships after
// broker.session.timeout.ms (9 s by default). A stage's client that last
// refreshed while the dead broker still led must then see the new leaders
// within the second or so left of the transaction timeout (10 s), or the
// transaction's flush runs out and the stage restarts instead of
// committing (issue 11, measured on scripts/kafka's cluster); with the 5 s
// default it may wait up to 5 s for a refresh. Kafka's Java client retries
// after 100 ms to 1 s (retry.backoff.ms, retry.backoff.max.ms).
//
// Only the stages' clients get it: the min age paces every refresh a
// client makes, not only the refreshes errors trigger. A failing partition
// (a broker down, a topic being created) makes the client refresh again at
// each min age until it recovers, so the short age multiplies the metadata
// requests of an outage by ten; and franz-go fails a produce to a topic
// that stays unknown after UnknownTopicRetries refreshes (4 by default),
// which the short age would cut from about 20 s to about 2 s (see
// stageUnknownTopicRetries). The admin, restore and replay clients keep
// franz-go's default: a restore is not bounded by the transaction timeout.
const stageMetadataMinAge = 500 * time.Millisecond

// stageUnknownTopicRetries is how many metadata refreshes a stage's client
// waits for a topic it produces to that the brokers say is unknown
// (kgo.UnknownTopicRetries), before failing the records: 40 refreshes at
// stageMetadataMinAge, the ~20 s that franz-go's default (4 refreshes at
// 5 s) gives a topic just created, or recreated, to reach every broker's
// metadata. A produce to a topic deleted while the application runs fails
// after that long.
const stageUnknownTopicRetries = 40

// baseOpts returns the options every Kafka client of the processor starts
// with: the seed brokers, the dial timeout, TLS and SASL, and franz-go's
// log lines written to log. A client appends its own options, then the
// user's KafkaOptions, then the options its correctness rests on: franz-go
// applies options in order, and the last of a kind wins.
func (c *cfg) baseOpts(log *slog.Logger) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.DialTimeout(c.dialTimeout),
		kgo.WithLogger(kgox.Logger(log)),
	}, kgox.Security(c.tls, c.sasl)...)
}

// stageBaseOpts returns baseOpts with the metadata settings of a stage's
// client (stageMetadataMinAge, stageUnknownTopicRetries).
func (c *cfg) stageBaseOpts(log *slog.Logger) []kgo.Opt {
	return append(c.baseOpts(log),
		kgo.MetadataMinAge(stageMetadataMinAge),
		kgo.UnknownTopicRetries(stageUnknownTopicRetries),
	)
}

// newClient returns a client with baseOpts, then the user's KafkaOptions,
// then enforced, which no user option can replace. The client is not
// connected yet: an unreachable broker shows at its first request.
func (c *cfg) newClient(log *slog.Logger, enforced ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(slices.Concat(c.baseOpts(log), c.kgoOpts, enforced)...)
}
