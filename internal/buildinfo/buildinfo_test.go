package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// "Versions come from the build (-ldflags, or runtime/debug.ReadBuildInfo)."
func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"a tagged module version wins", debug.BuildInfo{
			Main:     debug.Module{Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}},
		}, "v1.4.0"},
		{"a devel build names its revision", debug.BuildInfo{
			Main:     debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}},
		}, "dev-0123456789ab"},
		{"uncommitted changes are flagged", debug.BuildInfo{
			Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123"},
				{Key: "vcs.modified", Value: "true"},
			},
		}, "dev-0123456789ab-dirty"},
		{"nothing recorded is dev", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := fromBuildInfo(&tc.info); got != tc.want {
				t.Fatalf("fromBuildInfo = %q, want %q", got, tc.want)
			}
		})
	}
}

// "Every program answers --version (including msp)": the real binaries,
// built the way deploy/pkg builds them, print the stamped version.
func TestBinariesPrintVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	t.Parallel()
	dir := t.TempDir()
	const stamp = "9.8.7-test"
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"-ldflags", "-X github.com/msprelay/msprelay/internal/buildinfo.version="+stamp,
		"../../cmd/node", "../../cmd/relay", "../../cmd/msp")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cases := []struct {
		bin, arg, want string
	}{
		{"node", "--version", "msprelay node " + stamp + "\n"},
		{"relay", "--version", "msprelay relay " + stamp + " (nats-server "},
		{"msp", "--version", "msp " + stamp + "\n"},
		{"msp", "version", "msp " + stamp + "\n"},
	}
	for _, tc := range cases {
		out, err := exec.Command(filepath.Join(dir, tc.bin), tc.arg).Output()
		if err != nil {
			t.Fatalf("%s %s: %v", tc.bin, tc.arg, err)
		}
		if !strings.HasPrefix(string(out), tc.want) {
			t.Errorf("%s %s printed %q on stdout, want it to start with %q", tc.bin, tc.arg, out, tc.want)
		}
	}
}
