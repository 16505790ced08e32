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

// printTable prints the results of one kind as a table, with each row's
// throughput as a ratio of raw-alo's in the same scenario.
func printTable(w io.Writer, rs []Result, kind string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\n%s results\n", kind)
	fmt.Fprintln(tw, "scenario\tsystem\tcommit\trecords/s\tMB/s\tvs raw-alo\tp50 ms\tp99 ms\tmax ms\tcpu s\trss MB\tcorrect\t")
	for _, r := range rs {
		if r.Kind != kind {
			continue
		}
		ci := (time.Duration(r.CommitIntervalMs * float64(time.Millisecond))).String()
		switch {
		case r.Unsupported:
			fmt.Fprintf(tw, "%s\t%s\t%s\tnot supported yet (processor.New rejects %s)\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.System, ci, r.Guarantee)
			continue
		case r.Error != "" && r.RecordsPerS == 0:
			fmt.Fprintf(tw, "%s\t%s\t%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.System, ci, oneLine(r.Error))
			continue
		}
		ratio := "-"
		if r.RatioVsRawALO > 0 {
			ratio = fmt.Sprintf("%.2fx", r.RatioVsRawALO)
		}
		lat := func(v float64) string {
			if r.LatencyRecords == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%v\t\n",
			r.Scenario, r.System, ci, r.RecordsPerS, r.MBPerS, ratio,
			lat(r.P50Ms), lat(r.P99Ms), lat(r.MaxMs), r.CPUS, r.RSSMB, r.Correct)
	}
	tw.Flush()
	for _, r := range rs {
		if r.Kind == kind && r.Error != "" && r.RecordsPerS != 0 {
			fmt.Fprintf(w, "  %s/%s: %s\n", r.Scenario, r.System, oneLine(r.Error))
		}
		if r.Kind == kind && len(r.Failures) > 0 {
			fmt.Fprintf(w, "  %s/%s: %d round(s) did not complete and do not count: %s\n", r.Scenario, r.System, len(r.Failures), oneLine(r.Failures[0]))
		}
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// printTargets checks issue 5's targets for sluice-eos against the rows of
// the same run.
func printTargets(w io.Writer, rs []Result) {
	find := func(sc, sys string) *Result {
		for i := range rs {
			if rs[i].Kind == "table" && rs[i].Scenario == sc && rs[i].System == sys && rs[i].Correct {
				return &rs[i]
			}
		}
		return nil
	}
	fmt.Fprintln(w, "\ntargets (issue 5) for sluice-eos:")
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
			fmt.Fprintf(w, "  %-12s %-34s %-6s %s\n", sc, what, mark, detail)
		}
		for _, t := range []struct {
			sys string
			min float64
		}{{"raw-alo", 0.8}, {"raw-eos", 0.95}, {"goka", 1.5}} {
			if o := find(sc, t.sys); o != nil && o.RecordsPerS > 0 {
				ratio := s.RecordsPerS / o.RecordsPerS
				check(fmt.Sprintf(">= %.2fx %s", t.min, t.sys), ratio >= t.min, fmt.Sprintf("%.2fx", ratio))
			}
		}
		if s.LatencyRecords > 0 {
			bound := float64(scenarios[sc].stages)*s.CommitIntervalMs + 100
			check(fmt.Sprintf("p99 <= %.0f ms", bound), s.P99Ms <= bound, fmt.Sprintf("%.0f ms at %.0f records/s", s.P99Ms, s.LatencyRate))
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
