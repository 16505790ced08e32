// Package security builds the TLS and SASL settings of sluice's Kafka clients
// from the files and names an operator has: PEM files for TLS (a CA, and a
// client certificate and key for mutual TLS) and a SASL mechanism's name with
// its user and secret. Hand the results to processor.TLS and processor.SASL
// (or sink.TLS and sink.SASL).
//
// It is a convenience: any *tls.Config and any franz-go sasl.Mechanism
// (github.com/twmb/franz-go/pkg/sasl and its plain, scram, oauth and aws
// packages) work with those options, for what it does not cover, such as an
// OAUTHBEARER token that is refreshed, or a key in a hardware module.
//
// The ACLs an application's principal needs on a secured cluster are listed
// in docs/security.md.
//
// Flags registers and parses the TLS and SASL flags (-tls-ca, -tls-cert,
// -tls-key, -sasl-mechanism, ...) that the example binaries
// (examples/internal/cli) and the sluice command take. Users' processor
// binaries may import it too; processor and sink do not.
package security
