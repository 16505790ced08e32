package testbroker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ACL is one ACL of docs/security.md: an operation allowed on a resource.
type ACL struct {
	Resource string // "topic", "group", "transactional-id" or "cluster", as kafka-acls.sh names them
	Name     string // the resource's name, or prefix when Prefixed; "" for the cluster
	Prefixed bool   // --resource-pattern-type prefixed
	Op       string // the operation as kafka-acls.sh spells it: Read, Write, ...
}

func (a ACL) String() string {
	pattern := "literal"
	if a.Prefixed {
		pattern = "prefixed"
	}
	return fmt.Sprintf("%s on %s %s (%s)", a.Op, a.Resource, a.Name, pattern)
}

// SecurityDoc is the page whose kafka-acls.sh commands DocACLs reads,
// relative to the module's root.
const SecurityDoc = "docs/security.md"

// DocACLs returns the ACLs that the kafka-acls.sh commands of the first
// ```sh block after the Markdown heading (the whole line, "## ..." included)
// of docs/security.md grant, one per operation, so that a test grants what
// the page tells users to grant and the page cannot drift from what the code
// needs. Each "$NAME" in a command's arguments is replaced with vars[NAME];
// $KAFKA (the connection arguments) is dropped, and the command's
// --allow-principal must be $PRINCIPAL. It fails the test when the heading
// or its block is missing, a command uses a variable vars does not hold or
// an option it does not know, or the block grants nothing.
func DocACLs(t testing.TB, heading string, vars map[string]string) []ACL {
	t.Helper()
	path := filepath.Join(moduleRoot(t), SecurityDoc)
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	defer f.Close()
	var cmds []string
	var cur string
	found, inBlock := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !found:
			found = line == heading
			continue
		case !inBlock:
			if strings.HasPrefix(line, "#") {
				t.Fatalf("testbroker: %s: no ```sh block under %q before the next heading", SecurityDoc, heading)
			}
			inBlock = line == "```sh"
			continue
		case strings.HasPrefix(line, "```"):
		case cur == "" && !strings.HasPrefix(line, "kafka-acls.sh "):
			continue
		default:
			cur += " " + strings.TrimSuffix(line, `\`)
			if !strings.HasSuffix(line, `\`) {
				cmds = append(cmds, cur)
				cur = ""
			}
			continue
		}
		break // the end of the block
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found || !inBlock {
		t.Fatalf("testbroker: %s has no heading %q followed by a ```sh block", SecurityDoc, heading)
	}
	var acls []ACL
	for _, cmd := range cmds {
		acls = append(acls, parseACLCommand(t, cmd, vars)...)
	}
	if len(acls) == 0 {
		t.Fatalf("testbroker: %s: the block under %q grants no ACL", SecurityDoc, heading)
	}
	return acls
}

// parseACLCommand returns the ACLs one kafka-acls.sh command grants.
func parseACLCommand(t testing.TB, cmd string, vars map[string]string) []ACL {
	t.Helper()
	var args []string
	for _, a := range strings.Fields(cmd)[1:] {
		if a == "$KAFKA" {
			continue
		}
		a = os.Expand(strings.Trim(a, `"`), func(name string) string {
			v, ok := vars[name]
			if !ok {
				t.Fatalf("testbroker: %s: %s: the test gives no value for $%s", SecurityDoc, cmd, name)
			}
			return v
		})
		args = append(args, a)
	}
	var (
		ops       []string
		a         ACL
		resources int
	)
	for i := 0; i < len(args); i++ {
		next := func() string {
			i++
			if i >= len(args) {
				t.Fatalf("testbroker: %s: %s: %s needs a value", SecurityDoc, cmd, args[i-1])
			}
			return args[i]
		}
		switch arg := args[i]; arg {
		case "--add":
		case "--allow-principal":
			if p := next(); p != vars["PRINCIPAL"] {
				t.Fatalf("testbroker: %s: %s: principal %s, want $PRINCIPAL", SecurityDoc, cmd, p)
			}
		case "--operation":
			ops = append(ops, next())
		case "--resource-pattern-type":
			switch p := next(); p {
			case "prefixed":
				a.Prefixed = true
			case "literal":
			default:
				t.Fatalf("testbroker: %s: %s: the test does not know the pattern type %s", SecurityDoc, cmd, p)
			}
		case "--topic", "--group", "--transactional-id":
			a.Resource, a.Name = strings.TrimPrefix(arg, "--"), next()
			resources++
		case "--cluster":
			a.Resource = "cluster"
			resources++
		default:
			t.Fatalf("testbroker: %s: %s: the test does not know %s", SecurityDoc, cmd, arg)
		}
	}
	if resources != 1 || len(ops) == 0 {
		t.Fatalf("testbroker: %s: %s: want one resource and at least one operation", SecurityDoc, cmd)
	}
	acls := make([]ACL, len(ops))
	for i, op := range ops {
		acls[i] = a
		acls[i].Op = op
	}
	return acls
}

