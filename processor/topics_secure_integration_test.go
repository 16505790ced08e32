package processor

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestIntegrationSecureTopicsWithoutCreate runs the word count on the
// secured broker as a principal holding the ACLs of docs/security.md except
// Create, after an administrator created its internal topics with the sluice
// command (built here, run with its --tls-* and --sasl-* flags as the super
// user) from the plan that Processor.InternalTopics wrote as the
// application's principal. Run creates nothing and counts every word exactly
// once; without the topics it fails on the missing Create
// (TestIntegrationSecureMissingACL).
func TestIntegrationSecureTopicsWithoutCreate(t *testing.T) {
	sb := testbroker.Secure(t)
	a := newSecureApp(t, sb)
	var grants []aclGrant
	for _, g := range docACLs(t, a.app, a.input, a.output) {
		if g.op != "Create" {
			grants = append(grants, g)
		}
	}
	grant(t, sb.Admin(t), grants)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	planner, err := New(wordcount(t, a.input, a.output), a.opts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := planner.InternalTopics(ctx)
	if err != nil {
		t.Fatalf("InternalTopics as the application's principal: %v", err)
	}
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("building cmd/sluice: %v\n%s", err, out)
	}
	tlsDir := filepath.Dir(sb.TLSFiles.CA)
	cmd := exec.Command(bin, "topics", "--app", a.app, "--plan", file, "--brokers", strings.Join(sb.Brokers, ","),
		"--tls-ca", sb.TLSFiles.CA, "--tls-cert", sb.TLSFiles.Cert, "--tls-key", sb.TLSFiles.Key,
		"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "admin", "--sasl-password-file", filepath.Join(tlsDir, "admin.password"))
	out, err := cmd.CombinedOutput()
	t.Logf("sluice topics:\n%s", out)
	if err != nil || strings.Count(string(out), "created") != len(plan.Topics) || len(plan.Topics) != 2 {
		t.Fatalf("sluice topics: %v (plan %+v)", err, plan)
	}

	lines, want, total := randomLines(13, 200, 30)
	a.produce(t, lines)
	p, err := New(wordcount(t, a.input, a.output), append(a.opts(t), PurgeInterval(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	a.waitOutput(t, total, done)
	a.waitPurged(t, a.app+"-by-word-repartition", done)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run without Create: %v", err)
	}
	checkCounts(t, sb.ReadCommitted(t, a.output), want)
}
