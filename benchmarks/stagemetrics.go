package main

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/sluicehq/sluice/processor"
)

// stageDelta returns, per stage, every numeric field of
// processor.StageMetrics as it grew from a to b (a may be nil: from zero),
// keyed by the field's name in snake case; durations in seconds, with "_s"
// appended. It walks the struct by reflection, so fields the runtime adds
// later show up in the JSON without a change here.
func stageDelta(a, b map[string]processor.StageMetrics) map[string]map[string]float64 {
	if len(b) == 0 {
		return nil
	}
	out := map[string]map[string]float64{}
	durType := reflect.TypeFor[time.Duration]()
	for name, mb := range b {
		ma := a[name]
		va, vb := reflect.ValueOf(ma), reflect.ValueOf(mb)
		t := vb.Type()
		fields := map[string]float64{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			key := snake(f.Name)
			switch {
			case f.Type == durType:
				fields[key+"_s"] = time.Duration(vb.Field(i).Int() - va.Field(i).Int()).Seconds()
			case vb.Field(i).CanInt():
				fields[key] = float64(vb.Field(i).Int() - va.Field(i).Int())
			case vb.Field(i).CanUint():
				fields[key] = float64(vb.Field(i).Uint() - va.Field(i).Uint())
			case vb.Field(i).CanFloat():
				fields[key] = vb.Field(i).Float() - va.Field(i).Float()
			}
		}
		out[name] = fields
	}
	return out
}

// snake turns a Go field name into snake case: CommitTime -> commit_time.
func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// describeStages says per stage what a cycle cost: records per committed
// cycle, and the time per cycle spent ending it (StageMetrics.CommitTime:
// changelogs, flush, offset commit, EndTxn) and applying it
// (StageMetrics.ApplyTime).
func describeStages(d map[string]map[string]float64) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(d)) {
		m := d[name]
		commits := m["commits"]
		s := fmt.Sprintf("%s: %.0f records in %.0f commits", name, m["records"], commits)
		if commits > 0 {
			s += fmt.Sprintf(" (%.0f records/commit; per commit: ending %.1f ms, applying %.1f ms)",
				m["records"]/commits, 1000*m["commit_time_s"]/commits, 1000*m["apply_time_s"]/commits)
		}
		for _, k := range []string{"aborts", "restarts", "lost_cycles"} {
			if m[k] > 0 {
				s += fmt.Sprintf(", %s %.0f", strings.ReplaceAll(k, "_", " "), m[k])
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
