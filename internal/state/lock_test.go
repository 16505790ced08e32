package state_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/internal/state"
)

func checkLocked(t *testing.T, err error, dir string) {
	t.Helper()
	if !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, dir) || !strings.Contains(msg, "another state directory") {
		t.Fatalf("error %q should name %s and say what to do", msg, dir)
	}
}

func TestOpenLockedInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Skipf("no symlinks: %v", err)
	}
	tests := []struct {
		name   string
		second string // how the second Open names the directory
	}{
		{"same path", dir},
		// Pebble's own lock is an fcntl lock (per process) plus a
		// per-process table keyed by path, so a symlink slips past both and
		// Pebble alone would open one directory twice. The flock on
		// sluice.lock belongs to the open file, and catches it.
		{"symlink", link},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := state.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			db2, err := state.Open(tt.second)
			if err == nil {
				db2.Close()
				db.Close()
				t.Fatal("second Open of the same directory succeeded")
			}
			checkLocked(t, err, tt.second)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// Closing releases both locks.
			db3, err := state.Open(tt.second)
			if err != nil {
				t.Fatalf("Open after Close: %v", err)
			}
			db3.Close()
		})
	}
}

func TestOpenLockedMemFS(t *testing.T) {
	fs := vfs.NewMem()
	db, err := state.Open("db", state.FS(fs))
	if err != nil {
		t.Fatal(err)
	}
	_, err = state.Open("db", state.FS(fs))
	checkLocked(t, err, "db")
	db.Close()
	db, err = state.Open("db", state.FS(fs))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db.Close()
}

// TestOpenLockedOtherProcess starts this test binary again as a helper that
// holds the directory open, and checks that Open here fails.
func TestOpenLockedOtherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	dir := filepath.Join(t.TempDir(), "state")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "SLUICE_HOLD_LOCK="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the helper exits when stdin closes
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	_, err = state.Open(dir)
	checkLocked(t, err, dir)
}

func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("SLUICE_HOLD_LOCK")
	if dir == "" {
		t.Skip("helper for TestOpenLockedOtherProcess")
	}
	db, err := state.Open(dir)
	if err != nil {
		os.Stdout.WriteString("open: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	db.Close()
	os.Exit(0)
}
