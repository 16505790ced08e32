// Package sqlsinktest runs a throwaway PostgreSQL server for tests, from the
// binaries of a local installation (Debian's postgresql package puts them in
// /usr/lib/postgresql/<version>/bin): initdb into a temporary directory,
// postgres on a free loopback port, one fresh database per test.
//
// Use it from a package's TestMain:
//
//	func TestMain(m *testing.M) { sqlsinktest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := sqlsinktest.Postgres(t) // skips if PostgreSQL is not installed
//		db, err := sql.Open("pgx", dsn)
//		...
//	}
//
// As root, the server runs as the operating system user "postgres" (which
// the Debian package creates), because PostgreSQL refuses to run as root.
// SLUICE_POSTGRES_DSN names an existing server to use instead (a URL, with a
// user that may create databases); SLUICE_POSTGRES_BIN names the directory of
// the binaries.
package sqlsinktest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// Environment variables.
const (
	// EnvDSN names an existing PostgreSQL server (a postgres:// URL) to use
	// instead of starting one.
	EnvDSN = "SLUICE_POSTGRES_DSN"
	// EnvBin names the directory holding initdb and postgres.
	EnvBin = "SLUICE_POSTGRES_BIN"
)

// ErrNotInstalled is returned by Start when no PostgreSQL binaries are found.
var ErrNotInstalled = errors.New("sqlsinktest: PostgreSQL is not installed")

// Server is a PostgreSQL server started by Start.
type Server struct {
	dir   string // holds data/, postgres.log
	bin   string
	port  int
	cmd   *exec.Cmd
	exit  chan struct{} // closed when the server process exited
	admin string        // DSN of the "postgres" database
}

// FindBin returns the directory of the newest installed PostgreSQL's
// binaries: $SLUICE_POSTGRES_BIN, else /usr/lib/postgresql/<newest>/bin,
// else the directory of postgres on PATH.
func FindBin() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: no postgres under /usr/lib/postgresql/*/bin or on PATH (apt-get install postgresql, or set %s or %s)", ErrNotInstalled, EnvBin, EnvDSN)
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start runs initdb in a new temporary directory and starts postgres on a
// free loopback port, with durability turned off (fsync=off: a test server
// whose machine does not crash). It returns ErrNotInstalled (wrapped) when no
// binaries are found.
func Start() (*Server, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root, and there is no user \"postgres\" to run the server as: %v", ErrNotInstalled, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	data := filepath.Join(dir, "data")
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "sluice", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sqlsinktest: initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 3 { // a free port can be taken before postgres binds it
		if lastErr = s.start(data, cred); lastErr == nil {
			ok = true
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *Server) start(data string, cred *syscall.Credential) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=100", "-c", "shared_buffers=32MB")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT (immediate shutdown) if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sqlsinktest: starting postgres: %w", err)
	}
	s.cmd = cmd
	s.exit = make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exit)
	}()
	s.admin = s.DSN("postgres")
	db, err := sql.Open("pgx", s.admin)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exit:
			b, _ := os.ReadFile(logPath)
			s.cmd = nil
			return fmt.Errorf("sqlsinktest: postgres exited at startup: %s", tail(b))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("sqlsinktest: postgres did not answer within 30s: %v; log: %s", err, tail(b))
		}
	}
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// DSN returns the URL of database name on the server.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("postgres://sluice@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// CreateDatabase creates database name and returns its DSN.
func (s *Server) CreateDatabase(name string) (string, error) {
	return createDatabase(s.admin, name)
}

// Stop stops the server (fast shutdown, then SIGKILL after 10s) and removes
// its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exit:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exit
		}
		s.cmd = nil
	}
	os.RemoveAll(s.dir)
}

func createDatabase(adminDSN, name string) (string, error) {
	u, err := url.Parse(adminDSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("sqlsinktest: %q is not a postgres:// URL", adminDSN)
	}
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		return "", fmt.Errorf("sqlsinktest: creating database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

var shared struct {
	inMain bool
	once   sync.Once
	srv    *Server
	err    error
}

// Main runs the tests of m and then stops the server that Postgres started,
// if any, and exits. Call it from TestMain.
func Main(m *testing.M) {
	shared.inMain = true
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	os.Exit(code)
}

// Postgres returns the DSN of a new, empty database for the test, on a
// server shared by the package's tests (started at the first call, stopped
// by Main), or on the server named by SLUICE_POSTGRES_DSN. It skips the test
// when PostgreSQL is not installed, and fails it when the server cannot be
// started.
func Postgres(t testing.TB) string {
	t.Helper()
	name := dbName(t)
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		out, err := createDatabase(dsn, name)
		if err != nil {
			t.Fatalf("%s: %v", EnvDSN, err)
		}
		return out
	}
	if !shared.inMain {
		t.Fatal("sqlsinktest.Postgres needs the package's TestMain to call sqlsinktest.Main(m)")
	}
	shared.once.Do(func() { shared.srv, shared.err = Start() })
	if errors.Is(shared.err, ErrNotInstalled) {
		t.Skipf("skipping: %v", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("starting PostgreSQL: %v", shared.err)
	}
	out, err := shared.srv.CreateDatabase(name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dbName is a database name unique to the test: its name, sanitized and
// shortened (PostgreSQL allows 63 bytes), and a random suffix.
func dbName(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	var sb strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	n := sb.String()
	if len(n) > 40 {
		n = n[:40]
	}
	return "t_" + n + "_" + hex.EncodeToString(b[:])
}
