package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

func debugLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// printTable prints the results of one kind as a table: each row's median
// throughput with the spread of its rounds, its ratio to raw-alo's, its
// sustainable throughput and its latency at half of its throughput; then,
// below, what the table has no room for (paired ratios, probes, stages).
func printTable(w io.Writer, rs []Result, kind string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\n%s results\n", kind)
	fmt.Fprintln(tw, "scenario\tsystem\tcommit\trecords/s\tmin-max\tIQR\trounds\tMB/s\tvs raw-alo\tsustainable/s\tof drain\tp50/p99/max ms\tpaced at/s\tcpu us/rec\trss MB\toutput\t")
	for _, r := range rs {
		if r.Kind != kind {
			continue
		}
		ci := (time.Duration(r.CommitIntervalMs * float64(time.Millisecond))).String()
		switch {
		case r.Unsupported:
			fmt.Fprintf(tw, "%s\t%s\t%s\tnot supported yet (processor.New rejects %s)\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.System, ci, r.Guarantee)
			continue
		case r.Error != "" && r.RecordsPerS == 0:
			fmt.Fprintf(tw, "%s\t%s\t%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.System, ci, oneLine(r.Error))
			continue
		}
		ratio := "-"
		if r.RatioVsRawALO > 0 {
			ratio = fmt.Sprintf("%.2fx", r.RatioVsRawALO)
		}
		lat, paced := "-", "-"
		if r.LatencyRecords > 0 {
			lat = fmt.Sprintf("%.0f/%.0f/%.0f", r.P50Ms, r.P99Ms, r.MaxMs)
			paced = fmt.Sprintf("%.0f", r.LatencyRate)
		}
		sus, of := "-", "-"
		if len(r.Probes) > 1 {
			switch {
			case r.SustainablePerS == 0:
				sus = "< " + fmt.Sprintf("%.0f", lowestProbe(r.Probes))
			case strings.HasPrefix(r.SustainableNote, "at least"):
				sus = fmt.Sprintf(">= %.0f", r.SustainablePerS)
			default:
				sus = fmt.Sprintf("%.0f", r.SustainablePerS)
			}
			if r.SustainableOfDrain > 0 {
				of = fmt.Sprintf("%.0f%%", 100*r.SustainableOfDrain)
			}
		}
		minMax, iqr := "-", "-"
		if r.Spread.N > 1 {
			minMax = fmt.Sprintf("%.0f-%.0f", r.Spread.Min, r.Spread.Max)
			iqr = fmt.Sprintf("%.0f-%.0f", r.Spread.Q1, r.Spread.Q3)
		}
		output := r.Check
		if !r.Correct {
			output = "WRONG"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.0f\t%s\t\n",
			r.Scenario, r.System, ci, r.RecordsPerS, minMax, iqr, max(r.Spread.N, 1), r.MBPerS, ratio,
			sus, of, lat, paced, r.CPUUsPerRecord, r.RSSMB, output)
	}
	tw.Flush()
	printNotes(w, rs, kind)
}

// printNotes prints, below a table, what it has no room for: errors,
// failed rounds, paired ratios of the sluice rows, probes and stages.
func printNotes(w io.Writer, rs []Result, kind string) {
	for _, r := range rs {
		if r.Kind != kind {
			continue
		}
		name := r.Scenario + "/" + r.System
		if r.Error != "" && r.RecordsPerS != 0 {
			fmt.Fprintf(w, "  %s: %s\n", name, oneLine(r.Error))
		}
		if len(r.Failures) > 0 {
			fmt.Fprintf(w, "  %s: %d round(s) did not complete and do not count: %s\n", name, len(r.Failures), oneLine(r.Failures[0]))
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s: %s\n", name, n)
		}
		if len(r.RoundRatios) > 0 && strings.HasPrefix(r.System, "sluice") {
			var parts []string
			for _, b := range baselines {
				if xs := r.RoundRatios[b]; len(xs) > 0 {
					parts = append(parts, fmt.Sprintf("÷ %s %s", b, floats(xs, "%.2f")))
				}
			}
			fmt.Fprintf(w, "  %s per round: %s\n", name, strings.Join(parts, "; "))
		}
		if len(r.Probes) > 0 {
			var parts []string
			for _, p := range r.Probes {
				mark := "ok"
				if !p.Passed {
					mark = "miss"
					if p.EarlyStop {
						mark = "miss, stopped early"
					}
				}
				parts = append(parts, fmt.Sprintf("%.0f/s p99 %.0f (%s)", p.AchievedPerS, p.P99Ms, mark))
			}
			fmt.Fprintf(w, "  %s probes (bound %.0f ms): %s\n", name, r.BoundMs, strings.Join(parts, ", "))
		}
		if r.Stages != "" {
			fmt.Fprintf(w, "  %s stages in the window: %s\n", name, r.Stages)
		}
	}
}

func lowestProbe(ps []Probe) float64 {
	lo := ps[0].TargetPerS
	for _, p := range ps {
		lo = min(lo, p.TargetPerS)
	}
	return lo
}

func floats(xs []float64, format string) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf(format, x))
	}
	return strings.Join(parts, ", ")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// printTargets checks issue 5's and issue 15's targets for sluice-eos
