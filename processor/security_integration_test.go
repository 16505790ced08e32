package processor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// The security tests need the broker of scripts/kafka-secure (make
// test-secure): SASL_SSL with client certificates, SCRAM users and
// StandardAuthorizer. On kfake, and on the plain broker pass, they skip.

// aclGrant is one (resource, operation) ACL of docs/security.md, for the
// principal of the test (testbroker.ACL, as this package's tests name its
// fields).
type aclGrant struct {
	resource string // "topic", "group", "transactional-id", "cluster"
	name     string
	prefixed bool
	op       string // as kafka-acls.sh spells it: Read, Write, ...
}

func (g aclGrant) String() string { return g.acl().String() }

func (g aclGrant) acl() testbroker.ACL {
	return testbroker.ACL{Resource: g.resource, Name: g.name, Prefixed: g.prefixed, Op: g.op}
}

// fromDoc converts the ACLs testbroker.DocACLs parsed.
func fromDoc(acls []testbroker.ACL) []aclGrant {
	gs := make([]aclGrant, len(acls))
	for i, a := range acls {
		gs[i] = aclGrant{resource: a.Resource, name: a.Name, prefixed: a.Prefixed, op: a.Op}
	}
	return gs
}

// The headings of docs/security.md whose kafka-acls.sh blocks the tests
// grant: an application's ACLs, and those its global tables add.
const (
	appACLs    = "## The ACLs an application needs"
	globalACLs = "### Global tables"
)

// docACLs parses the kafka-acls.sh commands of docs/security.md's
// application block, with $APP, $INPUT and $OUTPUT replaced, into one grant
// per operation: the test grants what the page tells users to grant, so the
// page cannot drift from what the code needs.
func docACLs(t *testing.T, app, input, output string) []aclGrant {
	t.Helper()
	grants := fromDoc(testbroker.DocACLs(t, appACLs, map[string]string{
		"PRINCIPAL": "User:app", "APP": app, "INPUT": input, "OUTPUT": output}))
	if len(grants) < 5 {
		t.Fatalf("docs/security.md: found only %d ACLs under %q", len(grants), appACLs)
	}
	return grants
}

// grant creates the ACLs for User:app with the super user's client adm.
func grant(t *testing.T, adm *kadm.Client, grants []aclGrant) {
	t.Helper()
	acls := make([]testbroker.ACL, len(grants))
	for i, g := range grants {
		acls[i] = g.acl()
	}
	testbroker.GrantWith(t, adm, "User:app", acls)
}

// secureApp is one application run on the secured broker: its names, and
// its topics created by the super user.
type secureApp struct {
	sb                 testbroker.SecureBroker
	app, input, output string
}

func newSecureApp(t *testing.T, sb testbroker.SecureBroker) secureApp {
	t.Helper()
	a := secureApp{sb: sb, app: testbroker.Unique(t, "sec")}
	a.input, a.output = "in-"+a.app, "out-"+a.app
	adm := sb.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, topic := range []string{a.input, a.output} {
		if _, err := adm.CreateTopic(ctx, 2, -1, nil, topic); err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
	}
	return a
}

// opts are the processor's options as the user "app", over SASL_SSL with
// SCRAM-SHA-512 and the client certificate.
func (a secureApp) opts(t *testing.T) []Opt {
	return append(testOpts(t, a.sb.Brokers, a.app),
		TLS(a.sb.TLS(t)),
		SASL(a.sb.Mechanism(t, "SCRAM-SHA-512", "app", a.sb.AppPassword)),
		StartupTimeout(time.Minute),
	)
}

