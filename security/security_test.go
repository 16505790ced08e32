package security_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/security"
)

func ExampleTLSFiles_Config() {
	c, err := security.TLSFiles{
		CA:   "testdata/ca.pem",          // trust the brokers' CA
		Cert: "testdata/client-cert.pem", // mutual TLS: the client's certificate
		Key:  "testdata/client-key.pem",  // and its key
	}.Config()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.MinVersion == tls.VersionTLS12, c.RootCAs != nil, len(c.Certificates))
	// Output: true true 1
}

func ExampleSASL() {
	m, err := security.SASL("SCRAM-SHA-512", "wordcount", "secret from a file or the environment")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Name())
	_, err = security.SASL("GSSAPI", "wordcount", "x")
	fmt.Println(err)
	// Output:
	// SCRAM-SHA-512
	// security: unknown SASL mechanism "GSSAPI": use one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
}

func TestTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		files security.TLSFiles
		says  string
	}{
		{security.TLSFiles{CA: filepath.Join(dir, "missing.pem")}, "missing.pem"},
		{security.TLSFiles{CA: junk}, "holds no PEM certificate"},
		{security.TLSFiles{Cert: "testdata/client-cert.pem"}, "both"},
		{security.TLSFiles{Key: "testdata/client-key.pem"}, "both"},
		{security.TLSFiles{Cert: "testdata/client-cert.pem", Key: junk}, "junk.pem"},
		// A key that is not the certificate's.
		{security.TLSFiles{Cert: "testdata/ca.pem", Key: "testdata/client-key.pem"}, "does not match"},
	} {
		if _, err := tc.files.Config(); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: err %v, want one saying %q", tc.files, err, tc.says)
		}
	}
	c, err := security.TLSFiles{ServerName: "kafka.internal"}.Config()
	if err != nil || c.ServerName != "kafka.internal" || c.RootCAs != nil || c.Certificates != nil {
		t.Errorf("no files: %+v, %v; want the system's roots, no client certificate, the server name", c, err)
	}
}

func TestSASL(t *testing.T) {
	for _, name := range security.Mechanisms {
		m, err := security.SASL(strings.ToLower(name), "u", "p")
		if err != nil || m.Name() != name {
			t.Errorf("%s: %v, %v", name, m, err)
		}
	}
	// What PLAIN and OAUTHBEARER send carries the secret.
	_, msg, err := mustSASL(t, "PLAIN", "u", "p").Authenticate(context.Background(), "h:1")
	if err != nil || string(msg) != "\x00u\x00p" {
		t.Errorf("PLAIN sends %q, %v", msg, err)
	}
	_, msg, err = mustSASL(t, "OAUTHBEARER", "", "tok").Authenticate(context.Background(), "h:1")
	if err != nil || !strings.Contains(string(msg), "auth=Bearer tok") {
		t.Errorf("OAUTHBEARER sends %q, %v", msg, err)
	}
	for _, tc := range []struct{ mechanism, user, secret, says string }{
		{"SCRAM-SHA-256", "u", "", "empty password"},
		{"OAUTHBEARER", "", "", "empty token"},
		{"SCRAM-SHA-512", "", "p", "no user"},
		{"PLAIN", "", "p", "no user"},
		{"KERBEROS", "u", "p", "unknown SASL mechanism"},
	} {
		if _, err := security.SASL(tc.mechanism, tc.user, tc.secret); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: err %v", tc, err)
		}
	}
}

func mustSASL(t *testing.T, mechanism, user, secret string) sasl.Mechanism {
	t.Helper()
	m, err := security.SASL(mechanism, user, secret)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
