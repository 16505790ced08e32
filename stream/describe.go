package stream

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/topology"
)

// describe renders the description of a built topology.
func describe(b *Builder, stages []*Stage) string {
	var w strings.Builder
	nstores := 0
	for _, s := range stages {
		nstores += len(s.stores)
	}
	fmt.Fprintf(&w, "Topology: %s, %s", plural(len(stages), "stage"), plural(nstores, "store"))
	if len(b.globals) > 0 {
		fmt.Fprintf(&w, ", %s", plural(len(b.globals), "global table"))
	}
	w.WriteString("\n")
	var warnings []string
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }

	for _, s := range stages {
		fmt.Fprintf(&w, "Stage %q\n", s.Name)
		fmt.Fprintf(&w, "  inputs:  %s\n", refs(s.inputs))
		if len(s.outputs) > 0 {
			fmt.Fprintf(&w, "  outputs: %s\n", refs(s.outputs))
		}
		if len(s.stores) > 0 {
			names := make([]string, len(s.stores))
			for i, st := range s.stores {
				names[i] = st.Name
				if st.Internal {
					names[i] += " (stream time)"
				}
			}
			fmt.Fprintf(&w, "  stores:  %s\n", strings.Join(names, ", "))
		}
		if gs := stageGlobals(s); len(gs) > 0 {
			fmt.Fprintf(&w, "  globals: %s\n", strings.Join(gs, ", "))
		}
		seen := map[*node]bool{}
		for _, src := range s.sources {
			describeNode(&w, src, 1, seen)
		}

		if s.GeneratedName {
			warn("stage %q has a generated name: renaming it later loses its committed offsets; name its first operator with stream.Named", s.Name)
		}
		loops := s.loops()
		for _, r := range s.outputs {
			if !r.Internal {
				continue
			}
			if op := generatedTopicWriter(s, r); op != "" {
				if loops[r] {
					warn("loop topic %q has a generated name: renaming it later loses the records in it; name its DeclareLoop with stream.Named", r.Name)
				} else {
					warn("repartition topic %q has a generated name: renaming it later loses the records in it; name its %s with stream.Named", r.Name, op)
				}
			}
		}
		written := map[topology.TopicRef]bool{}
		for _, r := range s.outputs {
			written[r] = true
		}
		for _, r := range s.inputs {
			if loops[r] && !written[r] {
				warn("loop topic %q is never written: nothing comes back through it; write it with stream.LoopTo or Emit to its Output", r.Name)
			}
		}
		for _, st := range s.stores {
			if st.GeneratedName {
				warn("store %q has a generated name: renaming it later loses its state; name its operator with stream.Named", st.Name)
			}
		}
	}
	warnings = append(warnings, describeGlobals(&w, b)...)
	for _, st := range b.stores {
		if len(st.users) == 0 {
			warn("store %q is declared but no Process uses it; it belongs to no stage", st.name)
		}
	}
	for _, o := range b.outputs {
		if len(o.users) == 0 {
			warn("output %q is declared but no Process emits to it", o.topic.name)
		}
	}
	for _, m := range warnings {
		fmt.Fprintf(&w, "WARNING: %s\n", m)
	}
	return w.String()
}

// describeNode writes n and the operators downstream of it, indented. An
// operator with several inputs (Merge, joins) is written in full under the
// first of them reached, and as a reference under the others.
func describeNode(w *strings.Builder, n *node, depth int, seen map[*node]bool) {
	fmt.Fprintf(w, "%s%s", strings.Repeat("  ", depth), n.label())
	if seen[n] {
		w.WriteString(" (see above)\n")
		return
	}
	seen[n] = true
	if n.details != "" {
		w.WriteString(" " + n.details)
	} else if n.in != nil {
		w.WriteString(" <- " + n.in.String())
	}
	w.WriteString("\n")
	for _, c := range n.children {
		describeNode(w, c, depth+1, seen)
	}
}

// generatedTopicWriter returns the operator kind that writes r, when r's
// name was generated, or "".
func generatedTopicWriter(s *Stage, r topology.TopicRef) string {
	for _, n := range s.nodes {
		for _, t := range n.out {
			if t.ref() == r && t.generated {
				return n.op
			}
		}
	}
	return ""
}

func refs(rs []topology.TopicRef) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Name
		if r.Internal {
			parts[i] += " (internal)"
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
