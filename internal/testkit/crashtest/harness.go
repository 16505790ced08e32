package crashtest

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopTimeout is how long Stop waits for an instance to exit after SIGTERM
// before it kills it and fails the test.
const StopTimeout = 60 * time.Second

// Harness runs named instances of one binary against one broker. The
// exported fields other than Args, Flags, Profile, Env, ExitBeforeStopOK
// and Aim are set by New and read-only afterwards.
type Harness struct {
	// T is the test that owns the instances; failures are reported to it.
	T testing.TB
	// Bin is the binary's path (see Build).
	Bin string
	// Brokers are the bootstrap addresses the instances talk to.
	Brokers []string
	// App is the application id: the instances' transactional ids are
	// <App>-<stage>-<instance> (see OpenTransaction).
	App string
	// Dir holds the instances' state directories and logs (a temporary
	// directory of T).
	Dir string

	// Args are an example processor binary's own flags (its topics, its
	// windows), given to every instance after ProcessorFlags. Start uses
	// them when Flags is nil.
	Args []string
	// Flags, when set, returns the command-line flags of instance name
	// instead of ProcessorFlags and Args, for a binary that takes other
	// flags; Start calls it each time.
	Flags func(name string) []string
	// Profile is added to every instance's command line after Flags: the
	// test profile's timeouts. New sets ProcessorProfile; a binary with
	// other flags sets its own.
	Profile []string
	// Env is added to every instance's environment, after os.Environ().
	Env []string
	// ExitBeforeStopOK makes Stop accept an instance that exited by
	// itself with status 0 before it was stopped. By default such an
	// instance fails the test.
	ExitBeforeStopOK bool
	// Aim is how long Chaos waits for a victim's transaction to be open
	// before it kills anyway (see Kill); zero means 500 ms. A topology
	// whose transactions are open only for a few milliseconds per cycle
	// needs longer.
	Aim time.Duration

	// INVARIANT: procs holds the instances started and not yet killed or
	// stopped (including those that exited by themselves since).
	procs   map[string]*Proc
	started map[string]bool // every name ever started, for KillAll's logs
}

// ProcessorProfile is the test profile of the example processor binaries,
// as their flags: a 6 s session timeout, 500 ms heartbeats, 10 s rebalance
// and transaction timeouts, so that instances recover fast (the processor's
// defaults are 45 s, 3 s, 60 s and 10 s).
var ProcessorProfile = []string{"-session-timeout=6s", "-heartbeat-interval=500ms", "-rebalance-timeout=10s", "-transaction-timeout=10s"}

// New returns a harness for bin whose files live in a temporary directory
// of t, with the ProcessorProfile. Set Args (or Flags) before starting
// instances, and defer KillAll.
func New(t testing.TB, bin string, brokers []string, app string) *Harness {
	return &Harness{T: t, Bin: bin, Brokers: brokers, App: app, Dir: t.TempDir(), Profile: ProcessorProfile,
		procs: map[string]*Proc{}, started: map[string]bool{}}
}

// Proc is one started process of an instance.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process exited
	err    error         // its exit status, once exited is closed
}

// Exited reports whether the process has exited (by itself or killed).
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Err returns the process's exit status as cmd.Wait did (nil for status 0);
// valid only once Exited reports true.
func (p *Proc) Err() error { return p.err }

// Signal sends sig to the process; it fails once the process was reaped.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// kill sends SIGCONT (a stopped process may hold SIGKILL until it runs
// again) and SIGKILL, and waits until the process has exited. Harmless on a
// process that exited already.
func (p *Proc) kill() {
	p.cmd.Process.Signal(syscall.SIGCONT)
	p.cmd.Process.Kill()
	<-p.exited
}

// StateDir returns the state directory of instance name (which the test
// may delete between a kill and the restart).
func (h *Harness) StateDir(name string) string { return filepath.Join(h.Dir, "state-"+name) }

// LogPath returns the file that collects the standard output and error of
// every process of instance name, appended to across restarts.
func (h *Harness) LogPath(name string) string { return filepath.Join(h.Dir, name+".log") }

// ProcessorFlags returns the flags every example processor binary takes
// (examples/internal/cli) for instance name: the harness's brokers and
// application id, the instance's state directory, name as the instance id,
// a 100 ms commit interval and -v. A flag given again in Args wins.
func (h *Harness) ProcessorFlags(name string) []string {
	return []string{
		"-brokers", strings.Join(h.Brokers, ","), "-app", h.App,
		"-state-dir", h.StateDir(name), "-instance-id", name,
		"-commit-interval", "100ms", "-v"}
}

// Proc returns the process of instance name, or nil when the instance is
// not started, or was killed or stopped since.
func (h *Harness) Proc(name string) *Proc { return h.procs[name] }

