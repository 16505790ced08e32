package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/processor"
)

// Out of process (-out-of-process): the system under test runs in a child
// process, the harness's own binary started again with childEnv set, so that
// it shares no Go runtime, heap or collector with the harness's loader,
// paced producer and reader (issue 15 asks whether part of the latency comes
// from sharing them). Everything else is the same: the harness creates the
// topics, produces, reads and checks; the child only runs the system.
//
// Protocol: the child's stdin and stdout carry one JSON object per line.
// The child answers its start with a childReply (Ready, or Error); then the
// parent writes "metrics" (the child replies with the processor's counters)
// or "stop" (the child stops the system, replies with its final counters and
// error, and exits). The child stops the system too when its stdin ends, so
// it does not outlive a harness that died. The child's stderr is the
// harness's.
//
// CPU and memory of the child: while it runs, /proc/<pid>/stat (procCPU, for
// the window); after it exited, its rusage (os.ProcessState.SysUsage, from
// wait4): user + system time and the peak RSS (ru_maxrss) of the child alone.

// childEnv holds the childSpec (JSON) of a child process.
const childEnv = "SLUICE_BENCH_CHILD"

// childSpec is what the child needs to start the system: runSpec's fields.
type childSpec struct {
	System         string        `json:"system"`
	Scenario       string        `json:"scenario"`
	Brokers        []string      `json:"brokers"`
	App            string        `json:"app"`
	Input          string        `json:"input"`
	Output         string        `json:"output"`
	Partitions     int           `json:"partitions"`
	CommitInterval time.Duration `json:"commit_interval"`
	MaxRecords     int           `json:"max_records"`
	StateDir       string        `json:"state_dir"`
	CPUProfile     string        `json:"cpu_profile,omitempty"`
}

type childReply struct {
	Ready       bool                              `json:"ready,omitempty"`
	Final       bool                              `json:"final,omitempty"` // the last line: the system has stopped
	Error       string                            `json:"error,omitempty"`
	Unsupported bool                              `json:"unsupported,omitempty"`
	Metrics     map[string]processor.StageMetrics `json:"metrics,omitempty"`
}

// childMain runs the system of the childSpec in childEnv; main and TestMain
// call it when childEnv is set. It returns the exit code.
func childMain() int {
	out := json.NewEncoder(os.Stdout)
	// Stray prints of the system must not garble the protocol.
	os.Stdout = os.Stderr
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &spec); err != nil {
		_ = out.Encode(childReply{Final: true, Error: "child: bad " + childEnv + ": " + err.Error()})
		return 2
	}
	err := runChild(spec, out)
	if err != nil {
		return 1
	}
	return 0
}

func runChild(spec childSpec, out *json.Encoder) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reply := func(r childReply) error {
		if err := out.Encode(r); err != nil {
			return fmt.Errorf("child: writing to the harness: %w", err)
		}
		return nil
	}
	fail := func(err error) error {
		_ = reply(childReply{Final: true, Error: err.Error(), Unsupported: errors.Is(err, errUnsupported)})
		return err
	}
	sys, ok := systemByName(spec.System)
	sc := scenarios[spec.Scenario]
	if !ok || sc == nil {
		return fail(fmt.Errorf("child: unknown system %q or scenario %q", spec.System, spec.Scenario))
	}
	if spec.CPUProfile != "" {
		f, err := createFile(spec.CPUProfile)
		if err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	e, err := newEnv(ctx, strings.Join(spec.Brokers, ","))
	if err != nil {
		return fail(err)
	}
	defer e.close()
	r := &runSpec{sc: sc, brokers: spec.Brokers, app: spec.App, input: spec.Input, output: spec.Output,
		partitions: spec.Partitions, commitInterval: spec.CommitInterval, maxRecords: spec.MaxRecords,
		stateDir: spec.StateDir,
		createTopics: func(ctx context.Context, topics ...string) error {
			return e.createTopics(ctx, spec.Partitions, nil, topics...)
		}}
	run, err := sys.start(ctx, r)
	if err != nil {
		return fail(err)
	}
	if err := reply(childReply{Ready: true}); err != nil {
		_ = run.stop()
		return err
	}
	return serveChild(ctx, run, reply)
}

