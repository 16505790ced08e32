package kgox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
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

// Security returns the client options that dial with TLS config t and
// authenticate with SASL mechanism m; nil leaves each out.
func Security(t *tls.Config, m sasl.Mechanism) []kgo.Opt {
	var opts []kgo.Opt
	if t != nil {
		opts = append(opts, kgo.DialTLSConfig(t)) // cloned at every dial
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// ConnectFix returns what to change when err, from a request to the brokers,
// says the connection could not be secured or authenticated: a SASL
// failure, a certificate that does not verify (either way), TLS spoken to a
// port that does not, or none spoken to one that requires it. pkg names the
// options in the message ("processor", "sink"). It returns "" for any other
// error, which may be transient. guess reports a diagnosis that may be
// wrong: a connection closed at once is also what a broker that is shutting
// down does.
func ConnectFix(pkg string, err error) (fix string, guess bool) {
	if err == nil {
		return "", false
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		op        *net.OpError
		header    tls.RecordHeaderError
		firstEOF  *kgo.ErrFirstReadEOF
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Sprintf("the brokers refused the SASL credentials: check the mechanism, user and password given with %s.SASL", pkg), false
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Sprintf("the brokers do not enable this SASL mechanism (their sasl.enabled.mechanisms): choose one they do with %s.SASL", pkg), false
	case errors.As(err, &unknownCA):
		return fmt.Sprintf("the broker's certificate is not signed by a CA this client trusts: give the CA that signed it with %s.TLS (security.TLSFiles.CA, -tls-ca)", pkg), false
	case errors.As(err, &hostname):
		return fmt.Sprintf("the broker's certificate does not name the address dialed: use the name it carries in the broker addresses, or set the TLS ServerName (security.TLSFiles.ServerName, -tls-server-name) with %s.TLS", pkg), false
	case errors.As(err, &invalid):
		return "the broker's certificate is not valid (expired, not yet valid, or not usable for a server): renew it on the brokers", false
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert the broker sent as a *net.OpError
		// "remote error" around an unexported type.
		return fmt.Sprintf("the broker refused the TLS handshake: when it requires client certificates (ssl.client.auth=required), give one signed by a CA it trusts with %s.TLS (security.TLSFiles.Cert and Key, -tls-cert and -tls-key)", pkg), false
	case errors.As(err, &header):
		return fmt.Sprintf("the broker's port does not speak TLS: remove %s.TLS, or use the brokers' TLS listener", pkg), false
	case strings.Contains(err.Error(), "is this a plaintext connection speaking to a tls endpoint"):
		// franz-go's guess from a TLS alert record read as a response
		// size; it has no error type of its own.
		return fmt.Sprintf("the broker's port speaks TLS: set %s.TLS (security.TLSFiles, -tls-ca)", pkg), false
	case errors.As(err, &firstEOF):
		return fmt.Sprintf("the broker closed the connection at once: it probably requires TLS (set %[1]s.TLS) or SASL (set %[1]s.SASL) on this listener, or does not speak TLS while the client does", pkg), true
	}
	return "", false
}
