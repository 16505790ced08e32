package stream

// ProcessOption configures a Process or ProcessTo call. Every Option is a
// ProcessOption; Uses and EmitsTo are ProcessOptions only, because only a
// low-level processor reaches stores and outputs by reference.
type ProcessOption interface {
	apply(*opConfig)
	processOption()
}

// TopicOption configures an operator that owns an internal topic:
// Repartition, GroupBy, GroupByKey, TableGroupBy and DeclareLoop. Every
// Option is a TopicOption; Partitions is a TopicOption only.
type TopicOption interface {
	apply(*opConfig)
	topicOption()
}

// SourceOption configures a Source. Every Option is a SourceOption;
// ExtractTimestamp is a SourceOption only.
type SourceOption interface {
	apply(*opConfig)
	sourceOption()
}

// Option configures any operator (Source, Map, GroupBy, Count, To, ...).
type Option interface {
	ProcessOption
	TopicOption
	SourceOption
	anyOperator()
}

// opConfig collects the options of one DSL call.
type opConfig struct {
	name       string
	named      bool
	stores     []AnyStoreRef
	outputs    []AnyOutputRef
	partitions int  // Partitions(n)
	partSet    bool // Partitions was given
	timers     []timer
	extractor  any // ExtractTimestamp's function
}

func configure[O interface{ apply(*opConfig) }](opts []O) opConfig {
	var c opConfig
	for _, o := range opts {
		if any(o) != nil {
			o.apply(&c)
		}
	}
	return c
}

type namedOpt string

func (o namedOpt) apply(c *opConfig) { c.name, c.named = string(o), true }
func (namedOpt) anyOperator()        {}
func (namedOpt) topicOption()        {}
func (namedOpt) processOption()      {}
func (namedOpt) sourceOption()       {}

// Named names the operator it is given to. Default: a generated name of the
// operator's kind and its position in the builder, e.g. "count-3".
//
// The name is more than a label. It names, depending on the operator:
//   - the stage, when the operator is the stage's first source (Source,
//     SourceTable, DeclareLoop), or the operator whose repartition topic
//     feeds the stage (GroupBy, GroupByKey, Repartition, TableGroupBy): the
//     runtime derives the stage's consumer group and transactional ids
//     from it;
//   - the state store of SourceTable, Count, Aggregate, Reduce,
//     TableAggregate, TableCount and TableReduce, and so its changelog
//     topic "<app>-<name>-changelog";
//   - the repartition topic of GroupBy, GroupByKey, Repartition and
//     TableGroupBy: "<app>-<name>-repartition";
//   - the loop topic of DeclareLoop: "<app>-<name>-loop".
//
// Renaming any of these later silently loses committed offsets or state, so
// the topology description warns about every generated one. Names must be
// unique among operators (and among stores), and consist of ASCII letters,
// digits, '.', '_' and '-'; Build reports violations. If Named is given twice,
// the last one wins.
func Named(name string) Option { return namedOpt(name) }

type usesOpt []AnyStoreRef

func (o usesOpt) apply(c *opConfig) { c.stores = append(c.stores, o...) }
func (usesOpt) processOption()      {}

// Uses declares the stores a Process function reads or writes. A store must
// be listed to be used: Get, Put, Delete and the scans return an error
// wrapping ErrUndeclaredStore for any other store. Processors that share a
// store run in the same stage (Build merges their stages), since a store
// partition belongs to one task.
func Uses(stores ...AnyStoreRef) ProcessOption { return usesOpt(stores) }

type emitsOpt []AnyOutputRef

func (o emitsOpt) apply(c *opConfig) { c.outputs = append(c.outputs, o...) }
func (emitsOpt) processOption()      {}

// EmitsTo declares the outputs a Process function emits to. Emit returns an
// error wrapping ErrUndeclaredOutput for any other output. The outputs' topics
// become outputs of the stage, which Build checks for cycles.
func EmitsTo(outputs ...AnyOutputRef) ProcessOption { return emitsOpt(outputs) }

type partitionsOpt int

func (o partitionsOpt) apply(c *opConfig) { c.partitions, c.partSet = int(o), true }
func (partitionsOpt) topicOption()        {}

// Partitions sets the partition count of the internal topic the operator
// writes (a repartition or loop topic). Default: the partition count of the
// input of the stage that writes it, as in Kafka Streams; the runtime creates
// the topic with it. n must be at least 1 (Build reports ErrInvalidArgument).
//
// On GroupByKey, Partitions makes it repartition even when the key did not
// change: asking for a partition count asks for a topic.
//
// The count is part of the topic's identity: changing it later needs the
// topic deleted (its unprocessed records are lost) and the downstream
// stage's stores rebuilt, since keys move between partitions. The stage
// that reads the topic has as many tasks as it has partitions, so it can
// spread over at most n instances; all inputs of a stage must have the same
// count (Build checks the counts it knows, the runtime the others).
func Partitions(n int) TopicOption { return partitionsOpt(n) }
