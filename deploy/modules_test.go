package deploy

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// nestedModules are the Go modules under deploy/ that `go test ./...` from
// the repository root skips. race says whether -race carries over: the
// packager is one goroutine of nfpm and xz compression, which the race
// detector slows several times over (minutes of CI) for nothing to find.
var nestedModules = []struct {
	dir  string
	race bool
}{{"k8s", true}, {"pkg", false}}

// Runs the nested modules' tests with the same -race (where it pays) and
// -short as this run, so CI's single `go test -race -count=1 ./...` covers
// them.
func TestNestedModules(t *testing.T) {
	t.Parallel()
	for _, mod := range nestedModules {
		dir := mod.dir
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			args := []string{"test", "-count=1"}
			if raceEnabled && mod.race {
				args = append(args, "-race")
			}
			if testing.Short() {
				args = append(args, "-short")
			}
			if d, ok := t.Deadline(); ok {
				// Fail with the nested test's own report, before ours ends.
				args = append(args, "-timeout="+time.Until(d).Truncate(time.Second).String())
			}
			if testing.Verbose() {
				args = append(args, "-v")
			}
			cmd := exec.Command("go", append(args, "./...")...)
			cmd.Dir = dir
			cmd.Env = os.Environ()
			out, err := cmd.CombinedOutput()
			t.Logf("go %v in deploy/%s:\n%s", args, dir, out)
			if err != nil {
				t.Fatalf("deploy/%s: %v", dir, err)
			}
		})
	}
}
