package processor

import "github.com/twmb/franz-go/pkg/kgo"

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
	return opt{func(c *cfg) { c.kgoOpts = append(c.kgoOpts, kgo.WithHooks(allowRecreateMark{})) }}
}

// allowRecreateMark marks AllowChangelogRecreate. It rides with the franz-go
// options (a hook whose only method does nothing) until cfg has a field of
// its own: options.go is not this file's.
// TODO: move to a cfg field (cfg.allowChangelogRecreate) set by the option.
type allowRecreateMark struct{}

// OnNewClient implements kgo.HookNewClient, doing nothing: franz-go takes
// only hooks that implement some hook interface.
func (allowRecreateMark) OnNewClient(*kgo.Client) {}

// allowsChangelogRecreate reports whether AllowChangelogRecreate was given
// to the processor whose options built cl.
func allowsChangelogRecreate(cl *kgo.Client) bool {
	hooks, _ := cl.OptValue(kgo.WithHooks).([]kgo.Hook)
	for _, h := range hooks {
		if _, ok := h.(allowRecreateMark); ok {
			return true
		}
	}
	return false
}

// allowsChangelogRecreateCfg is allowsChangelogRecreate for code that has no
// client built from c's options at hand: it builds one (no connection is
// made before a request) and closes it.
func allowsChangelogRecreateCfg(c *cfg) bool {
	if len(c.kgoOpts) == 0 {
		return false
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.kgoOpts...)...)
	if err != nil {
		return false
	}
	defer cl.Close()
	return allowsChangelogRecreate(cl)
}
