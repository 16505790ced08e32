// Package topology is the runtime's view of a built stream.Topology: its
// stages with the topics they read and write, their stores and their
// compiled programs, its global tables, and the partition-count rules that
// the runtime and the test driver share (Topology.PlanPartitions).
//
// Package stream builds it, and only sluice's runtime (package processor)
// and test driver (package streamtest), and their tests, import it; users
// compose topologies with package stream alone. It plays the part of Kafka
// Streams' InternalTopologyBuilder beside its Topology: what a topology
// means to the runtime lives here, out of the user's API. Of hands it out:
//
//	for _, st := range topology.Of(topo).Stages { ... }
//
// Everything here is immutable once Build returns and safe for concurrent
// use; slices are shared and must not be modified.
package topology
