package stream

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/topology"
)

// DOT returns the topology as a Graphviz graph (render it with, e.g.,
// `dot -Tsvg`): one cluster per stage holding its operators and stores;
// topics are ellipses outside the clusters (internal ones dashed), stores
// cylinders, and dotted edges link operators to the stores they use.
// Stages, internal topics and stores whose names were generated are drawn
// in red: they are what the WARNING lines of String flag.
func (t *Topology) DOT() string { return t.dot }

// dot renders the DOT form of a built topology.
// dotCluster writes stage s, the i-th, as a cluster of its operators and
// stores.
func dotCluster(w *strings.Builder, i int, s *Stage) {
	fmt.Fprintf(w, "  subgraph cluster_%d {\n", i)
	label := fmt.Sprintf("Stage %q", s.Name)
	fmt.Fprintf(w, "    label=%s;\n", dotQuote(label))
	if s.GeneratedName {
		w.WriteString("    fontcolor=red;\n")
	}
	w.WriteString("    style=rounded;\n")
	for _, n := range s.nodes {
		fmt.Fprintf(w, "    %s [label=%s];\n", dotNode(n), dotQuote(n.label()))
	}
	for _, st := range s.stores {
		attrs := "shape=cylinder, style=solid, label=" + dotQuote(st.Name)
		if st.GeneratedName {
			attrs += ", color=red"
		}
		fmt.Fprintf(w, "    %s [%s];\n", dotStore(st.Name), attrs)
	}
	w.WriteString("  }\n")
}

func dot(stages []*Stage) string {
	var w strings.Builder
	w.WriteString("digraph topology {\n")
	w.WriteString("  rankdir=LR;\n")
	w.WriteString("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n")
	w.WriteString("  edge [fontname=\"Helvetica\"];\n")

	topics := map[topology.TopicRef]bool{} // declared topic nodes
	var topicOrder []topology.TopicRef
	generated := map[topology.TopicRef]bool{}
	addTopic := func(t *topicRef) {
		r := t.ref()
		if !topics[r] {
			topics[r] = true
			topicOrder = append(topicOrder, r)
		}
		if t.generated && t.internal {
			generated[r] = true
		}
	}
	var edges []string
	var globals []*globalDecl // global tables read by the stages' operators
	edge := func(from, to, attrs string) {
		e := fmt.Sprintf("  %s -> %s", from, to)
		if attrs != "" {
			e += " [" + attrs + "]"
		}
		edges = append(edges, e+";")
	}

	for i, s := range stages {
		dotCluster(&w, i, s)

		for _, n := range s.nodes {
			if n.in != nil {
				addTopic(n.in)
				edge(dotTopic(n.in.ref()), dotNode(n), "")
			}
			if n.parent != nil {
				edge(dotNode(n.parent), dotNode(n), "")
			}
			for _, o := range n.others {
				edge(dotNode(o), dotNode(n), "")
			}
			for _, t := range n.out {
				addTopic(t)
				edge(dotNode(n), dotTopic(t.ref()), "")
			}
			for _, st := range n.stores {
				edge(dotNode(n), dotStore(st.name), "style=dotted, arrowhead=none")
			}
			for _, d := range globalsOf(n) {
				if !slices.Contains(globals, d) {
					globals = append(globals, d)
					addTopic(d.topic)
					edge(dotTopic(d.topic.ref()), dotGlobal(d), "")
				}
				edge(dotGlobal(d), dotNode(n), "style=dotted")
			}
		}
	}
	for _, r := range topicOrder {
		label := r.Name
		attrs := "shape=ellipse, style=solid"
		if r.Internal {
			attrs = "shape=ellipse, style=dashed"
			label += "\n(internal)"
		}
		if r.Partitions > 0 {
			label += fmt.Sprintf("\n%d partitions", r.Partitions)
		}
		if generated[r] {
			attrs += ", color=red"
		}
		fmt.Fprintf(&w, "  %s [%s, label=%s];\n", dotTopic(r), attrs, dotQuote(label))
	}
	for _, d := range globals {
		fmt.Fprintf(&w, "  %s [shape=cylinder, style=dashed, label=%s];\n", dotGlobal(d), dotQuote("global table "+d.n.name))
	}
	for _, e := range edges {
		w.WriteString(e + "\n")
	}
	w.WriteString("}\n")
	return w.String()
}

func dotNode(n *node) string { return fmt.Sprintf("\"op%d\"", n.id) }

func dotStore(name string) string { return dotQuote("store:" + name) }

func dotTopic(r topology.TopicRef) string {
	if r.Internal {
		return dotQuote("internal:" + r.Name)
	}
	return dotQuote("topic:" + r.Name)
}

// dotQuote returns s as a DOT quoted string: backslashes and double quotes
// escaped, newlines as \n.
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
