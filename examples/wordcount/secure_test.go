package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestIntegrationSecureFlags runs the word count as the binary configures
// it from its flags, -tls-* and -sasl-* included, on the secured broker of
// scripts/kafka-secure (mutual TLS, SCRAM-SHA-512), as its super user: the
// flags reach every client, or the broker refuses the connection. The ACLs
// an ordinary principal needs are processor's TestIntegrationSecure*.
func TestIntegrationSecureFlags(t *testing.T) {
	sb := testbroker.Secure(t)
	app := testbroker.Unique(t, "wc")
	in, out := app+"-lines", app+"-counts"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sb.Admin(t).CreateTopics(ctx, 2, -1, nil, in, out); err != nil {
		t.Fatal(err)
	}
	sb.Produce(t, in, &kgo.Record{Value: []byte("b a b")}, &kgo.Record{Value: []byte("c b")})

	fs := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "wordcount", OnError: "fail", Result: "the counts"})
	tlsDir := filepath.Dir(sb.TLSFiles.CA)
	if _, err := f.Parse(fs, []string{
		"-brokers", strings.Join(sb.Brokers, ","), "-app", app, "-state-dir", t.TempDir(),
		"-session-timeout", "6s", "-heartbeat-interval", "500ms",
		"-tls-ca", sb.TLSFiles.CA, "-tls-cert", sb.TLSFiles.Cert, "-tls-key", sb.TLSFiles.Key,
		"-sasl-mechanism", "SCRAM-SHA-512", "-sasl-user", "admin",
		"-sasl-password-file", filepath.Join(tlsDir, "admin.password"),
	}); err != nil {
		t.Fatal(err)
	}
	topo, err := Topology(in, out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProcessor(topo, f, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	want := map[string]int{"a": 1, "b": 3, "c": 1}
	deadline := time.Now().Add(3 * time.Minute) // generous: a loaded machine
	for {
		got := map[string]int{}
		for _, r := range sb.ReadCommitted(t, out) {
			n, _ := strconv.Atoi(string(r.Value))
			got[string(r.Key)] = n
		}
		if len(got) == len(want) && got["a"] == 1 && got["b"] == 3 && got["c"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts %v after 3 minutes, want %v", got, want)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned with counts %v (want %v): %v", got, want, err)
		case <-time.After(time.Second):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
