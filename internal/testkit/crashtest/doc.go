// Package crashtest runs an example's binary as child processes for the
// kill -9 crash tests of examples/...: it builds the binary, starts named
// instances (each with its own state directory and log file), kills them
// with SIGKILL aimed at a moment when one of their Kafka transactions is
// open, stops them with SIGTERM, and waits for a read_committed reader to
// see the expected number of records while instances are alive.
//
// What a crash test checks (which outputs are exact, what counts) stays in
// the test's own package; this package only drives the processes and
// reports how they ended.
//
// It is part of the test kit (internal/testkit): only _test.go files import
// it (TestNotImportedByCode checks). Helpers fail the test through
// testing.TB and never panic.
//
// # Recovery
//
// Instances must recover from every fault without help: Kill and Stop fail
// the test when an instance exited by itself before they reached it
// (Harness.ExitBeforeStopOK relaxes that for Stop). Run the tests of a
// harness from one goroutine; a Harness is not safe for concurrent use.
package crashtest