// moduleRoot is the directory of the go.mod above the test's working
// directory (its package's directory).
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testbroker: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Grant creates acls for principal ("User:app") as the super user, and
// waits until the broker lists them all (GrantWith).
func (s SecureBroker) Grant(t testing.TB, principal string, acls []ACL) {
	t.Helper()
	GrantWith(t, s.Admin(t), principal, acls)
}

// GrantWith creates acls for principal with adm, a client allowed to (a
// super user's), and waits until the broker lists them all: ACLs reach
// the authorizer through the metadata log.
func GrantWith(t testing.TB, adm *kadm.Client, principal string, acls []ACL) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range acls {
		op, err := kmsg.ParseACLOperation(a.Op)
		if err != nil {
			t.Fatalf("testbroker: %v: %v", a, err)
		}
		b := kadm.NewACLs().Allow(principal).Operations(op)
		switch a.Resource {
		case "topic":
			b.Topics(a.Name)
		case "group":
			b.Groups(a.Name)
		case "transactional-id":
			b.TransactionalIDs(a.Name)
		case "cluster":
			b.Clusters()
		default:
			t.Fatalf("testbroker: %v: unknown resource", a)
		}
		if a.Prefixed {
			b.ResourcePatternType(kadm.ACLPatternPrefixed)
		} else {
			b.ResourcePatternType(kadm.ACLPatternLiteral)
		}
		res, err := adm.CreateACLs(ctx, b)
		if err == nil {
			for _, r := range res {
				err = errors.Join(err, r.Err)
			}
		}
		if err != nil {
			t.Fatalf("testbroker: granting %v to %s: %v", a, principal, err)
		}
	}
	filter := kadm.NewACLs().Allow(principal).AllowHosts("*").
		ResourcePatternType(kadm.ACLPatternAny).AnyResource().Operations(kadm.OpAny)
	for {
		got, err := adm.DescribeACLs(ctx, filter)
		listed := map[string]bool{}
		if err == nil {
			for _, r := range got {
				err = errors.Join(err, r.Err)
				for _, d := range r.Described {
					listed[fmt.Sprintf("%s/%s/%v/%s", strings.ToLower(d.Type.String()), d.Name, d.Pattern == kadm.ACLPatternPrefixed, strings.ToLower(d.Operation.String()))] = true
				}
			}
		}
		n := 0
		for _, a := range acls {
			name, typ := a.Name, strings.ReplaceAll(a.Resource, "-", "_")
			if a.Resource == "cluster" {
				name = "kafka-cluster"
			}
			op, _ := kmsg.ParseACLOperation(a.Op)
			if listed[fmt.Sprintf("%s/%s/%v/%s", typ, name, a.Prefixed, strings.ToLower(op.String()))] {
				n++
			}
		}
		if err == nil && n == len(acls) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("testbroker: the broker lists %d of %d granted ACLs after 30s (last error %v; listed %v)", n, len(acls), err, listed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
