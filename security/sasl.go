package security

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Mechanisms are the SASL mechanism names SASL accepts, as Kafka spells them
// (sasl.mechanism).
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"}

// SASL returns the franz-go mechanism named mechanism (one of Mechanisms, in
// any case) authenticating user with secret: the password for PLAIN and
// SCRAM, the bearer token for OAUTHBEARER (where user, if not empty, is the
// authorization id). It fails on an unknown mechanism, an empty secret, or
// an empty user where the mechanism needs one. PLAIN sends the password as
// is: use it only over TLS.
func SASL(mechanism, user, secret string) (sasl.Mechanism, error) {
	m := strings.ToUpper(mechanism)
	if !slices.Contains(Mechanisms, m) {
		return nil, fmt.Errorf("security: unknown SASL mechanism %q: use one of %s", mechanism, strings.Join(Mechanisms, ", "))
	}
	if secret == "" {
		what := "password"
		if m == "OAUTHBEARER" {
			what = "token"
		}
		return nil, fmt.Errorf("security: SASL %s: empty %s", m, what)
	}
	if user == "" && m != "OAUTHBEARER" {
		return nil, fmt.Errorf("security: SASL %s: no user", m)
	}
	switch m {
	case "PLAIN":
		return plain.Auth{User: user, Pass: secret}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: secret}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: secret}.AsSha512Mechanism(), nil
	default: // OAUTHBEARER
		return oauth.Auth{Zid: user, Token: secret}.AsMechanism(), nil
	}
}
