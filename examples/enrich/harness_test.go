package main

// The crash harness is copied from examples/wordcount/crash_test.go (start,
// kill aimed at an open transaction, stop, logs), adapted to this binary's
// flags.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testbroker"
)

type harness struct {
	t                              *testing.T
	bin                            string
	brokers                        []string
	app, views, users, output, dir string
	procs                          map[string]*proc
	started                        map[string]bool
	args                           []string // extra flags for every instance
}

func newHarness(t *testing.T, bin string, brokers []string, app, views, users, output string) *harness {
	return &harness{t: t, bin: bin, brokers: brokers, app: app, views: views, users: users, output: output,
		dir: t.TempDir(), procs: map[string]*proc{}, started: map[string]bool{}}
}

// steadyInput produces n page views every interval until the returned
// function is called; it returns once the producer stopped.
func (h *harness) steadyInput(gen *viewGen, n int, interval time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
			produce(h.t, h.brokers, h.views, gen.next(n))
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

func (h *harness) stateDir(name string) string { return filepath.Join(h.dir, "state-"+name) }

// proc is one running instance.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process exited
	err    error         // its exit status, once exited is closed
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (h *harness) start(name string) {
	h.t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.bin,
		"-brokers", strings.Join(h.brokers, ","),
		"-app", h.app, "-views", h.views, "-users", h.users, "-output", h.output,
		"-state-dir", h.stateDir(name), "-instance-id", name,
		"-commit-interval", "100ms", "-v")
	cmd.Args = append(cmd.Args, h.args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_TIMEOUTS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	logf.Close()
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	h.procs[name] = p
	h.started[name] = true
}

// kill sends SIGKILL and reports whether one of the instance's transactions
// was open at that moment. It waits up to aim for a transaction to be open,
// so that the kill lands inside one (at a random point of it). An instance
// that exited by itself before the kill fails the test: instances must
// recover from every fault without help.
func (h *harness) kill(name string, aim time.Duration) bool {
	p := h.procs[name]
	open := h.openTransaction(name)
	for end := time.Now().Add(aim); !open && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		open = h.openTransaction(name)
	}
	if p.hasExited() {
		h.t.Errorf("instance %s exited by itself (%v) before it was killed; log: %s", name, p.err, h.logTail(name))
	}
	p.cmd.Process.Kill()
	<-p.exited
	delete(h.procs, name)
	return open
}

func (h *harness) openTransaction(name string) bool {
	adm := testbroker.Admin(h.t, h.brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	txns, err := adm.DescribeTransactions(ctx)
	if err != nil && len(txns) == 0 {
		h.t.Logf("describing transactions: %v", err)
		return false
	}
	for id, d := range txns {
		if strings.HasPrefix(id, h.app+"-") && strings.HasSuffix(id, "-"+name) {
			switch d.State {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				return true
			}
		}
	}
	return false
}

// stop sends SIGTERM and expects a clean exit.
func (h *harness) stop(name string) {
	h.t.Helper()
	p := h.procs[name]
	if p.hasExited() {
		h.t.Errorf("instance %s exited by itself (%v) before it was stopped; log: %s", name, p.err, h.logTail(name))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			h.t.Errorf("instance %s exited with %v after SIGTERM; log: %s", name, p.err, h.logTail(name))
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		h.t.Errorf("instance %s did not exit within 60s of SIGTERM; log: %s", name, h.logTail(name))
	}
	delete(h.procs, name)
}

func (h *harness) killAll() {
	for name, p := range h.procs {
		p.cmd.Process.Kill()
		<-p.exited
		delete(h.procs, name)
	}
	if h.t.Failed() {
		for n := range h.started {
			h.t.Logf("errors in the log of %s:\n%s", n, h.logErrors(n))
			h.t.Logf("log of %s: %s", n, h.logTail(n))
		}
	}
}

// logErrors returns the log's lines at level ERROR and its last lines that
// say why the processor stopped (at most 30).
func (h *harness) logErrors(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, name+".log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "processor stopped") || strings.HasPrefix(l, "enrich:") {
			out = append(out, l)
		}
	}
	if len(out) > 30 {
		out = out[len(out)-30:]
	}
	return strings.Join(out, "\n")
}

func (h *harness) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitCount consumes the output with read_committed from its start until it
// has seen n records, timeout passed or every instance has exited, and
// returns how many records it saw.
func (h *harness) waitCount(n int, timeout time.Duration) int {
	return waitCountWhile(h.t, h.brokers, h.output, n, timeout, func() bool {
		for _, p := range h.procs {
			if !p.hasExited() {
				return true
			}
		}
		return len(h.procs) == 0
	})
}

// waitCountWhile is waitCount on any topic, giving up when alive returns
// false.
func waitCountWhile(t testing.TB, brokers []string, topic string, n int, timeout time.Duration, alive func() bool) int {
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil && alive() {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		seen += cl.PollFetches(pctx).NumRecords()
		pcancel()
	}
	return seen
}
