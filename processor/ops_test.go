package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// gated is a one-stage topology that copies input to output, each record
// waiting for gate to be closed first.
func gated(t testing.TB, input, output string, gate <-chan struct{}) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	s := stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("copy"))
	s = stream.MapValues(s, func(_, v string) string { <-gate; return v }, stream.Named("wait"))
	stream.To(s, output, codec.String{}, codec.String{}, stream.Named("out"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// scrape GETs /metrics of the admin server at addr and parses it.
func scrape(t testing.TB, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	body, code := get(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

func get(t testing.TB, addr, path string) (string, int) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return string(b), resp.StatusCode
}

// value returns the value of the sample of family name whose labels include
// want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// states records the State changes a StateListener sees.
type states struct {
	mu  sync.Mutex
	seq []State
}

func (s *states) listen(_, now State) {
	s.mu.Lock()
	s.seq = append(s.seq, now)
	s.mu.Unlock()
}

func (s *states) get() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seq)
}

// TestIntegrationMetricsMoveWithWork scrapes the admin server's /metrics while a stage
// is held back with records waiting, then after it processed them: the lag
// is positive, then zero; the counters and histograms move from nothing to
// the records processed; /readyz, /healthz, /tasks and /topology answer.
func TestIntegrationMetricsMoveWithWork(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "ops")
	input, output := app+"-in", app+"-out"
	testbroker.CreateTopic(t, brokers, input, 1, nil)
	testbroker.CreateTopic(t, brokers, output, 1, nil)
	const n = 100
	lines := make([]string, n)
	for i := range lines {
		lines[i] = "line " + strconv.Itoa(i)
	}
	produceLines(t, brokers, input, lines)

	gate := make(chan struct{})
	openGate := sync.OnceFunc(func() { close(gate) })
	var seen states
	reg := prometheus.NewRegistry()
	p, err := New(gated(t, input, output, gate), append(testOpts(t, brokers, app),
		MetricsRegisterer(reg), AdminAddr("127.0.0.1:0"), StateListener(seen.listen),
		// Polls of 5 records at most: the first poll leaves 95 behind.
		ForStage("copy", MaxRecordsPerTransaction(5)),
		// The gate holds a transaction open while the test scrapes.
		TransactionTimeout(time.Minute))...)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.State(); got != StateCreated {
		t.Fatalf("State before Run = %v, want created", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		openGate() // a held record would hold Run
		cancel()
		<-done
	}()
	waitFor(t, time.Minute, "the admin server", func() bool { return p.AdminListenAddr() != "" })
	addr := p.AdminListenAddr()

	copyTask := map[string]string{"stage": "copy", "partition": "0", "application": app}
	waitFor(t, time.Minute, "a positive lag while the stage is held", func() bool {
		v, _ := value(scrape(t, addr), "sluice_task_lag_records", copyTask)
		return v > 0
	})
	fams := scrape(t, addr)
	if v, _ := value(fams, "sluice_task_lag_records", copyTask); v != n-5 {
		t.Errorf("lag while held = %v, want %d (one poll of 5 of %d records)", v, n-5, n)
	}
	if v, ok := value(fams, "sluice_stage_records_total", map[string]string{"stage": "copy", "guarantee": "exactly-once"}); !ok || v != 0 {
		t.Errorf("records_total while held = %v (present %v), want 0", v, ok)
	}
	if v, _ := value(fams, "sluice_processor_state", map[string]string{"state": "running"}); v != 1 {
		t.Errorf("processor_state{state=running} = %v while held, want 1 (state %v)", v, p.State())
	}
	if _, code := get(t, addr, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz while running = %d, want 200", code)
	}

	openGate()
	waitFor(t, time.Minute, "every record processed", func() bool {
		v, _ := value(scrape(t, addr), "sluice_stage_records_total", map[string]string{"stage": "copy"})
		return v == n
	})
	waitFor(t, time.Minute, "the lag back to zero", func() bool {
		v, ok := value(scrape(t, addr), "sluice_task_lag_records", copyTask)
		return ok && v == 0
	})
	fams = scrape(t, addr)
	for _, m := range []string{"sluice_cycle_duration_seconds", "sluice_commit_duration_seconds", "sluice_apply_duration_seconds", "sluice_transaction_records", "sluice_end_to_end_latency_seconds"} {
		if v, _ := value(fams, m, map[string]string{"stage": "copy"}); v < n/5 {
			t.Errorf("%s has %v observations, want at least %d (one per committed transaction of at most 5 records)", m, v, n/5)
		}
	}
	if v, _ := value(fams, "sluice_stage_emitted_records_total", map[string]string{"stage": "copy"}); v != n {
		t.Errorf("emitted_records_total = %v, want %d", v, n)
	}
	if v, _ := value(fams, "sluice_pebble_disk_usage_bytes", nil); v <= 0 {
		t.Errorf("pebble_disk_usage_bytes = %v, want > 0", v)
	}
	if _, ok := value(fams, "sluice_kafka_produce_records_total", map[string]string{"stage": "copy"}); !ok {
		t.Errorf("no franz-go client metric sluice_kafka_produce_records_total for stage copy (kprom)")
	}

	body, code := get(t, addr, "/tasks")
	var rep tasksReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != http.StatusOK {
		t.Fatalf("/tasks: %d %v\n%s", code, err, body)
	}
	if len(rep.Tasks) != 1 || rep.Tasks[0].State != "running" || rep.Tasks[0].LastCommit.IsZero() || rep.State != "running" {
		t.Errorf("/tasks = %s", body)
	}
	if body, _ := get(t, addr, "/topology?format=dot"); !strings.Contains(body, "digraph") {
		t.Errorf("/topology?format=dot = %q", body)
	}
	if body, _ := get(t, addr, "/topology"); body != p.topo.String() {
		t.Errorf("/topology = %q, want the topology's description", body)
	}
	if body, code := get(t, addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
	want := []State{StateStarting, StateRebalancing, StateRestoring, StateRunning, StatePendingShutdown, StateStopped}
	if got := seen.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("state changes = %v, want %v", got, want)
	}
}

// restoreEvents records what a RestoreListener is told.
type restoreEvents struct {
	mu     sync.Mutex
	events []string
	ends   []RestoreProgress
}

func (r *restoreEvents) add(kind string, p RestoreProgress) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf("%s %s/%d", kind, p.Stage, p.Partition))
	r.mu.Unlock()
}