// serveChild answers the harness's commands until it says stop (or its
// stdin ends), the system stops by itself, or a signal arrives; then it
// stops the system and sends the final reply.
func serveChild(ctx context.Context, run *running, reply func(childReply) error) error {
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	final := func(stopErr error) error {
		m, _ := run.metrics()
		r := childReply{Final: true, Metrics: m}
		if stopErr != nil {
			r.Error = stopErr.Error()
		}
		if err := reply(r); err != nil {
			return err
		}
		return stopErr
	}
	for {
		select {
		case cmd, ok := <-cmds:
			switch {
			case !ok || cmd == "stop":
				return final(run.stop())
			case cmd == "metrics":
				m, err := run.metrics()
				r := childReply{Metrics: m}
				if err != nil {
					r.Error = err.Error()
				}
				if err := reply(r); err != nil {
					_ = run.stop()
					return err
				}
			}
		case <-run.done:
			err := run.stop()
			if err == nil {
				err = errors.New("the system stopped by itself")
			}
			return final(err)
		case <-ctx.Done():
			return final(run.stop())
		}
	}
}

// startChild returns a start function that runs sys in a child process.
func startChild(sys system) func(ctx context.Context, r *runSpec) (*running, error) {
	return func(ctx context.Context, r *runSpec) (*running, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("out of process: %w", err)
		}
		spec, err := json.Marshal(childSpec{System: sys.name, Scenario: r.sc.name, Brokers: r.brokers,
			App: r.app, Input: r.input, Output: r.output, Partitions: r.partitions,
			CommitInterval: r.commitInterval, MaxRecords: r.maxRecords, StateDir: r.stateDir, CPUProfile: r.cpuProfile})
		if err != nil {
			return nil, err
		}
		// Not exec.CommandContext: the child is stopped by "stop" (or its
		// stdin ending), so that it can end the system cleanly.
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("out of process: starting %s: %w", exe, err)
		}
		ch := &child{cmd: cmd, stdin: stdin, replies: make(chan childReply, 1), done: make(chan struct{})}
		go ch.readReplies(stdout)
		if first, ok := <-ch.replies; !ok || !first.Ready {
			stdin.Close()
			<-ch.done
			switch {
			case ch.final.Unsupported:
				return nil, fmt.Errorf("%w: %s", errUnsupported, ch.final.Error)
			case ch.final.Error != "":
				return nil, errors.New(ch.final.Error)
			}
			return nil, fmt.Errorf("out of process: the child exited before it started the system (%v)", ch.waitErr)
		}
		return &running{stop: ch.stop, done: ch.done, metrics: ch.metrics, pid: cmd.Process.Pid, usage: ch.usage}, nil
	}
}

// child is the harness's side of a child process.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan childReply // closed when the child's stdout ends
	done    chan struct{}   // closed once the child has exited and been waited for
	waitErr error           // valid after done
	final   childReply      // valid after done

	mu       sync.Mutex // one request at a time
	stopOnce sync.Once
	stopErr  error
}

// readReplies reads the child's stdout until it ends, then waits for the
// child (after every read, as exec.Cmd requires).
func (ch *child) readReplies(stdout io.Reader) {
	dec := json.NewDecoder(stdout)
	for {
		var r childReply
		if err := dec.Decode(&r); err != nil {
			break
		}
		if r.Final {
			ch.final = r
			continue
		}
		ch.replies <- r
	}
	close(ch.replies)
	ch.waitErr = ch.cmd.Wait()
	close(ch.done)
}

// metrics asks the child for the processor's counters.
func (ch *child) metrics() (map[string]processor.StageMetrics, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, err := io.WriteString(ch.stdin, "metrics\n"); err != nil {
		return nil, fmt.Errorf("out of process: %w", err)
	}
	select {
	case r, ok := <-ch.replies:
		if !ok {
			return nil, errors.New("out of process: the child exited")
		}
		if r.Error != "" {
			return r.Metrics, errors.New(r.Error)
		}
		return r.Metrics, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("out of process: no answer to metrics within 10s")
	}
}

// stop asks the child to stop the system and waits for it to exit; after a
// minute it kills it.
func (ch *child) stop() error {
	ch.stopOnce.Do(func() {
		ch.mu.Lock()
		_, _ = io.WriteString(ch.stdin, "stop\n")
		ch.stdin.Close()
		ch.mu.Unlock()
		select {
		case <-ch.done:
		case <-time.After(time.Minute):
			_ = ch.cmd.Process.Kill()
			<-ch.done
			ch.stopErr = errors.New("out of process: the child did not stop within a minute and was killed")
			return
		}
		switch {
		case ch.final.Error != "":
			ch.stopErr = errors.New(ch.final.Error)
		case !ch.final.Final:
			ch.stopErr = fmt.Errorf("out of process: the child exited without a final answer (%v)", ch.waitErr)
		}
	})
	return ch.stopErr
}

// usage returns the child's rusage once it has exited (nil before).
func (ch *child) usage() *syscall.Rusage {
	select {
	case <-ch.done:
	default:
		return nil
	}
	if ch.cmd.ProcessState == nil {
		return nil
	}
	ru, _ := ch.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return ru
}
