package processor

// AllowChangelogRecreate lets the processor run on a store whose changelog
// topic was deleted and recreated although the stage's consumer group has
// committed input offsets: the tasks concerned are wiped and rebuilt from
// what the new changelog holds, so their state (counts, aggregates, joins'
// tables) restarts from there while the inputs already consumed are not read
// again. Kafka has no setting for it; Kafka Streams rebuilds silently.
//
// Default: off. Run then refuses such a changelog with a
// *ChangelogRecreatedError (wrapping ErrConfig), at start for every task
// with a local checkpoint naming the old topic id, and at each restore.
// Give it for the one start that should accept the loss (on every instance
// that has such checkpoints), then remove it.
func AllowChangelogRecreate() Opt {
	return opt{func(c *cfg) { c.allowChangelogRecreate = true }}
}
