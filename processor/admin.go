package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminAddr makes Run serve the admin endpoints (see AdminHandler) over
// HTTP at addr ("host:port"; ":9464" listens on every interface) from its
// start until it returns. Run fails at once with ErrConfig when it cannot
// listen there. Without MetricsRegisterer, /metrics serves a registry of the
// processor's own holding its metrics and Go's runtime and process metrics.
// Default (and ""): no server.
func AdminAddr(addr string) Opt { return opt{func(c *cfg) { c.adminAddr = addr }} }

// StallTimeout is how long a running stage may go without committing while
// one of its tasks has input to read before /healthz reports it stalled.
// Default: 5 minutes. Set it above the longest a transaction can take
// (TransactionTimeout) and a few commit intervals.
func StallTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.stallTimeout = d }} }

// AdminHandler returns the admin endpoints as an http.Handler, for an
// application that serves them on its own server (AdminAddr serves the
// same handler):
//
//   - /metrics: the Prometheus metrics (404 when the MetricsRegisterer given
//     is not also a prometheus.Gatherer; serve that registry yourself).
//   - /healthz: liveness. 200, unless the processor failed or a stage
//     stalled (see StallTimeout): 503 with the reason.
//   - /readyz: readiness. 503 before the first assignment and while any
//     task restores; 200 when every task this instance holds is restored
//     and running (also during a rebalance that moves nothing to it).
//   - /topology: the topology's description; /topology?format=dot the
//     Graphviz DOT.
//   - /tasks: JSON: the State, and each task's state, lag, restore
//     progress and last commit (TaskStatus).
func (p *Processor) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	if p.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(p.gatherer, promhttp.HandlerOpts{}))
	} else {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "no metrics here: the processor's metrics are registered with the application's prometheus.Registerer (MetricsRegisterer), which is not a Gatherer", http.StatusNotFound)
		})
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if why := p.unhealthy(time.Now()); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := p.notReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /topology", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") == "dot" {
			w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
			fmt.Fprint(w, p.topo.DOT())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, p.topo.String())
	})
	mux.HandleFunc("GET /tasks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(p.tasksReport())
	})
	return mux
}

// tasksReport is the body of /tasks.
type tasksReport struct {
	Application string        `json:"application"`
	Instance    string        `json:"instance"`
	State       string        `json:"state"`
	Stages      []stageReport `json:"stages"`
	Tasks       []TaskStatus  `json:"tasks"`
}

type stageReport struct {
	Name       string    `json:"name"`
	Group      string    `json:"group"`
	Guarantee  string    `json:"guarantee"`
	Phase      string    `json:"phase"`
	LastCommit time.Time `json:"last_commit,omitzero"`
}

func (p *Processor) tasksReport() tasksReport {
	r := tasksReport{Application: p.cfg.app, Instance: p.cfg.instanceID, State: p.State().String(), Tasks: p.Tasks()}
	for _, st := range p.stages {
		sr := stageReport{Name: st.name, Group: st.group, Guarantee: st.cfg.guarantee.String(), Phase: stagePhase(st.phase.Load()).String()}
		if n := st.metrics.lastCommit.Load(); n != 0 {
			sr.LastCommit = time.Unix(0, n)
		}
		r.Stages = append(r.Stages, sr)
	}
	return r
}

func (ph stagePhase) String() string {
	switch ph {
	case phaseRestoring:
		return "restoring"
	case phaseRunning:
		return "running"
	}
	return "rebalancing"
}

// unhealthy returns why the processor is not live, or "".
func (p *Processor) unhealthy(now time.Time) string {
	if p.State() == StateFailed {
		return "failed: Run returned an error"
	}
	for _, st := range p.stages {
		if stagePhase(st.phase.Load()) != phaseRunning {
			continue
		}
		last := max(st.metrics.lastCommit.Load(), st.phaseSince.Load())
		if last == 0 || now.Sub(time.Unix(0, last)) < p.cfg.stallTimeout {
			continue
		}
		for _, t := range st.taskStatuses(now) {
			if t.State == "running" && t.LagRecords > 0 {
				return fmt.Sprintf("stalled: stage %s committed nothing for %v while task %d has %d records to read", st.name, now.Sub(time.Unix(0, last)).Round(time.Second), t.Partition, t.LagRecords)
			}
		}
	}
	return ""
}

// notReady returns why the processor is not ready, or "".
func (p *Processor) notReady() string {
	switch s := p.State(); s {
	case StateRunning:
		return ""
	case StateRebalancing:
		var waiting []string
		for _, st := range p.stages {
			if !st.assignedOnce.Load() {
				waiting = append(waiting, st.name)
			}
		}
		if len(waiting) > 0 {
			return "waiting for the first assignment of stage(s) " + strings.Join(waiting, ", ")
		}
		return ""
	default:
		return s.String()
	}
}

// serveAdmin starts the admin server at addr; stop shuts it down.
func (p *Processor) serveAdmin(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: admin server (AdminAddr %q): %w: give a free address, or none to serve no endpoints", ErrConfig, addr, err)
	}
	srv := &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.cfg.logger.Error("admin server stopped", "addr", addr, "err", err)
		}
	}()
	p.cfg.logger.Info("admin server listening", "addr", ln.Addr().String())
	p.adminAddr.Store(ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// AdminListenAddr returns the address the admin server listens at (with the
// port the system chose for AdminAddr("127.0.0.1:0")), or "" while it does
// not listen.
func (p *Processor) AdminListenAddr() string {
	s, _ := p.adminAddr.Load().(string)
	return s
}