// Start starts a process of instance name with ProcessorFlags(name) and
// h.Args (or h.Flags(name)), then h.Profile, appending its output to
// LogPath(name). env is added to its environment after h.Env. A
// process that cannot be started fails the test (t.Fatal). Any earlier
// process of the same name must have exited: Start forgets it.
func (h *Harness) Start(name string, env ...string) {
	h.T.Helper()
	logf, err := os.OpenFile(h.LogPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.T.Fatal(err)
	}
	var args []string
	if h.Flags != nil {
		args = h.Flags(name)
	} else {
		args = append(h.ProcessorFlags(name), h.Args...)
	}
	cmd := exec.Command(h.Bin, append(args, h.Profile...)...)
	cmd.Env = append(append(os.Environ(), h.Env...), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		h.T.Fatal(err)
	}
	logf.Close()
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	h.procs[name] = p
	h.started[name] = true
}

// Kill sends SIGKILL to instance name and reports whether one of its
// transactions was open at that moment (OpenTransaction). It waits up to aim
// for a transaction to be open, so that the kill lands inside one (at a
// random point of it); with aim 0 it kills at once. An instance that exited
// by itself before the kill fails the test (t.Errorf, with its log's tail):
// instances must recover from every fault without help.
//
// REQUIRES: name is running (Proc(name) != nil).
func (h *Harness) Kill(name string, aim time.Duration) bool {
	p := h.procs[name]
	open := h.OpenTransaction(name)
	for end := time.Now().Add(aim); !open && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		open = h.OpenTransaction(name)
	}
	if p.Exited() {
		h.T.Errorf("instance %s exited by itself (%v) before it was killed; log: %s", name, p.err, h.LogTail(name))
	}
	h.KillNow(name)
	return open
}

// StartAll starts the instances i1, ..., in and returns their names.
func (h *Harness) StartAll(n int) []string {
	h.T.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("i%d", i+1)
		h.Start(names[i])
	}
	return names
}

// KillNow sends SIGKILL to instance name at once, waits until it has
// exited and forgets it; nothing is checked. A name that is not running is
// ignored.
func (h *Harness) KillNow(name string) {
	if p := h.procs[name]; p != nil {
		p.kill()
		delete(h.procs, name)
	}
}

// Stop sends SIGTERM to instance name and expects a clean exit (status 0)
// within StopTimeout; it fails the test (t.Errorf, with the log's tail)
// otherwise, killing the instance after the timeout, and when the instance
// had exited by itself before (unless ExitBeforeStopOK and its status was
// 0). The instance is forgotten in every case.
//
// REQUIRES: name is running (Proc(name) != nil).
func (h *Harness) Stop(name string) {
	h.T.Helper()
	p := h.procs[name]
	delete(h.procs, name)
	if p.Exited() && !(h.ExitBeforeStopOK && p.err == nil) {
		h.T.Errorf("instance %s exited by itself (%v) before it was stopped; log: %s", name, p.err, h.LogTail(name))
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			h.T.Errorf("instance %s exited with %v after SIGTERM; log: %s", name, p.err, h.LogTail(name))
		}
	case <-time.After(StopTimeout):
		p.kill()
		h.T.Errorf("instance %s did not exit within %v of SIGTERM; log: %s", name, StopTimeout, h.LogTail(name))
	}
}

// StopAll stops (Stop) every running instance, in the order of their
// names.
func (h *Harness) StopAll() {
	h.T.Helper()
	for _, name := range slices.Sorted(maps.Keys(h.procs)) {
		h.Stop(name)
	}
}

// KillAll kills every instance still running and, if the test has failed,
// logs the errors and the tail of the log of every instance ever started.
// With $SLUICE_CRASH_LOGS_ALL set as well as $SLUICE_CRASH_LOGS it keeps
// the logs of a test that passed too (to study what a fault cost).
// Defer it right after New.
func (h *Harness) KillAll() {
	for name := range h.procs {
		h.KillNow(name)
	}
	if h.T.Failed() {
		for n := range h.started {
			h.T.Logf("errors in the log of %s:\n%s", n, h.LogErrors(n))
			h.T.Logf("log of %s: %s", n, h.LogTail(n))
			h.keepLog(n)
		}
	} else if os.Getenv("SLUICE_CRASH_LOGS_ALL") != "" {
		for n := range h.started {
			h.keepLog(n)
		}
	}
}

// keepLog copies instance name's whole log into the directory named by
// $SLUICE_CRASH_LOGS, when set, as <test>-<name>.log: the test's own
// temporary directory is removed when it ends.
func (h *Harness) keepLog(name string) {
	dir := os.Getenv("SLUICE_CRASH_LOGS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(h.LogPath(name))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		file := strings.NewReplacer("/", "_", " ", "_").Replace(h.T.Name()) + "-" + name + ".log"
		err = os.WriteFile(filepath.Join(dir, file), b, 0o644)
	}
	if err != nil {
		h.T.Logf("keeping the log of %s: %v", name, err)
	} else {
		h.T.Logf("the whole log of %s is in %s", name, dir)
	}
}

// Alive reports whether some instance is running, or none is started (so
// that a wait with no instance at all still reads).
func (h *Harness) Alive() bool {
	for _, p := range h.procs {
		if !p.Exited() {
			return true
		}
	}
	return len(h.procs) == 0
}
