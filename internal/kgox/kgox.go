package kgox

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Logger adapts a *slog.Logger to franz-go's Logger. franz-go's info messages
// are logged at debug: they narrate every rebalance and transaction.
func Logger(l *slog.Logger) kgo.Logger { return logger{l} }

type logger struct{ l *slog.Logger }

func (k logger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (k logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelDebug
	}
	k.l.Log(context.Background(), l, "kafka: "+msg, keyvals...)
}

// ValidName reports whether s is usable in Kafka topic names, group ids and
// transactional ids: 1 to 200 letters, digits, '.', '_' and '-'.
func ValidName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// CheckName returns the error of a name (what names it: "application id")
// that ValidName refuses, or nil.
func CheckName(what, name string) error {
	if ValidName(name) {
		return nil
	}
	return fmt.Errorf("%s %q: use only letters, digits, '.', '_' and '-'", what, name)
}

// Client holds the settings that every sluice component running a consumer
// group (processor, sink) takes, so that their options are checked alike.
type Client struct {
	// Pkg is the package whose options set these, for the messages:
	// "processor" or "sink".
	Pkg string

	Brokers    []string
	App        string
	InstanceID string // "" for none

	Session, Rebalance, Heartbeat time.Duration

	Logger *slog.Logger
}

// Check returns one error per bad setting, each naming the option to
// change: no brokers or one that is not host:port, a missing or invalid
// application id, an invalid instance id, a heartbeat interval not below
// the session timeout, a rebalance timeout shorter than half the session
// timeout, and a nil logger.
func (c Client) Check() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if len(c.Brokers) == 0 {
		bad("no brokers: set %s.Brokers (a -brokers flag or KAFKA_BROKERS)", c.Pkg)
	}
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			bad("broker %q is not host:port", b)
		}
	}
	if c.App == "" {
		bad("no application id: set %s.ApplicationID", c.Pkg)
	} else if err := CheckName("application id", c.App); err != nil {
		errs = append(errs, err)
	}
	if c.InstanceID != "" {
		if err := CheckName("instance id", c.InstanceID); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Heartbeat <= 0 || c.Heartbeat >= c.Session {
		bad("heartbeat interval %v must be positive and below the session timeout %v", c.Heartbeat, c.Session)
	}
	if c.Rebalance < c.Session/2 {
		bad("rebalance timeout %v is too short for session timeout %v", c.Rebalance, c.Session)
	}
	if c.Logger == nil {
		bad("logger is nil: pass a *slog.Logger, or leave the option out to discard logs")
	}
	return errs
}
