package processor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sqlsink"
)

// The edges of docs/security.md's ACLs on the secured broker: a global
// table, and a sink runner (package sink, with sqlsink on SQLite) reading
// the processor's transactional output, each granted exactly the ACLs the
// page lists for it.

// sinkACLs is the heading of docs/security.md's sink runner block.
const sinkACLs = "### Sink runners"

// globalDocACLs are the ACLs docs/security.md lists for a global table on
// topic.
func globalDocACLs(t *testing.T, topic string) []aclGrant {
	t.Helper()
	return fromDoc(testbroker.DocACLs(t, globalACLs, map[string]string{"PRINCIPAL": "User:app", "GLOBAL": topic}))
}

// sinkDocACLs are the ACLs docs/security.md lists for a sink runner with
// application id app reading input.
func sinkDocACLs(t *testing.T, app, input string) []aclGrant {
	t.Helper()
	return fromDoc(testbroker.DocACLs(t, sinkACLs, map[string]string{"PRINCIPAL": "User:app", "SINK_APP": app, "SINK_INPUT": input}))
}

// createGlobalTopic creates the global table's topic (compacted, one
// partition) as the super user and returns its name.
func (a secureApp) createGlobalTopic(t *testing.T) string {
	t.Helper()
	topic := "users-" + a.app
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.sb.Admin(t).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": ptr("compact")}, topic); err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
	return topic
}

// produceKV produces key=value records to topic as the super user; with
// abort, in a transaction that it aborts, which read_committed readers
// must never see.
func (a secureApp) produceKV(t *testing.T, topic string, abort bool, kvs ...string) {
	t.Helper()
	var recs []*kgo.Record
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		r := &kgo.Record{Topic: topic, Key: []byte(k)}
		if v != "<nil>" {
			r.Value = []byte(v)
		}
		recs = append(recs, r)
	}
	if !abort {
		a.sb.Produce(t, topic, recs...)
		return
	}
	cl := testbroker.NewClient(t, a.sb.Brokers, append(a.sb.AdminOpts(t),
		kgo.TransactionalID(testbroker.Unique(t, "aborter")), kgo.TransactionTimeout(10*time.Second))...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s in a transaction: %v", topic, err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("aborting the transaction on %s: %v", topic, err)
	}
}

// ordersFor returns n orders (order id=user) numbered from first, over the
// users ann, bob, cid and dan.
func ordersFor(first, n int) []string {
	var kvs []string
	for i := first; i < first+n; i++ {
		kvs = append(kvs, fmt.Sprintf("order-%d=%s", i, []string{"ann", "bob", "cid", "dan"}[i%4]))
	}
	return kvs
}

