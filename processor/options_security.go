package processor

import (
	"crypto/tls"

	"github.com/twmb/franz-go/pkg/sasl"
)

// TLS makes every Kafka client of the processor (its stages' clients, its
// restores, global tables and admin requests) dial the brokers with TLS
// configured by c (Kafka's security.protocol=SSL, or SASL_SSL with SASL).
// Default: no TLS; nil turns it off again. security.TLSFiles.Config builds
// c from PEM files (a CA, and a client certificate and key for mutual TLS).
// c is cloned at every dial and must not be changed after New; when its
// ServerName is empty, each broker's certificate must name the host of that
// broker's address.
//
// A certificate that does not verify, either way, makes Run fail at start
// with ErrConfig, naming the cause and the fix, instead of retrying.
func TLS(c *tls.Config) Opt { return opt{func(cfg *cfg) { cfg.tls = c }} }

// SASL makes every Kafka client of the processor authenticate with m
// (Kafka's sasl.mechanism and sasl.jaas.config): franz-go's plain, scram,
// oauth or aws mechanism, or security.SASL's for a mechanism named as Kafka
// names it. Default: none; nil turns it off again. Use it with TLS: PLAIN
// sends the password in the clear otherwise.
//
// Credentials the brokers refuse make Run fail at start with ErrConfig. The
// principal needs the ACLs listed in docs/security.md; a missing one makes
// Run return a *FatalError naming it.
func SASL(m sasl.Mechanism) Opt { return opt{func(cfg *cfg) { cfg.sasl = m }} }