// TestIntegrationSecureWordCount runs the word count exactly-once over
// SASL_SSL as a principal that holds exactly the ACLs of docs/security.md,
// and checks every count with a read_committed consumer.
func TestIntegrationSecureWordCount(t *testing.T) {
	sb := testbroker.Secure(t)
	a := newSecureApp(t, sb)
	grant(t, sb.Admin(t), docACLs(t, a.app, a.input, a.output))

	lines, want, total := randomLines(11, 300, 40)
	a.produce(t, lines)
	p, err := New(wordcount(t, a.input, a.output), append(a.opts(t), PurgeInterval(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	recs := a.waitOutput(t, total, done)
	// The repartition purge (DeleteRecords) works with these ACLs too:
	// the repartition topic's start moves.
	a.waitPurged(t, a.app+"-by-word-repartition", done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCounts(t, sb.ReadCommitted(t, a.output), want)
	if len(recs) < total {
		t.Fatalf("%d of %d counts", len(recs), total)
	}
	for name, m := range p.Metrics().Stages {
		if m.Restarts != 0 {
			t.Errorf("stage %s restarted %d times", name, m.Restarts)
		}
	}
}

func (a secureApp) produce(t *testing.T, lines []string) {
	t.Helper()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	a.sb.Produce(t, a.input, recs...)
}

// waitPurged waits until the purge deleted records of topic, and fails the
// test when Run returns first or nothing is deleted for two minutes.
func (a secureApp) waitPurged(t *testing.T, topic string, done <-chan error) {
	t.Helper()
	adm := a.sb.Admin(t)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		starts, err := adm.ListStartOffsets(ctx, topic)
		cancel()
		purged := false
		if err == nil {
			starts.Each(func(o kadm.ListedOffset) { purged = purged || o.Err == nil && o.Offset > 0 })
		}
		if purged {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of %s was purged within 2 minutes (last error %v)", topic, err)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before the purge: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitOutput reads the output (read_committed) until it holds n records,
// and fails the test when Run returns first, or when the output stops
// growing for two minutes.
func (a secureApp) waitOutput(t *testing.T, n int, done <-chan error) []*kgo.Record {
	t.Helper()
	last, progress := -1, time.Now()
	for {
		recs := a.sb.ReadCommitted(t, a.output)
		if len(recs) >= n {
			return recs
		}
		if len(recs) > last {
			last, progress = len(recs), time.Now()
		} else if time.Since(progress) > 2*time.Minute {
			t.Fatalf("the output stopped at %d of %d records for 2 minutes", len(recs), n)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned with %d of %d records written: %v", len(recs), n, err)
		case <-time.After(time.Second):
		}
	}
}

// unsignedJWT is a token for Kafka's unsecured OAUTHBEARER validator (the
// test broker's): no signature, sub names the principal.
func unsignedJWT(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	now := time.Now().Unix()
	return enc([]byte(`{"alg":"none"}`)) + "." +
		enc(fmt.Appendf(nil, `{"sub":%q,"iat":%d,"exp":%d}`, sub, now, now+3600)) + "."
}

// TestIntegrationSecureMissingACL takes each ACL of docs/security.md away in
// turn and checks that Run fails without a restart loop, with an error that
// names the permission to grant.
func TestIntegrationSecureMissingACL(t *testing.T) {
	sb := testbroker.Secure(t)
	probe := docACLs(t, "app", "in", "out")
	for i := range probe {
		t.Run(fmt.Sprintf("%s-%s", probe[i].resource, probe[i].op), func(t *testing.T) {
			a := newSecureApp(t, sb)
			all := docACLs(t, a.app, a.input, a.output)
			missing := all[i]
			grant(t, sb.Admin(t), append(all[:i:i], all[i+1:]...))
			lines, _, _ := randomLines(12, 50, 10)
			a.produce(t, lines)
			// No purge tick within the test: a missing Delete
			// must stop Run at its start (probeDelete), as every
			// other missing ACL does, not at the first purge.
			p, err := New(wordcount(t, a.input, a.output), append(a.opts(t), PurgeInterval(time.Hour))...)
			if err != nil {
				t.Fatal(err)
			}
			runRefused(t, p, missing)
		})
	}
}

// runRefused runs p, which lacks the ACL missing, and checks that Run fails
// within 3 minutes without a restart, with a *FatalError or ErrConfig that
// names the operation, the resource kind and its name (or prefix).
func runRefused(t *testing.T, p *Processor, missing aclGrant) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	err := p.Run(ctx)
	t.Logf("without %v: Run returned after %v: %v", missing, time.Since(start).Round(time.Millisecond), err)
	if ctx.Err() != nil || err == nil {
		t.Fatalf("without %v: Run did not fail within 3 minutes (err %v)", missing, err)
	}
	for name, m := range p.Metrics().Stages {
		if m.Restarts != 0 {
			t.Errorf("stage %s restarted %d times before failing", name, m.Restarts)
		}
	}
	_, fatal := errors.AsType[*FatalError](err)
	if !fatal && !errors.Is(err, ErrConfig) {
		t.Errorf("want a *FatalError or ErrConfig, got %T: %v", err, err)
	}
	namesACL(t, err, missing)
}

// namesACL checks that err names the ACL a: its operation, its resource kind
// and its name (or prefix).
func namesACL(t *testing.T, err error, a aclGrant) {
	t.Helper()
	msg := strings.ToLower(strings.ReplaceAll(err.Error(), " ", ""))
	for _, want := range []string{a.op, strings.ReplaceAll(a.resource, "-", ""), a.name} {
		if !strings.Contains(msg, strings.ToLower(want)) {
			t.Errorf("the error does not name %q: %v", want, err)
		}
	}
}

// TestIntegrationSecureConnectErrors checks that the usual mistakes of a
// secured connection fail Run at start with an error that names the cause
// and the fix, instead of retrying until the startup timeout.
func TestIntegrationSecureConnectErrors(t *testing.T) {
	sb := testbroker.Secure(t)
	good := sb.TLS(t)
	otherCA := good.Clone()
	otherCA.RootCAs = x509.NewCertPool()
	otherCA.RootCAs.AddCert(testbroker.NewCA(t))
	noClientCert := good.Clone()
	noClientCert.Certificates = nil
	wrongName := good.Clone()
	wrongName.ServerName = "kafka.example.com"
	password := sb.Mechanism(t, "SCRAM-SHA-512", "app", sb.AppPassword)
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		sasl sasl.Mechanism
		want error    // ErrConfig: definite; ErrUnreachable: a guess
		says []string // in the error
	}{
		{"wrong password", good, sb.Mechanism(t, "SCRAM-SHA-512", "app", "wrong-"+sb.AppPassword), ErrConfig,
			[]string{"SASL_AUTHENTICATION_FAILED", "processor.SASL"}},
		{"unknown user", good, sb.Mechanism(t, "SCRAM-SHA-256", "nobody", sb.AppPassword), ErrConfig,
			[]string{"SASL_AUTHENTICATION_FAILED", "processor.SASL"}},
		{"untrusted broker certificate", otherCA, password, ErrConfig,
			[]string{"x509", "unknown authority", "processor.TLS", "-tls-ca"}},
		{"certificate for another name", wrongName, password, ErrConfig,
			[]string{"x509", "kafka.example.com", "ServerName"}},
		{"no client certificate", noClientCert, password, ErrConfig,
			[]string{"tls", "client certificates", "-tls-cert"}},
		{"no TLS", nil, password, ErrConfig,
			[]string{"speaks TLS", "processor.TLS"}},
		{"no SASL", good, nil, ErrUnreachable,
			[]string{"closed the connection", "processor.SASL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topo := wordcount(t, "in", "out")
			p, err := New(topo, append(testOpts(t, sb.Brokers, testbroker.Unique(t, "sec")),
				TLS(tc.tls), SASL(tc.sasl), StartupTimeout(2*time.Minute))...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = p.Run(context.Background())
			t.Logf("Run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "within") {
				t.Errorf("Run waited for the startup timeout: %v", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the error does not say %q", s)
				}
			}
		})
	}
}

// TestIntegrationSecureMechanisms authenticates as "app" with each SASL
// mechanism that security.SASL builds.
func TestIntegrationSecureMechanisms(t *testing.T) {
	sb := testbroker.Secure(t)
	for _, tc := range []struct{ mechanism, user, secret string }{
		{"PLAIN", "app", sb.AppPassword},
		{"SCRAM-SHA-256", "app", sb.AppPassword},
		{"scram-sha-512", "app", sb.AppPassword},
		{"OAUTHBEARER", "", unsignedJWT("app")},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			cl := testbroker.NewClient(t, sb.Brokers, kgo.DialTLSConfig(sb.TLS(t)),
				kgo.SASL(sb.Mechanism(t, tc.mechanism, tc.user, tc.secret)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cl.Ping(ctx); err != nil {
				t.Fatalf("%s as app: %v", tc.mechanism, err)
			}
		})
	}
}
