package crashtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestTxnOpen(t *testing.T) {
	txns := func(idStates ...string) kadm.DescribedTransactions {
		out := kadm.DescribedTransactions{}
		for i := 0; i < len(idStates); i += 2 {
			out[idStates[i]] = kadm.DescribedTransaction{TxnID: idStates[i], State: idStates[i+1]}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		txns kadm.DescribedTransactions
		want bool
	}{
		{"none", nil, false},
		{"ongoing", txns("app-split-i1", "Ongoing"), true},
		{"prepare commit", txns("app-split-i1", "PrepareCommit"), true},
		{"prepare abort", txns("app-by-word-i1", "PrepareAbort"), true},
		{"complete commit", txns("app-split-i1", "CompleteCommit"), false},
		{"complete abort", txns("app-split-i1", "CompleteAbort"), false},
		{"empty", txns("app-split-i1", "Empty"), false},
		{"dead", txns("app-split-i1", "Dead"), false},
		{"epoch fence", txns("app-split-i1", "PrepareEpochFence"), false},
		{"another instance", txns("app-split-i2", "Ongoing"), false},
		{"an instance whose name ends in ours", txns("app-split-xi1", "Ongoing", "app-split-i11", "Ongoing"), false},
		{"another app", txns("other-split-i1", "Ongoing", "app2-split-i1", "Ongoing"), false},
		{"one stage of several", txns("app-split-i1", "CompleteCommit", "app-by-word-i1", "Ongoing", "app-split-i2", "Empty"), true},
	} {
		if got := txnOpen(tc.txns, "app", "i1"); got != tc.want {
			t.Errorf("%s: txnOpen(%v, app, i1) = %v, want %v", tc.name, tc.txns.Sorted(), got, tc.want)
		}
	}
}

func TestErrorLines(t *testing.T) {
	log := strings.Join([]string{
		`time=1 level=INFO msg="assigned"`,
		`time=2 level=ERROR msg="commit failed"`,
		`time=3 level=WARN msg="processor stopped" err=fenced`,
		`wordcount: stage split: fenced`,
		`  wordcount: indented, not the fatal line`,
		`enrich: another binary's line`,
	}, "\n")
	got := errorLines(log, "wordcount:")
	want := "time=2 level=ERROR msg=\"commit failed\"\ntime=3 level=WARN msg=\"processor stopped\" err=fenced\nwordcount: stage split: fenced"
	if got != want {
		t.Errorf("errorLines:\n%s\nwant:\n%s", got, want)
	}

	var many []string
	for i := 0; i < 2*maxErrorLines; i++ {
		many = append(many, fmt.Sprintf("level=ERROR n=%d", i))
	}
	lines := strings.Split(errorLines(strings.Join(many, "\n"), "x:"), "\n")
	if len(lines) != maxErrorLines || lines[0] != fmt.Sprintf("level=ERROR n=%d", maxErrorLines) || lines[len(lines)-1] != many[len(many)-1] {
		t.Errorf("errorLines of %d error lines kept %d, from %q to %q; want the last %d", len(many), len(lines), lines[0], lines[len(lines)-1], maxErrorLines)
	}
}

func TestParseSeed(t *testing.T) {
	if s, err := parseSeed("", 7); s != 7 || err != nil {
		t.Errorf(`parseSeed("", 7) = %d, %v; want 7, nil`, s, err)
	}
	if s, err := parseSeed("18446744073709551615", 7); s != 1<<64-1 || err != nil {
		t.Errorf("parseSeed(max uint64) = %d, %v", s, err)
	}
	for _, bad := range []string{"-1", "x", "1.5"} {
		if _, err := parseSeed(bad, 7); err == nil {
			t.Errorf("parseSeed(%q) did not fail", bad)
		}
	}
}

// recorder is a testing.TB that records Errorf and Logf instead of failing
// the real test (whose TempDir and Cleanup it uses).
type recorder struct {
	testing.TB
	errs, logs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}
func (r *recorder) Logf(format string, a ...any) { r.logs = append(r.logs, fmt.Sprintf(format, a...)) }
func (r *recorder) Failed() bool                 { return len(r.errs) > 0 }

// shHarness runs /bin/sh -c script(name) as its instances.
func shHarness(t *testing.T, script func(name string) string) (*Harness, *recorder) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	rec := &recorder{TB: t}
	h := New(rec, sh, nil, "app")
	h.Flags = func(name string) []string { return []string{"-c", script(name)} }
	h.Profile = []string{"profile"} // $0 of the script
	return h, rec
}

// waitExited waits until instance name's process has exited.
func waitExited(t *testing.T, h *Harness, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !h.Proc(name).Exited(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not exit", name)
		}
	}
}

