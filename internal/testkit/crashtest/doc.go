// Package crashtest runs an example's binary as child processes for the
// kill -9 crash tests of examples/...: it builds the binary, starts named
// instances (each with its own state directory and log file), kills them
// with SIGKILL aimed at a moment when one of their Kafka transactions is
// open, stops them with SIGTERM, and waits for a read_committed reader to
// see the expected number of records while instances are alive.
//
// It also holds the frame every example's crash test shares (Run: -short,
// the seed, the build, one subtest per instance count), the Kafka chores
// around it (topics, a producer that keeps records in the partition they
// name, keys per partition, waiting for a group's commits) and the two
// checks several of them make: CheckExactlyOnce (every expected output
// exactly once, nothing else) and CheckRunningCounts (every key's counts
// 1, 2, ..., n). What a crash test expects (its generator, its expected
// outputs, what counts as proof that it proved something) stays in the
// test's own package.
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
