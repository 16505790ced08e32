// Command tosql maintains a table of account balances in SQLite or
// PostgreSQL from a Kafka topic of payments, exactly once: each input record
// (key = account, value = a decimal amount, positive or negative) adds its
// amount to its account's total in the same database transaction that
// stores the topic's offsets. A crash, a rebalance or a paused process
// (a zombie) neither loses nor double-counts a payment.
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, loads payments from standard input ("account amount" per line)
// when it is not a terminal (a built-in sample otherwise), writes them to a
// temporary SQLite database and prints the table:
//
//	printf 'alice 10\nbob 5\nalice -3\n' | go run ./examples/tosql
//
// With -brokers it is a long-running binary: it runs until SIGINT or
// SIGTERM, and several copies with the same -app and database share the
// partitions.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tosql:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers        string
	input          string
	app            string
	instanceID     string
	commitInterval time.Duration
	maxRecords     int
	dbPath         string
	dbGiven        bool
	postgres       string
	table          string
	ledger         bool
	partitions     int
	verbose        bool
	timeout        time.Duration

	sessionTimeout, heartbeat, rebalanceTimeout, writeTimeout time.Duration

	security cli.Security // -tls*, -sasl-*
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tosql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print the table")
	fs.StringVar(&c.input, "input", "payments", "input `topic`: key = account, value = decimal amount")
	fs.StringVar(&c.app, "app", "tosql", "application id: the consumer group is <app>-sink, and the database stores its offsets under that name")
	fs.StringVar(&c.instanceID, "instance-id", "", "static group membership id (default: none, dynamic membership)")
	fs.DurationVar(&c.commitInterval, "commit-interval", 100*time.Millisecond, "how long one database transaction gathers records")
	fs.IntVar(&c.maxRecords, "max-records", 1000, "at most this many records per database transaction")
	fs.StringVar(&c.dbPath, "db", "tosql.sqlite", "SQLite database `file` (embedded demo: a temporary one unless given)")
	fs.StringVar(&c.postgres, "postgres", "", "PostgreSQL `DSN` (postgres://user@host:port/db); overrides -db")
	fs.StringVar(&c.table, "table", "balances", "table of balances (account, total, updates)")
	fs.BoolVar(&c.ledger, "ledger", false, "also keep one row per input record in <table>_ledger, keyed by (topic, partition_id, record_offset)")
	fs.DurationVar(&c.sessionTimeout, "session-timeout", 45*time.Second, "group session timeout (Kafka's session.timeout.ms): how long a crashed instance keeps its partitions")
	fs.DurationVar(&c.heartbeat, "heartbeat-interval", 3*time.Second, "group heartbeat interval (Kafka's heartbeat.interval.ms)")
	fs.DurationVar(&c.rebalanceTimeout, "rebalance-timeout", time.Minute, "group rebalance timeout: it must cover a batch's every write attempt")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 15*time.Second, "bound of one database write")
	fs.IntVar(&c.partitions, "partitions", 4, "embedded demo: partitions of the input topic it creates")
	fs.BoolVar(&c.verbose, "v", false, "log at info level (debug with KAFKA_DEBUG=1)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "embedded demo: give up waiting for the table after this long")
	c.security.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { c.dbGiven = c.dbGiven || f.Name == "db" })
	if err := c.security.Parse(os.Getenv); err != nil {
		return err
	}
	if !validTable(c.table) {
		return fmt.Errorf("-table %q: use letters, digits and '_', not starting with a digit", c.table)
	}
	if c.commitInterval <= 0 {
		return fmt.Errorf("-commit-interval %v must be positive", c.commitInterval)
	}
	if c.maxRecords <= 0 {
		return fmt.Errorf("-max-records %d must be positive", c.maxRecords)
	}

	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	if os.Getenv("KAFKA_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if c.brokers == "" {
		return runEmbedded(ctx, c, stdin, stdout, logger)
	}
	db, err := openDB(c)
	if err != nil {
		return err
	}
	defer db.Close()
	var s sink.Sink
	s, err = newSink(db, c)
	if err != nil {
		return err
	}
	s = withTestHooks(s, stderr)
	r, err := newRunner(s, c, strings.Split(c.brokers, ","), logger)
	if err != nil {
		return err
	}
	logger.Info("running", "app", c.app, "group", r.Group(), "brokers", c.brokers)
	err = r.Run(ctx)
	m := r.Metrics()
	logger.Info("stopped", "batches", m.Batches, "records", m.Records, "fenced", m.Fenced, "restarts", m.Restarts, "retries", m.Retries)
	return err
}

// openDB opens the PostgreSQL database of -postgres, or else the SQLite file
// of -db.
func openDB(c config) (*sql.DB, error) {
	if c.postgres != "" {
		db, err := sql.Open("pgx", c.postgres)
		if err != nil {
			return nil, fmt.Errorf("-postgres: %w", err)
		}
		return db, nil
	}
	db, err := sqlsink.OpenSQLite(c.dbPath)
	if err != nil {
		return nil, fmt.Errorf("-db %s: %w", c.dbPath, err)
	}
	return db, nil
}

// newRunner configures the sink's runner from the flags.
func newRunner(s sink.Sink, c config, brokers []string, logger *slog.Logger) (*sink.Runner, error) {
	return sink.New(s,
		sink.Brokers(brokers...),
		sink.ApplicationID(c.app),
		sink.InstanceID(c.instanceID),
		sink.Topics(c.input),
		sink.CommitInterval(c.commitInterval),
		sink.MaxRecordsPerBatch(c.maxRecords),
		sink.SessionTimeout(c.sessionTimeout),
		sink.HeartbeatInterval(c.heartbeat),
		sink.RebalanceTimeout(c.rebalanceTimeout),
		sink.WriteTimeout(c.writeTimeout),
		sink.TLS(c.security.TLS),
		sink.SASL(c.security.SASL),
		sink.Logger(logger),
	)
}

func validTable(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