// against the rows of the same run.
func printTargets(w io.Writer, rs []Result) {
	find := func(sc, sys string) *Result {
		for i := range rs {
			if rs[i].Kind == "table" && rs[i].Scenario == sc && rs[i].System == sys && rs[i].Correct {
				return &rs[i]
			}
		}
		return nil
	}
	fmt.Fprintln(w, "\ntargets (issues 5 and 15) for sluice-eos:")
	for _, sc := range scenarioNames {
		s := find(sc, "sluice-eos")
		if s == nil {
			continue
		}
		check := func(what string, ok bool, detail string) {
			mark := "MISSED"
			if ok {
				mark = "met"
			}
			fmt.Fprintf(w, "  %-12s %-40s %-6s %s\n", sc, what, mark, detail)
		}
		for _, t := range []struct {
			sys string
			min float64
		}{{"raw-alo", 0.8}, {"raw-eos", 0.95}, {"goka", 1.5}, {"goka-tuned", 1.5}} {
			if o := find(sc, t.sys); o != nil && o.RecordsPerS > 0 {
				ratio := s.RecordsPerS / o.RecordsPerS
				detail := fmt.Sprintf("%.2fx (medians)", ratio)
				if xs := s.RoundRatios[t.sys]; len(xs) > 0 {
					detail += "; per round " + floats(xs, "%.2f")
				}
				check(fmt.Sprintf(">= %.2fx %s", t.min, t.sys), ratio >= t.min, detail)
			}
		}
		if s.LatencyRecords > 0 {
			bound := float64(latencyBound(scenarios[sc], time.Duration(s.CommitIntervalMs*float64(time.Millisecond)))) / float64(time.Millisecond)
			check(fmt.Sprintf("p99 <= %.0f ms at half of throughput", bound), s.P99Ms <= bound, fmt.Sprintf("%.0f ms at %.0f records/s", s.P99Ms, s.LatencyRate))
		}
		if len(s.Probes) > 1 {
			check("sustainable >= 90% of throughput", s.SustainableOfDrain >= 0.9,
				fmt.Sprintf("%.0f of %.0f records/s (%.0f%%; %s)", s.SustainablePerS, s.RecordsPerS, 100*s.SustainableOfDrain, s.SustainableNote))
		}
	}
}

func printRestore(w io.Writer, rs []Result) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrestore results")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "from\tkeys\trestored records\trestore s\trecords/s\tassigned after s\tcorrect\t")
	var empty float64
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tFAILED: %s\t\t\t\t\t\t\n", r.Scenario, oneLine(r.Error))
			continue
		}
		rate := 0.0
		if r.RestoreS > 0 {
			rate = float64(r.RestoredRecords) / r.RestoreS
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.0f\t%.3f\t%v\t\n", r.Scenario, r.RestoreKeys, r.RestoredRecords, r.RestoreS, rate, r.AssignedS, r.Correct)
		if r.Scenario == "empty" {
			empty = r.RestoreS
		}
	}
	tw.Flush()
	for _, r := range rs {
		if r.Scenario == "1%-behind" && empty > 0 && r.Error == "" {
			ratio := r.RestoreS / empty
			mark := "MISSED"
			if ratio < 0.05 {
				mark = "met"
			}
			fmt.Fprintf(w, "target: restore from 1%% behind < 5%% of restore from empty: %.1f%% (%s)\n", 100*ratio, mark)
		}
	}
}
