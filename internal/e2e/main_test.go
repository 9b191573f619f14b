//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain hands the tests two facts through the environment (the process's
// own state, so the package keeps no mutable variables): where the binaries
// are, or why the tests cannot run here.
const (
	envBinDir = "MSPRELAY_E2E_BIN"  // directory holding node, relay and msp
	envSkip   = "MSPRELAY_E2E_SKIP" // reason the host cannot run the tests
)

// Names of the binaries TestMain builds, as `go build -o DIR/` names them.
const (
	binNode  = "node"
	binRelay = "relay"
	binMSP   = "msp"
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

// testMain builds the binaries once for the whole test binary, sweeps what
// crashed earlier runs left, and runs the tests. When the host cannot make
// namespaces it still runs them, so that each one reports the skip.
func testMain(m *testing.M) int {
	start := time.Now()
	if reason := labUnavailable(); reason != "" {
		os.Setenv(envSkip, reason)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "msprelay-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s, %s, %s in %v\n", binNode, binRelay, binMSP, time.Since(t0).Round(time.Millisecond))
	sweepStale(start, os.Stderr)
	os.Setenv(envBinDir, dir)
	return m.Run()
}

// labUnavailable says why network namespaces cannot be made here, or "".
func labUnavailable() string {
	if runtime.GOOS != "linux" {
		return "network namespaces need Linux"
	}
	if os.Geteuid() != 0 {
		return "network namespaces need root (run the e2e tests as root, e.g. in CI or a container with CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's `ip` is not installed (apt-get install iproute2)"
	}
	probe := fmt.Sprintf("mr%d-probe", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Sprintf("`ip netns add` fails here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: removing probe namespace %s: %v: %s\n", probe, err, out)
	}
	return ""
}

// buildBinaries runs a plain `go build` (no -race: the binaries are the
// subject, not the test, and CI time matters) of the three commands.
func buildBinaries(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator), "./cmd/node", "./cmd/relay", "./cmd/msp")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/node ./cmd/relay ./cmd/msp: %w\n%s", err, out)
	}
	for _, b := range []string{binNode, binRelay, binMSP} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("go build left no %s binary: %w", b, err)
		}
	}
	return nil
}

// moduleRoot finds go.mod upwards from the package directory, where go test
// runs the test binary.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("module root: no go.mod above the test's directory")
}

// binDir returns the directory of the built binaries, or skips the test
// with the reason TestMain found.
func binDir(t *testing.T) string {
	t.Helper()
	if reason := os.Getenv(envSkip); reason != "" {
		t.Skipf("e2e: %s", reason)
	}
	dir := os.Getenv(envBinDir)
	if dir == "" {
		t.Fatalf("e2e: %s is unset: TestMain did not build the binaries", envBinDir)
	}
	return dir
}
