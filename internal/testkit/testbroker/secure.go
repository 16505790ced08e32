package testbroker

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/security"
)

// EnvSecureBrokers and EnvSecureDir name the environment variables that
// point the security tests at the broker scripts/kafka-secure runs (set them
// with `eval "$(scripts/kafka-secure env)"`): its bootstrap address, and
// the directory whose tls/ holds its CA, client certificate and passwords.
const (
	EnvSecureBrokers = "SLUICE_SECURE_BROKERS"
	EnvSecureDir     = "SLUICE_SECURE_DIR"
)

// SecureBroker is the broker of scripts/kafka-secure: SASL_SSL with client
// certificates required, SCRAM users "admin" (a super user) and "app" (no
// ACLs until a test grants them), and StandardAuthorizer.
type SecureBroker struct {
	Brokers []string
	// TLSFiles are the CA and the client certificate the broker requires.
	TLSFiles security.TLSFiles
	// AdminPassword and AppPassword are the users' passwords.
	AdminPassword, AppPassword string
}

// Secure returns the secured broker, or skips the test when
// SLUICE_SECURE_BROKERS is not set: kfake has no TLS, SASL or ACLs. It
// fails the test when the variable is set but the files cannot be read or
// the broker does not answer the admin user.
func Secure(t testing.TB) SecureBroker {
	t.Helper()
	addr := os.Getenv(EnvSecureBrokers)
	if addr == "" {
		t.Skipf("testbroker: %s is not set: this test needs the secured broker of scripts/kafka-secure (make test-secure)", EnvSecureBrokers)
	}
	dir := os.Getenv(EnvSecureDir)
	if dir == "" {
		dir = "/tmp/sluice-kafka-secure"
	}
	tlsDir := filepath.Join(dir, "tls")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(tlsDir, name))
		if err != nil {
			t.Fatalf("testbroker: secured broker: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	s := SecureBroker{
		Brokers: strings.Split(addr, ","),
		TLSFiles: security.TLSFiles{
			CA:   filepath.Join(tlsDir, "ca.pem"),
			Cert: filepath.Join(tlsDir, "client-cert.pem"),
			Key:  filepath.Join(tlsDir, "client-key.pem"),
		},
		AdminPassword: read("admin.password"),
		AppPassword:   read("app.password"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Admin(t).BrokerMetadata(ctx); err != nil {
		t.Fatalf("testbroker: the secured broker %s does not answer its admin: %v (start it with: scripts/kafka-secure start)", addr, err)
	}
	return s
}

// TLS returns the TLS configuration of a client the broker accepts.
func (s SecureBroker) TLS(t testing.TB) *tls.Config {
	t.Helper()
	c, err := s.TLSFiles.Config()
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	return c
}

// Mechanism returns the SASL mechanism named mechanism for user with
// password.
func (s SecureBroker) Mechanism(t testing.TB, mechanism, user, password string) sasl.Mechanism {
	t.Helper()
	m, err := security.SASL(mechanism, user, password)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	return m
}

// AdminOpts are the client options of the super user "admin".
func (s SecureBroker) AdminOpts(t testing.TB) []kgo.Opt {
	t.Helper()
	return []kgo.Opt{kgo.DialTLSConfig(s.TLS(t)), kgo.SASL(s.Mechanism(t, "SCRAM-SHA-512", "admin", s.AdminPassword))}
}

// Admin returns an admin client of the super user, closed when the test
// ends.
func (s SecureBroker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(NewClient(t, s.Brokers, s.AdminOpts(t)...))
}

// ReadCommitted is testbroker.ReadCommitted as the super user.
func (s SecureBroker) ReadCommitted(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	return ReadCommittedConn(t, s.Brokers, s.AdminOpts(t), topic)
}

// Produce writes records to topic as the super user and waits for them.
func (s SecureBroker) Produce(t testing.TB, topic string, recs ...*kgo.Record) {
	t.Helper()
	cl := NewClient(t, s.Brokers, append(s.AdminOpts(t), kgo.DefaultProduceTopic(topic))...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("testbroker: producing to %s as admin: %v", topic, err)
	}
}
