package processor

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/security"
)

// kfakeSecure starts a kfake cluster that speaks only TLS and SCRAM-SHA-256
// (testbroker.NewSecureKfake) and returns its brokers, the TLS
// configuration and SASL mechanism of a client it accepts, and the same as
// client options.
func kfakeSecure(t *testing.T) ([]string, *tls.Config, sasl.Mechanism, []kgo.Opt) {
	t.Helper()
	c, ca := testbroker.NewSecureKfake(t)
	tc, err := security.TLSFiles{CA: ca}.Config()
	if err != nil {
		t.Fatal(err)
	}
	m, err := security.SASL("SCRAM-SHA-256", testbroker.KfakeUser, testbroker.KfakePassword)
	if err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs(), tc, m, []kgo.Opt{kgo.DialTLSConfig(tc), kgo.SASL(m)}
}

// TestSecureWordCount runs the word count with TLS and SASL on a cluster
// that accepts nothing else, so every client the processor makes (stages,
// restores, admin, purge) must carry both.
func TestSecureWordCount(t *testing.T) {
	brokers, tc, m, conn := kfakeSecure(t)
	in, out, app := testbroker.Unique(t, "in"), testbroker.Unique(t, "out"), testbroker.Unique(t, "app")
	adm := testbroker.NewClient(t, brokers, conn...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, topic := range []string{in, out} {
		if _, err := kadm.NewClient(adm).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	lines, want, total := randomLines(5, 200, 30)
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Topic: in, Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	if err := adm.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	p, err := New(wordcount(t, in, out), append(testOpts(t, brokers, app), TLS(tc), SASL(m), PurgeInterval(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	for {
		got := testbroker.ReadCommittedConn(t, brokers, conn, out)
		if len(got) >= total {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned with %d of %d counts: %v", len(got), total, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCounts(t, testbroker.ReadCommittedConn(t, brokers, conn, out), want)
}

// TestSecureStartErrors checks that a broker certificate from an unknown CA,
// and no TLS where the brokers speak it, fail Run at start naming the option
// to fix, rather than waiting for the startup timeout (one hour here).
// (kfake answers a wrong password by closing the connection, where Kafka
// says SASL_AUTHENTICATION_FAILED: TestIntegrationSecureConnectErrors
// covers that on the secured broker.)
func TestSecureStartErrors(t *testing.T) {
	brokers, _, right, _ := kfakeSecure(t)
	systemRoots, err := security.TLSFiles{}.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []Opt
		want error // ErrConfig: sure of the cause; ErrUnreachable: a guess
		says string
	}{
		{"unknown CA", []Opt{TLS(systemRoots), SASL(right)}, ErrConfig, "processor.TLS"},
		// kfake closes the connection where Kafka sends a TLS alert:
		// a guess, which a broker shutting down would also cause.
		{"no TLS", []Opt{SASL(right)}, ErrUnreachable, "processor.TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(wordcount(t, "in", "out"), append(append(testOpts(t, brokers, testbroker.Unique(t, "app")),
				StartupTimeout(time.Hour)), tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Run(context.Background())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("want %v saying %q, got %v", tc.want, tc.says, err)
			}
		})
	}
}