// waitStarted waits until instance name's script has logged that it
// started (its trap is set).
func waitStarted(t *testing.T, h *Harness, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.LogTail(name), "started"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing in the log %s", h.LogPath(name))
		}
	}
}

// TestLifecycle starts shell processes that stand for instances and checks
// what Stop, KillNow and KillAll report.
func TestLifecycle(t *testing.T) {
	const loop = `echo "started $NAME $0 $EXTRA"; while :; do sleep 0.02; done`
	h, rec := shHarness(t, func(name string) string {
		switch name {
		case "clean": // exits 0 on SIGTERM
			return `trap 'echo "stopping"; exit 0' TERM; ` + loop
		case "unclean": // exits 3 on SIGTERM
			return `trap 'echo "level=ERROR msg=bad"; exit 3' TERM; ` + loop
		case "quitter", "quitter-ok": // exits 0 by itself
			return `echo "bye"; exit 0`
		case "quitter-bad": // exits 3 by itself
			return `echo "bye"; exit 3`
		default: // dies of SIGTERM, or of SIGKILL
			return loop
		}
	})
	h.Env = []string{"NAME=x"}

	h.Start("clean", "EXTRA=y")
	waitStarted(t, h, "clean")
	h.Stop("clean")
	if got, want := h.LogTail("clean"), "started x profile y\nstopping\n"; got != want || rec.Failed() {
		t.Fatalf("clean stop: log %q (want %q), errors %q", got, want, rec.errs)
	}
	if h.Proc("clean") != nil {
		t.Errorf("a stopped instance is still known")
	}
	if !h.Alive() {
		t.Errorf("alive with no instance is false: a wait before the first start would read nothing")
	}

	h.Start("unclean")
	waitStarted(t, h, "unclean")
	h.Stop("unclean")
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "instance unclean exited with exit status 3 after SIGTERM") {
		t.Errorf("stopping an instance that exits 3: errors %q", rec.errs)
	}
	rec.errs = nil

	// An instance that exits by itself fails Stop, unless
	// ExitBeforeStopOK (and only with status 0).
	h.Start("quitter")
	waitExited(t, h, "quitter")
	if h.Alive() {
		t.Errorf("alive with the only instance exited is true: a wait would not end")
	}
	h.Stop("quitter")
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "instance quitter exited by itself (<nil>) before it was stopped") {
		t.Errorf("stopping an instance that had exited: errors %q", rec.errs)
	}
	rec.errs = nil
	h.ExitBeforeStopOK = true
	h.Start("quitter-ok")
	waitExited(t, h, "quitter-ok")
	h.Stop("quitter-ok")
	if rec.Failed() {
		t.Errorf("stopping an instance that had exited with 0, ExitBeforeStopOK: errors %q", rec.errs)
	}
	h.Start("quitter-bad")
	waitExited(t, h, "quitter-bad")
	h.Stop("quitter-bad")
	if len(rec.errs) != 2 || !strings.Contains(rec.errs[0], "instance quitter-bad exited by itself (exit status 3) before it was stopped") {
		t.Errorf("stopping an instance that had exited with 3, ExitBeforeStopOK: errors %q", rec.errs)
	}
	rec.errs = nil

	// KillNow kills a running and a stopped (SIGSTOP) process; KillAll
	// the rest, and logs every started instance's errors once failed.
	h.Start("a")
	h.Start("b")
	h.Start("c")
	p := h.Proc("a")
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	h.KillNow("a")
	if !p.Exited() || h.Proc("a") != nil {
		t.Errorf("KillNow left a stopped process running or known")
	}
	if !h.Alive() {
		t.Errorf("alive with b and c running is false")
	}
	if err := os.MkdirAll(h.StateDir("b"), 0o755); err != nil || filepath.Dir(h.StateDir("b")) != h.Dir {
		t.Errorf("state directory %s: %v", h.StateDir("b"), err)
	}
	b, c := h.Proc("b"), h.Proc("c")
	rec.errs = []string{"the test failed"}
	h.KillAll()
	if !b.Exited() || !c.Exited() || h.Proc("b") != nil || h.Proc("c") != nil {
		t.Errorf("KillAll left processes running or known")
	}
	logged := strings.Join(rec.logs, "\n")
	for _, n := range []string{"clean", "unclean", "quitter", "a", "b", "c"} {
		if !strings.Contains(logged, "errors in the log of "+n+":") || !strings.Contains(logged, "log of "+n+": ") {
			t.Errorf("KillAll of a failed test did not log %s's log; logged:\n%s", n, logged)
		}
	}
	if !strings.Contains(logged, "level=ERROR msg=bad") {
		t.Errorf("KillAll did not log unclean's ERROR line; logged:\n%s", logged)
	}
}