// TestIntegrationSecureGlobalTableAndSink runs a global table join
// exactly-once over SASL_SSL as a principal holding exactly the ACLs
// docs/security.md lists for the application and its global table, and a
// sink runner (sqlsink on SQLite) on the join's transactional output,
// holding exactly the ACLs the page lists for a sink runner. Aborted
// transactions on the table's topic and on the sink's input must reach
// neither; the sink's rows must be exactly the output a read_committed
// consumer sees, each once.
func TestIntegrationSecureGlobalTableAndSink(t *testing.T) {
	sb := testbroker.Secure(t)
	a := newSecureApp(t, sb)
	users := a.createGlobalTopic(t)
	sinkApp := "db-" + a.app // not under the application's prefix: the sink's ACLs stand alone
	grant(t, sb.Admin(t), slices.Concat(docACLs(t, a.app, a.input, a.output), globalDocACLs(t, users), sinkDocACLs(t, sinkApp, a.output)))

	a.produceKV(t, users, false, "ann=de", "bob=fr", "cid=de", "cid=<nil>")
	a.produceKV(t, users, true, "ann=XX", "dan=XX")
	a.produceKV(t, a.output, true, "order-x=junk")
	a.produceKV(t, a.input, false, ordersFor(0, 40)...)
	want := map[string]string{}
	country := map[string]string{"ann": "de", "bob": "fr", "cid": "?", "dan": "?"}
	for _, kv := range ordersFor(0, 40) {
		id, user, _ := strings.Cut(kv, "=")
		want[id] = user + "@" + country[user]
	}

	p, err := New(globalOrders(t, a.input, users, a.output), a.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	db, err := sqlsink.OpenSQLite(filepath.Join(t.TempDir(), "sink.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// One row per input record, keyed by its partition and offset: a
	// record written twice fails the write (and the test).
	if _, err := db.Exec(`CREATE TABLE enriched (part INTEGER NOT NULL, off INTEGER NOT NULL, id TEXT NOT NULL, val TEXT NOT NULL, PRIMARY KEY (part, off))`); err != nil {
		t.Fatal(err)
	}
	s, err := sqlsink.New(db, func(ctx context.Context, tx *sqlsink.Tx, r sink.Record) error {
		_, err := tx.Exec(ctx, `INSERT INTO enriched (part, off, id, val) VALUES (?, ?, ?, ?)`, r.Partition, r.Offset, string(r.Key), string(r.Value))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := sink.New(s,
		sink.Brokers(sb.Brokers...),
		sink.ApplicationID(sinkApp),
		sink.Topics(a.output),
		sink.TLS(sb.TLS(t)),
		sink.SASL(sb.Mechanism(t, "SCRAM-SHA-512", "app", sb.AppPassword)),
		sink.SessionTimeout(6*time.Second),
		sink.HeartbeatInterval(500*time.Millisecond),
		sink.RebalanceTimeout(10*time.Second),
		sink.WriteTimeout(2*time.Second),
	)
	if err != nil {
		t.Fatal(err)
	}
	sinkDone := make(chan error, 1)
	go func() { sinkDone <- r.Run(ctx) }()

	rows := func() map[string]string {
		t.Helper()
		got := map[string]string{}
		q, err := db.QueryContext(context.Background(), `SELECT id, val FROM enriched`)
		if err != nil {
			t.Fatalf("reading the sink's table: %v", err)
		}
		defer q.Close()
		for q.Next() {
			var id, val string
			if err := q.Scan(&id, &val); err != nil {
				t.Fatal(err)
			}
			if _, dup := got[id]; dup {
				t.Errorf("order %s is in the sink's table twice", id)
			}
			got[id] = val
		}
		if err := q.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	waitRows := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for len(rows()) < n {
			select {
			case err := <-done:
				t.Fatalf("the processor's Run returned: %v", err)
			case err := <-sinkDone:
				t.Fatalf("the sink's Run returned: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sink holds %d of %d rows after 2 minutes", len(rows()), n)
			}
		}
	}
	waitRows(40)

	// While both run: the table follows its topic, and the next orders
	// are joined with the new value.
	a.produceKV(t, users, false, "dan=us")
	waitFor(t, time.Minute, "the global table to apply the update", func() bool { return p.Metrics().Global["users"].Updates >= 1 })
	a.produceKV(t, a.input, false, "order-40=dan", "order-41=cid")
	want["order-40"], want["order-41"] = "dan@us", "cid@?"
	waitRows(42)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the processor's Run: %v", err)
	}
	if err := <-sinkDone; err != nil {
		t.Fatalf("the sink's Run: %v", err)
	}
	out := map[string]string{}
	for _, rec := range sb.ReadCommitted(t, a.output) {
		if _, dup := out[string(rec.Key)]; dup {
			t.Errorf("order %s is in the output twice", rec.Key)
		}
		out[string(rec.Key)] = string(rec.Value)
	}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Errorf("read_committed output\n%v\nwant\n%v", out, want)
	}
	if got := rows(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the sink's table\n%v\nwant\n%v", got, want)
	}
	for name, m := range p.Metrics().Stages {
		if m.Restarts != 0 {
			t.Errorf("stage %s restarted %d times", name, m.Restarts)
		}
	}
	if m := r.Metrics(); m.Restarts != 0 || m.Fenced != 0 || m.Retries != 0 {
		t.Errorf("sink metrics %+v: want no restart, fence or retry", m)
	}
	t.Logf("global table: %+v; sink: %+v", p.Metrics().Global["users"], r.Metrics())
}

// TestIntegrationSecureGlobalMissingACL takes each ACL docs/security.md
// lists for a global table away in turn (the application keeps its own)
// and checks that Run fails at start, without a restart, with an error
// naming it; and that Read taken away while the table follows its topic
// stops Run with such an error too.
func TestIntegrationSecureGlobalMissingACL(t *testing.T) {
	sb := testbroker.Secure(t)
	probe := globalDocACLs(t, "users")
	setup := func(t *testing.T) (secureApp, string, []aclGrant) {
		a := newSecureApp(t, sb)
		users := a.createGlobalTopic(t)
		a.produceKV(t, users, false, "ann=de", "bob=fr")
		a.produceKV(t, a.input, false, ordersFor(0, 8)...)
		return a, users, globalDocACLs(t, users)
	}
	for i := range probe {
		t.Run(fmt.Sprintf("%s-%s", probe[i].resource, probe[i].op), func(t *testing.T) {
			a, users, gl := setup(t)
			grant(t, sb.Admin(t), append(docACLs(t, a.app, a.input, a.output), slices.Delete(slices.Clone(gl), i, i+1)...))
			p, err := New(globalOrders(t, a.input, users, a.output), a.opts(t)...)
			if err != nil {
				t.Fatal(err)
			}
			runRefused(t, p, gl[i])
		})
	}

	t.Run("topic-Read-revoked-while-following", func(t *testing.T) {
		a, users, gl := setup(t)
		grant(t, sb.Admin(t), append(docACLs(t, a.app, a.input, a.output), gl...))
		p, err := New(globalOrders(t, a.input, users, a.output), a.opts(t)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		a.waitOutput(t, 8, done)

		read := gl[slices.IndexFunc(gl, func(g aclGrant) bool { return g.op == "Read" })]
		adm := sb.Admin(t)
		res, err := adm.DeleteACLs(ctx, kadm.NewACLs().Allow("User:app").AllowHosts("*").Topics(users).
			ResourcePatternType(kadm.ACLPatternLiteral).Operations(kadm.OpRead))
		if err == nil {
			for _, r := range res {
				err = errors.Join(err, r.Err)
			}
		}
		if err != nil {
			t.Fatalf("deleting %v: %v", read, err)
		}
		start := time.Now()
		a.produceKV(t, users, false, "ann=at")
		err = <-done
		t.Logf("Read on %s taken away: Run returned after %v: %v", users, time.Since(start).Round(time.Millisecond), err)
		if ctx.Err() != nil || err == nil {
			t.Fatalf("Run did not fail within 3 minutes of the ACL's removal (err %v)", err)
		}
		for name, m := range p.Metrics().Stages {
			if m.Restarts != 0 {
				t.Errorf("stage %s restarted %d times before failing", name, m.Restarts)
			}
		}
		namesACL(t, err, read)
	})
}
