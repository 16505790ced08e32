// Package testbroker gives tests a Kafka to talk to: the real broker named by
// the KAFKA_BROKERS environment variable (started by scripts/kafka, see the
// Makefile), or else an in-process kfake cluster owned by the test.
//
// Tests that need the real broker's behaviour are named TestIntegration* or
// TestCrash* (the Makefile runs those against the real broker); every test
// must also pass on kfake, which is what `go test ./...` gets by default.
//
// Security: Secure returns the secured broker of scripts/kafka-secure
// (SLUICE_SECURE_BROKERS; mutual TLS, SCRAM, ACLs), or skips the test
// without it; NewSecureKfake starts a kfake cluster that speaks only TLS
// and SCRAM, for the kfake pass.
//
// All tests of a run share one real broker, so name every topic, group,
// transactional id and application id with Unique.
//
// It is part of the test kit (internal/testkit): only _test.go files and
// the kit's other packages import it (crashtest's TestNotImportedByCode
// checks).
package testbroker
