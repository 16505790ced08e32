package security

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseSecurity(t *testing.T, env map[string]string, args ...string) (Flags, error) {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var s Flags
	s.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s, s.Parse(func(k string) string { return env[k] })
}

// plainSecret returns the password a PLAIN mechanism sends.
func plainSecret(t *testing.T, s Flags) string {
	t.Helper()
	if s.SASL == nil || s.SASL.Name() != "PLAIN" {
		t.Fatalf("mechanism %v, want PLAIN", s.SASL)
	}
	_, msg, err := s.SASL.Authenticate(context.Background(), "host:9092")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(msg), "\x00") // authzid, user, password
	return parts[len(parts)-1]
}

func TestSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := parseSecurity(t, nil)
	if err != nil || s.TLS != nil || s.SASL != nil {
		t.Errorf("no flags: TLS %v, SASL %v, err %v; want none", s.TLS, s.SASL, err)
	}
	s, err = parseSecurity(t, nil, "-tls")
	if err != nil || s.TLS == nil || s.TLS.RootCAs != nil {
		t.Errorf("-tls: TLS %v, err %v; want TLS with the system's roots", s.TLS, err)
	}
	s, err = parseSecurity(t, nil, "-tls-server-name", "kafka.internal")
	if err != nil || s.TLS == nil || s.TLS.ServerName != "kafka.internal" {
		t.Errorf("-tls-server-name: TLS %v, err %v; want TLS for kafka.internal", s.TLS, err)
	}

	// The password: a file wins over the environment; a trailing newline
	// is not part of it.
	env := map[string]string{EnvSASLPassword: "from-env"}
	s, err = parseSecurity(t, env, "-sasl-mechanism", "plain", "-sasl-user", "u")
	if err != nil || plainSecret(t, s) != "from-env" {
		t.Errorf("password from $%s: err %v", EnvSASLPassword, err)
	}
	s, err = parseSecurity(t, env, "-sasl-mechanism", "PLAIN", "-sasl-user", "u", "-sasl-password-file", pwFile)
	if err != nil || plainSecret(t, s) != "from-file" {
		t.Errorf("password from -sasl-password-file: err %v", err)
	}
	s, err = parseSecurity(t, nil, "-sasl-mechanism", "SCRAM-SHA-512", "-sasl-user", "u", "-sasl-password-file", pwFile)
	if err != nil || s.SASL.Name() != "SCRAM-SHA-512" {
		t.Errorf("SCRAM-SHA-512: %v, err %v", s.SASL, err)
	}

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-tls-ca", filepath.Join(dir, "missing.pem")}, "missing.pem"},
		{[]string{"-tls-ca", pwFile}, "no PEM certificate"},
		{[]string{"-tls-cert", pwFile}, "both"},
		{[]string{"-sasl-user", "u"}, "-sasl-mechanism"},
		{[]string{"-sasl-mechanism", "SCRAM-SHA-256", "-sasl-user", "u"}, EnvSASLPassword},
		{[]string{"-sasl-mechanism", "GSSAPI", "-sasl-user", "u", "-sasl-password-file", pwFile}, "unknown SASL mechanism"},
		{[]string{"-sasl-mechanism", "PLAIN", "-sasl-password-file", pwFile}, "no user"},
		{[]string{"-sasl-mechanism", "PLAIN", "-sasl-user", "u", "-sasl-password-file", filepath.Join(dir, "nope")}, "-sasl-password-file"},
	} {
		if _, err := parseSecurity(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: err %v, want one saying %q", tc.args, err, tc.says)
		}
	}
}