func (r *restoreEvents) OnRestoreStart(p RestoreProgress)    { r.add("start", p) }
func (r *restoreEvents) OnRestoreProgress(p RestoreProgress) { r.add("progress", p) }

func (r *restoreEvents) OnRestoreEnd(p RestoreProgress, err error) {
	r.add("end", p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.ends = append(r.ends, p)
	}
}

// TestIntegrationRestoreListenerAndReadiness runs the word count over
// enough distinct words that its store's changelogs hold tens of thousands
// of records, then runs it again on a new state directory. The test holds
// one restore after its first batch (a test hook on the restoring
// goroutine): meanwhile the State is restoring, /readyz answers 503 and
// /tasks shows the restore's progress; released, /readyz answers 200. The
// restore listener sees, per task of the stage with the store, one start,
// at least one progress and one end, in that order, and the ends account
// for every changelog offset read.
func TestIntegrationRestoreListenerAndReadiness(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "rl")
	input, output := app+"-lines", app+"-counts"
	const parts = 2
	testbroker.CreateTopic(t, brokers, input, parts, nil)
	testbroker.CreateTopic(t, brokers, output, parts, nil)
	// On the real broker about 27,000 words out of 20,000: a store of
	// ~15,000 keys, and a changelog record per word counted (compaction
	// has not run), whose restore takes visible time. Under kfake's race
	// pass a quarter.
	nLines, vocab := 6000, 20000
	if !testbroker.Real() {
		nLines, vocab = 1500, 5000
	}
	lines, words, total := randomLines(3, nLines, vocab)
	produceLines(t, brokers, input, lines)

	run := func(opts ...Opt) (*Processor, context.CancelFunc, chan error, func(*Processor)) {
		p, err := New(wordcount(t, input, output), append(testOpts(t, brokers, app), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		return p, cancel, done, func(p *Processor) { go func() { done <- p.Run(ctx) }() }
	}
	first, cancel, done, start := run()
	start(first)
	if got := waitRecords(t, brokers, output, total, 5*time.Minute); got < total {
		cancel()
		t.Fatalf("first run: output has %d of %d records (Run: %v)", got, total, <-done)
	}
	// Caught up, every task's lag is zero, also the downstream stage's,
	// whose input (the repartition topic) ends with a commit marker.
	waitFor(t, 2*time.Minute, "every task's lag at zero", func() bool {
		ts := first.Tasks()
		for _, task := range ts {
			if task.LagRecords != 0 {
				return false
			}
		}
		return len(ts) == 2*parts
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}

	ev := &restoreEvents{}
	p, cancel, done, start := run(WithRestoreListener(ev), AdminAddr("127.0.0.1:0"))
	held, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	p.hooks.restoreProgressed = func(*stage) {
		once.Do(func() {
			close(held)
			<-hold
		})
	}
	release := sync.OnceFunc(func() { close(hold) })
	start(p)
	defer func() {
		release()
		cancel()
		<-done
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("Run returned before any restore: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("no restore read anything within 2 minutes")
	}
	addr := p.AdminListenAddr()
	if body, code := get(t, addr, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during a restore = %d %q, want 503", code, body)
	}
	if s := p.State(); s != StateRestoring {
		t.Errorf("State during a restore = %v, want restoring", s)
	}
	restoring := 0
	for _, ts := range p.Tasks() {
		// (Remaining may be 0 already: one fetch can hold a whole
		// changelog partition.)
		if ts.State == "restoring" && ts.Restore != nil && ts.Restore.Restored > 0 {
			restoring++
		}
	}
	if restoring == 0 {
		t.Errorf("no task restoring with offsets read while a restore is held: %+v", p.Tasks())
	}
	release()
	waitFor(t, 2*time.Minute, "readiness after the restores", func() bool {
		_, code := get(t, addr, "/readyz")
		return code == http.StatusOK
	})

	var restored int64
	// The listener runs on a goroutine of its own: its ends may follow
	// readiness by a moment.
	waitFor(t, time.Minute, "the listener told of every restore's end", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.ends) >= parts
	})
	ev.mu.Lock()
	events, ends := slices.Clone(ev.events), slices.Clone(ev.ends)
	ev.mu.Unlock()
	// Per task: one start, then progress, then one end, in that order.
	byTask := map[string][]string{}
	for _, e := range events {
		kind, task, _ := strings.Cut(e, " ")
		byTask[task] = append(byTask[task], kind)
	}
	for _, e := range ends {
		if e.Remaining != 0 {
			t.Errorf("restore of %s/%d ended with %d offsets remaining", e.Stage, e.Partition, e.Remaining)
		}
		restored += e.Restored
	}
	if len(byTask) != parts {
		t.Errorf("restore events for %d tasks, want %d: %v", len(byTask), parts, events)
	}
	for task, kinds := range byTask {
		if len(kinds) < 3 || kinds[0] != "start" || kinds[len(kinds)-1] != "end" || slices.Contains(kinds[1:len(kinds)-1], "start") || slices.Contains(kinds[:len(kinds)-1], "end") {
			t.Errorf("task %s: events %v, want start, progress..., end", task, kinds)
		}
	}
	// The offsets read count the data records the stage metrics count,
	// and the transaction markers between them.
	var records int64
	for _, m := range p.Metrics().Stages {
		records += m.RestoredRecords
	}
	if records < int64(len(words)) || records > restored {
		t.Errorf("the stages restored %d records from the %d offsets the listener was told of; want at least %d (a changelog record per distinct word)", records, restored, len(words))
	}
	t.Logf("restored %d records (%d offsets) of %d distinct words, %d counted", records, restored, len(words), total)
}

// recordingRegistry remembers every collector registered with it.
type recordingRegistry struct {
	*prometheus.Registry
	mu sync.Mutex
	cs []prometheus.Collector
}

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	r.mu.Lock()
	r.cs = append(r.cs, c)
	r.mu.Unlock()
	return r.Registry.Register(c)
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var fqName = regexp.MustCompile(`fqName: "([a-zA-Z0-9_:]+)"`)

// metricNames returns the name of every metric a processor with metrics
// registers, franz-go's included, and those of histograms' series.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := &recordingRegistry{Registry: prometheus.NewRegistry()}
	p, err := New(wordcount(t, "in", "out"), ApplicationID("names"), Brokers("127.0.0.1:1"), StateDir(t.TempDir()), MetricsRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	// A client registers franz-go's metrics when it is made.
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.WithHooks(p.stages[0].kpromHooks()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	names := map[string]bool{}
	ch := make(chan *prometheus.Desc, 1000)
	reg.mu.Lock()
	for _, c := range reg.cs {
		c.Describe(ch)
	}
	reg.mu.Unlock()
	close(ch)
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	return names
}

// TestGrafanaDashboard checks docs/grafana-dashboard.json: it is valid JSON,
// and every sluice metric its queries name is one the processor exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json is not valid JSON: %v", err)
	}
	known := metricNames(t)
	if !known["sluice_task_lag_records"] || !known["sluice_kafka_produce_bytes_total"] || !known["sluice_commit_duration_seconds_bucket"] {
		t.Fatalf("the list of exported metrics misses some: %v", known)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	used := 0
	for _, e := range exprs {
		for _, name := range regexp.MustCompile(`\bsluice_[a-z0-9_]+`).FindAllString(e, -1) {
			used++
			if !known[name] {
				t.Errorf("the dashboard queries %s, which sluice does not export (in %q)", name, e)
			}
		}
	}
	if used < len(dash.Panels) {
		t.Errorf("the dashboard's %d panels name only %d sluice metrics", len(dash.Panels), used)
	}
}
