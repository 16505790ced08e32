package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestIntegrationSecureFlags runs sluice status on the secured broker of
// scripts/kafka-secure (mutual TLS, SCRAM-SHA-512): with the --tls-* and
// --sasl-* flags it gets through and reports the application unknown;
// without a flag the broker needs, it fails at once with the flag to give.
// `sluice topics` with these flags is processor's
// TestIntegrationSecureTopicsWithoutCreate.
func TestIntegrationSecureFlags(t *testing.T) {
	sb := testbroker.Secure(t)
	app := testbroker.Unique(t, "none")
	tlsDir := filepath.Dir(sb.TLSFiles.CA)
	brokers := strings.Join(sb.Brokers, ",")
	tlsFlags := []string{"--tls-ca", sb.TLSFiles.CA, "--tls-cert", sb.TLSFiles.Cert, "--tls-key", sb.TLSFiles.Key}
	saslFlags := []string{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "admin", "--sasl-password-file", filepath.Join(tlsDir, "admin.password")}
	base := []string{"status", "--app", app, "--brokers", brokers, "--timeout", "20s"}

	code, out, errOut := sluice(append(append(base, tlsFlags...), saslFlags...)...)
	if code != 1 || !strings.Contains(errOut, "no application") {
		t.Errorf("with the flags: exit %d, want 1 and no application\n%s%s", code, out, errOut)
	}

	code, _, errOut = sluice(append(base, saslFlags...)...)
	if code != 1 || !strings.Contains(errOut, "--tls") {
		t.Errorf("without TLS: exit %d, want 1 and advice naming --tls\n%s", code, errOut)
	}
	code, _, errOut = sluice(append(append(base, tlsFlags...), "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "admin")...)
	if code != 2 || !strings.Contains(errOut, "password") {
		t.Errorf("SASL without a password: exit %d, want 2 (usage)\n%s", code, errOut)
	}
	pw := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(pw, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = sluice(append(append(base, tlsFlags...), "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "admin", "--sasl-password-file", pw)...)
	if code != 1 || !strings.Contains(errOut, "--sasl") {
		t.Errorf("a wrong password: exit %d, want 1 and advice naming the --sasl flags\n%s", code, errOut)
	}
}
