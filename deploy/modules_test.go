package deploy

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// nestedModules are the Go modules under deploy/ that `go test ./...` from
// the repository root skips.
var nestedModules = []string{"k8s", "pkg"}

// Runs the nested modules' tests with the same -race and -short as this
// run, so CI's single `go test -race -count=1 ./...` covers them.
func TestNestedModules(t *testing.T) {
	t.Parallel()
	for _, dir := range nestedModules {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			args := []string{"test", "-count=1"}
			if raceEnabled {
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
