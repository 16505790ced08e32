package topology

import (
	"errors"
	"fmt"
)

// PartitionPlan is how many partitions every stage and internal topic of a
// topology has, as the runtime creates them (and streamtest's driver
// simulates them). Make one with Topology.PlanPartitions.
type PartitionPlan struct {
	// Stages holds each stage's partition count, which is its number of
	// tasks, in the order of Topology.Stages. It is 0 for a stage whose
	// count an error left unknown.
	Stages []int
	// Internal maps the physical name of every internal topic (repartition
	// and loop topics) whose count is known to its partition count.
	Internal map[string]int
}

// PlanPartitions resolves the partition counts of the topology for
// application id app, by Kafka Streams' rules:
//   - a stage has the partition count of its inputs, which must all agree
//     (co-partitioning);
//   - a repartition topic has its Partitions, or else the count of the stage
//     that writes it;
//   - a declared loop without Partitions has the count of its stage's other
//     inputs.
//
// The rules are topology knowledge, kept once: the runtime (processor) and
// the test driver (streamtest) both call this function, so a test cannot see
// partitions the runtime would not create.
//
// userTopic returns the partition count of a user topic and whether the
// topic exists; every input and output topic of a stage must. (Global
// tables' topics are not the plan's business: no stage reads them.)
//
// It reports every problem at once, joined with errors.Join, each saying
// what to change; the plan then holds what could be resolved. It is pure:
// the runtime calls it with the cluster's metadata before it creates the
// internal topics, and streamtest with the driver's options.
func (t *Topology) PlanPartitions(app string, userTopic func(topic string) (partitions int, exists bool)) (PartitionPlan, error) {
	plan := PartitionPlan{Stages: make([]int, len(t.Stages)), Internal: map[string]int{}}
	var errs []error
	for i, s := range t.Stages {
		n, err := s.planPartitions(app, userTopic, plan.Internal, len(errs) > 0)
		errs = append(errs, err...)
		plan.Stages[i] = n
	}
	return plan, errors.Join(errs...)
}

// planPartitions resolves the partition count of s from its inputs, and then
// those of the internal topics it writes into counts (by physical name).
// Stages come upstream first, so counts already holds the internal topics s
// reads, except its loops. failed says that an earlier stage failed: then an
// internal input without a count is that stage's fault, not reported again.
func (s *Stage) planPartitions(app string, userTopic func(string) (int, bool), counts map[string]int, failed bool) (int, []error) {
	var errs []error
	n, first := 0, ""
	var loops []string
	writes := map[TopicRef]bool{}
	for _, out := range s.Outputs {
		writes[out] = true
	}
	for _, in := range s.Inputs {
		name := in.TopicName(app)
		var pc int
		switch {
		case !in.Internal:
			c, ok := userTopic(name)
			if !ok {
				errs = append(errs, fmt.Errorf("input topic %s of stage %s does not exist: create it first (for example: kafka-topics.sh --create --topic %s --partitions N)", name, s.Name, name))
				continue
			}
			pc = c
		case in.Partitions > 0:
			pc = in.Partitions
		case writes[in]:
			// A declared loop (stream.DeclareLoop: Build lets a stage
			// read what it writes only then) takes the count of the
			// stage's other inputs, known once they are all seen.
			loops = append(loops, name)
			continue
		default:
			pc = counts[name]
			if pc == 0 {
				if !failed && len(errs) == 0 {
					errs = append(errs, fmt.Errorf("internal topic %s of stage %s has no upstream stage writing it", name, s.Name))
				}
				continue
			}
		}
		if in.Internal {
			counts[name] = pc
		}
		if n == 0 {
			n, first = pc, name
		} else if pc != n {
			errs = append(errs, fmt.Errorf("stage %s reads topics that are not co-partitioned: %s has %d partitions, %s has %d; give them the same partition count",
				s.Name, first, n, name, pc))
		}
	}
	if n == 0 && len(loops) > 0 {
		errs = append(errs, fmt.Errorf("stage %s reads only its loop %s, whose partition count comes from the stage's other inputs; give the loop stream.Partitions",
			s.Name, loops[0]))
	}
	if n == 0 {
		return 0, errs
	}
	for _, l := range loops {
		counts[l] = n
	}
	for _, out := range s.Outputs {
		name := out.TopicName(app)
		switch {
		case !out.Internal:
			if _, ok := userTopic(name); !ok {
				errs = append(errs, fmt.Errorf("output topic %s of stage %s does not exist: create it first", name, s.Name))
			}
		case out.Partitions > 0:
			counts[name] = out.Partitions
		default:
			// Kafka Streams gives a repartition topic the partition
			// count of the writing stage's input.
			counts[name] = n
		}
	}
	return n, errs
}
