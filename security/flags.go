package security

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
)

// EnvSASLPassword names the environment variable holding the SASL password
// (or OAUTHBEARER token) when no -sasl-password-file is given.
const EnvSASLPassword = "SLUICE_SASL_PASSWORD"

// Flags holds the parsed TLS and SASL flags of a command: hand TLS and SASL
// to processor.TLS and processor.SASL (or sink.TLS and sink.SASL); nil means
// off. A password is never a flag of its own (flags show in ps and shell
// histories): it comes from -sasl-password-file or SLUICE_SASL_PASSWORD.
// The example binaries and the sluice command take these flags; the flag
// package accepts them with one dash or two (--tls-ca), as Kafka's tools
// spell theirs.
type Flags struct {
	TLS  *tls.Config
	SASL sasl.Mechanism

	useTLS                        bool
	files                         TLSFiles
	mechanism, user, passwordFile string
}

// Register defines the TLS and SASL flags on fs.
func (s *Flags) Register(fs *flag.FlagSet) {
	fs.BoolVar(&s.useTLS, "tls", false, "connect with TLS, trusting the system's CAs (implied by any -tls-* flag)")
	fs.StringVar(&s.files.CA, "tls-ca", "", "PEM `file` of the CA that signed the brokers' certificates (default: the system's)")
	fs.StringVar(&s.files.Cert, "tls-cert", "", "PEM `file` of the client certificate, for brokers that require one (mutual TLS; with -tls-key)")
	fs.StringVar(&s.files.Key, "tls-key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&s.files.ServerName, "tls-server-name", "", "`name` the brokers' certificates must carry (default: each broker's host)")
	fs.StringVar(&s.mechanism, "sasl-mechanism", "", "SASL `mechanism`: "+strings.Join(Mechanisms, ", ")+" (default: no SASL)")
	fs.StringVar(&s.user, "sasl-user", "", "SASL `user` (OAUTHBEARER: an optional authorization id)")
	fs.StringVar(&s.passwordFile, "sasl-password-file", "", "`file` holding the SASL password or OAUTHBEARER token (default: $"+EnvSASLPassword+")")
}

// Parse builds TLS and SASL from the parsed flags, reading the files they
// name; getenv reads the environment (os.Getenv). It fails, naming the flag,
// on a file that cannot be read or used, a SASL flag without
// -sasl-mechanism, or a mechanism without a password.
func (s *Flags) Parse(getenv func(string) string) error {
	f := s.files
	if s.useTLS || f.CA != "" || f.Cert != "" || f.Key != "" || f.ServerName != "" {
		c, err := f.Config()
		if err != nil {
			return fmt.Errorf("-tls flags: %w", err)
		}
		s.TLS = c
	}
	if s.mechanism == "" {
		if s.user != "" || s.passwordFile != "" {
			return errors.New("-sasl-user and -sasl-password-file need -sasl-mechanism")
		}
		return nil
	}
	secret := getenv(EnvSASLPassword)
	if s.passwordFile != "" {
		b, err := os.ReadFile(s.passwordFile)
		if err != nil {
			return fmt.Errorf("-sasl-password-file: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	if secret == "" {
		return fmt.Errorf("-sasl-mechanism %s needs a password (or token): put it in a file given with -sasl-password-file, or in $%s", s.mechanism, EnvSASLPassword)
	}
	m, err := SASL(s.mechanism, s.user, secret)
	if err != nil {
		return fmt.Errorf("-sasl flags: %w", err)
	}
	s.SASL = m
	return nil
}
