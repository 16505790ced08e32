// Package cluster drives the replicated test cluster of scripts/kafka
// (SLUICE_KAFKA_NODES=3: three combined broker+controller KRaft nodes,
// replication factor 3, min.insync.replicas 2) for the fault tests: it kills
// (kill -9), stops and starts nodes by id through the script, waits until
// every partition is in sync again, finds which node leads a partition or
// coordinates a group or a transactional id, and measures how long an
// application went without committing after a fault (CommitWatch).
//
// Open skips the test unless such a cluster runs: SLUICE_KAFKA_NODES is 3
// or more, `scripts/kafka status` (with the test's SLUICE_KAFKA_*
// environment) reports every node running, and KAFKA_BROKERS names its
// nodes. `make test-cluster` sets all of that up.
//
// It is part of the test kit (internal/testkit): only _test.go files, the
// kit's other packages and its commands (kafkaisr) import it (crashtest's
// TestNotImportedByCode checks).
package cluster
