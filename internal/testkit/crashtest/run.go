package crashtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// EnvSeed names the environment variable that fixes a crash test's seed.
const EnvSeed = "SLUICE_CRASH_SEED"

// Seed returns the seed of SLUICE_CRASH_SEED, or one taken from the clock,
// and logs it with the command line that reruns it. A value that is not an
// unsigned integer fails the test.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed, err := parseSeed(os.Getenv(EnvSeed), uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("%s=%q: %v", EnvSeed, os.Getenv(EnvSeed), err)
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, EnvSeed, seed)
	return seed
}

// parseSeed returns s as a seed, or def when s is empty.
func parseSeed(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// Build compiles the main package in the current directory (a test's
// package directory) into a temporary directory of t, as name, and returns
// the binary's path. A failed build fails the test with the compiler's
// output. The binary's name is also the prefix of its fatal error line,
// which Harness.LogErrors looks for.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Run is the frame of an example's crash test: it skips under -short, takes
// the seed (Seed), builds the binary of the test's package as name (Build),
// and runs test once per instance count of instances, as the subtest
// "1 instance" or "<n> instances", with the seed plus n.
func Run(t *testing.T, name string, instances []int, test func(t *testing.T, bin string, instances int, seed uint64)) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := Seed(t)
	bin := Build(t, name)
	for _, n := range instances {
		sub := fmt.Sprintf("%d instances", n)
		if n == 1 {
			sub = "1 instance"
		}
		t.Run(sub, func(t *testing.T) { test(t, bin, n, seed+uint64(n)) })
	}
}

// Rand returns the random source of a crash test's run with seed: the
// kills and the input generator's seed come from it.
func Rand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed>>1|1)) }
