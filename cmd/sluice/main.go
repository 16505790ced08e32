// Command sluice is the operator's tool for sluice applications: it talks to
// Kafka (franz-go's kadm) and needs no processor binary.
//
//	sluice status --app A [--brokers host:port,...]
//	sluice reset  --app A [--to-earliest | --to-datetime T | --by-duration D] [--keep-internal] [--dry-run]
//	sluice topics --app A --plan FILE [--replication-factor N] [--dry-run]
//
// --brokers defaults to $KAFKA_BROKERS. Every command takes the TLS and SASL
// flags of package security (--tls, --tls-ca, --tls-cert, --tls-key,
// --tls-server-name, --sasl-mechanism, --sasl-user, --sasl-password-file; the
// password from that file or $SLUICE_SASL_PASSWORD). An application's stages are found by
// their consumer groups, <app>-<stage>, and its internal topics by their
// names, <app>-<name>-changelog and <app>-<name>-repartition
// (docs/concepts.md). Flags take one or two dashes, as in Kafka's tools.
//
// Exit status: 0 on success, 1 when the command failed (an unknown
// application, unreachable brokers, members still active on reset), 2 on a
// usage error. A reset that refuses changes nothing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/security"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: sluice <command> --app A [flags]

commands:
  status   the application's stages (consumer groups), members, tasks, lag and internal topics
  reset    reset the application to reprocess its input (stop every instance first)
  topics   create (or check) the internal topics of a plan that a processor binary printed

Run "sluice <command> -h" for a command's flags.
`

// errUsage marks errors in the command line (exit status 2).
var errUsage = errors.New("usage")

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "status":
		err = status(ctx, args[1:], stdout, stderr)
	case "reset":
		err = reset(ctx, args[1:], stdout, stderr)
	case "topics":
		err = topics(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "sluice:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
}

// common are the flags every command takes.
type common struct {
	brokers string
	app     string
	timeout time.Duration
	sec     security.Flags // --tls*, --sasl-*
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]` (default $KAFKA_BROKERS)")
	fs.StringVar(&c.app, "app", "", "the application id (required)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up on the brokers after this long")
	c.sec.Register(fs)
}

// parse parses args into fs and checks the common flags.
func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if c.app == "" {
		return fmt.Errorf("%w: --app is required: the application id the processors run with", errUsage)
	}
	if c.brokers == "" {
		return fmt.Errorf("%w: no brokers: give --brokers host:port or set KAFKA_BROKERS", errUsage)
	}
	if err := c.sec.Parse(os.Getenv); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// admin returns an admin client, after checking that the brokers answer.
func (c *common) admin(ctx context.Context) (*kadm.Client, func(), error) {
	opts := append([]kgo.Opt{kgo.SeedBrokers(strings.Split(c.brokers, ",")...), kgo.DialTimeout(5 * time.Second)},
		kgox.Security(c.sec.TLS, c.sec.SASL)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		if fix := connectFix(err); fix != "" {
			return nil, nil, fmt.Errorf("connecting to %s: %w: %s", c.brokers, err, fix)
		}
		return nil, nil, fmt.Errorf("no answer from the brokers %s within %v: %w", c.brokers, c.timeout, err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// connectFix is kgox.ConnectFix's advice for a connection the brokers did
// not secure or authenticate, naming this command's flags.
func connectFix(err error) string {
	fix, _ := kgox.ConnectFix("sluice", err)
	return strings.NewReplacer(
		"with sluice.SASL", "with --sasl-mechanism, --sasl-user and --sasl-password-file",
		"set sluice.SASL", "give --sasl-mechanism",
		"choose one they do with sluice.SASL", "choose one they do with --sasl-mechanism",
		"with sluice.TLS (security.TLSFiles.CA, -tls-ca)", "with --tls-ca",
		"with sluice.TLS (security.TLSFiles.Cert and Key, -tls-cert and -tls-key)", "with --tls-cert and --tls-key",
		"(security.TLSFiles.ServerName, -tls-server-name) with sluice.TLS", "with --tls-server-name",
		"remove sluice.TLS", "leave out the --tls flags",
		"set sluice.TLS (security.TLSFiles, -tls-ca)", "give --tls (and --tls-ca for a private CA)",
		"set sluice.TLS", "give --tls",
	).Replace(fix)
}