// TestNotImportedByCode checks that only tests import the test kit
// (internal/testkit/...: this package starts processes and kills them, the
// others start brokers and cut connections); the kit's own packages may
// import each other.
func TestNotImportedByCode(t *testing.T) {
	const kit = "github.com/sluicehq/sluice/internal/testkit/"
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "github.com/sluicehq/sluice/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if strings.HasPrefix(f[0], kit) {
			continue
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, kit) {
				t.Errorf("%s imports %s outside its tests", f[0], imp)
			}
		}
	}
}

// fatalRecorder is a recorder whose Fatalf records and stops the check's
// goroutine, as testing.T's does.
type fatalRecorder struct {
	recorder
	fatal string
}

func (r *fatalRecorder) Fatalf(format string, a ...any) {
	r.fatal = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// check runs f on a fresh fatalRecorder on a goroutine of its own and
// returns the recorder.
func check(t *testing.T, f func(r *fatalRecorder)) *fatalRecorder {
	r := &fatalRecorder{recorder: recorder{TB: t}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestCheckExactlyOnce(t *testing.T) {
	want := map[string]int{"a 1": 1, "b 1": 1, "c 2": 2}
	for _, tc := range []struct {
		name  string
		got   []string
		fatal string // "" if the check passes
	}{
		{"exact", []string{"c 2", "a 1", "b 1", "c 2"}, ""},
		{"missing", []string{"a 1", "c 2", "c 2"}, "1 missing, 0 emitted more than once (0 extra copies), 0 not made"},
		{"twice", []string{"a 1", "a 1", "b 1", "c 2", "c 2"}, "0 missing, 1 emitted more than once (1 extra copies), 0 not made"},
		{"unknown", []string{"a 1", "b 1", "c 2", "c 2", "d 1"}, "0 missing, 0 emitted more than once (0 extra copies), 1 not made"},
	} {
		r := check(t, func(r *fatalRecorder) {
			CheckExactlyOnce(r, tc.got, want, 7, func(k string) string { return "explained" })
		})
		if tc.fatal == "" {
			if r.fatal != "" || r.Failed() {
				t.Errorf("%s: failed: %q %q", tc.name, r.fatal, r.errs)
			}
			continue
		}
		if !strings.Contains(r.fatal, tc.fatal) || !strings.Contains(r.fatal, "seed 7") || len(r.errs) == 0 {
			t.Errorf("%s: fatal %q, errors %q; want %q", tc.name, r.fatal, r.errs, tc.fatal)
		}
		if tc.name == "unknown" && !strings.Contains(strings.Join(r.errs, " "), "explained") {
			t.Errorf("unknown: errors %q lack the explanation", r.errs)
		}
	}
}

func TestCheckRunningCounts(t *testing.T) {
	rec := func(kvs ...string) []*kgo.Record {
		var out []*kgo.Record
		for i := 0; i < len(kvs); i += 2 {
			out = append(out, &kgo.Record{Key: []byte(kvs[i]), Value: []byte(kvs[i+1])})
		}
		return out
	}
	want := map[string]int{"a": 2, "b": 1}
	for _, tc := range []struct {
		name  string
		recs  []*kgo.Record
		fatal string
	}{
		{"exact", rec("a", "1", "b", "1", "a", "2"), ""},
		{"duplicate", rec("a", "1", "a", "1", "b", "1", "a", "2"), "1 duplicates, 0 gaps, 0 keys with a wrong final count, 0 keys not in"},
		{"gap", rec("a", "2", "b", "1"), "0 duplicates, 1 gaps, 0 keys with a wrong final count"},
		{"short", rec("a", "1", "b", "1"), "0 duplicates, 0 gaps, 1 keys with a wrong final count"},
		{"unknown", rec("a", "1", "b", "1", "a", "2", "c", "1"), "1 keys not in the input"},
		{"not a count", rec("a", "x"), "is not a count"},
	} {
		r := check(t, func(r *fatalRecorder) { CheckRunningCounts(r, tc.recs, want) })
		if tc.fatal == "" && (r.fatal != "" || r.Failed()) || !strings.Contains(r.fatal, tc.fatal) {
			t.Errorf("%s: fatal %q, errors %q; want %q", tc.name, r.fatal, r.errs, tc.fatal)
		}
	}
}

func TestKeysByPartition(t *testing.T) {
	keys := KeysByPartition("t", 4, 3, func(i int) string { return fmt.Sprintf("k%d", i) })
	part := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	if len(keys) != 4 {
		t.Fatalf("%d partitions, want 4", len(keys))
	}
	for p, ks := range keys {
		if len(ks) != 3 {
			t.Errorf("partition %d: %d keys, want 3", p, len(ks))
		}
		for _, k := range ks {
			if got := part.Partition(&kgo.Record{Key: []byte(k)}, 4); got != p {
				t.Errorf("key %s is in partition %d, listed under %d", k, got, p)
			}
		}
	}
}
