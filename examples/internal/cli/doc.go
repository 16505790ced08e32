// Package cli holds the little the example binaries share so that each
// example's main.go can show only its topology and how a user runs it
// (processor.New with options, then Run): the flags every example
// processor binary takes (their names are a public interface), checked
// before anything starts, TLS and SASL ones included (Security, whose
// password never comes from a flag of its own); the logger; -describe; and the embedded demo's
// broker, an in-process Kafka (franz-go's kfake) with a temporary state
// directory, so that `go run ./examples/<name>` works on a machine with
// nothing else installed.
//
// Only the examples import it: it sits under examples/internal, so Go
// refuses it to any other package. Nothing here configures the processor;
// the examples pass every option themselves.
package cli
