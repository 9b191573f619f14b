package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// "Versions come from the build (-ldflags, or runtime/debug.ReadBuildInfo)";
// issue 20: "every version reads dev": a build says its commit, and a build
// that recorded none says so.
func TestDescribe(t *testing.T) {
	t.Parallel()
	devel := debug.Module{Version: "(devel)"}
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}
	cases := []struct {
		name            string
		version, commit string
		info            *debug.BuildInfo
		want            string
	}{
		{"a stamped release names its commit", "v1.4.0", "0123456789ab", &debug.BuildInfo{Main: devel}, "v1.4.0 (0123456789ab)"},
		{"a stamped release holding its commit says it once", "v0.0.0+git.0123456789ab", "0123456789ab", nil, "v0.0.0+git.0123456789ab"},
		{"a stamped release without a commit", "1.2.3", "", &debug.BuildInfo{Main: devel, Settings: rev}, "1.2.3"},
		{"a tagged module version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: rev}, "v1.4.0"},
		{"a stamped commit without a release (-buildvcs=false)", "", "fedcba987654", &debug.BuildInfo{Main: devel}, "dev (fedcba987654)"},
		{"a devel build names its revision", "", "", &debug.BuildInfo{Main: devel, Settings: rev}, "dev (0123456789ab)"},
		{"uncommitted changes are flagged", "", "", &debug.BuildInfo{Main: devel, Settings: append(rev[:1:1],
			debug.BuildSetting{Key: "vcs.modified", Value: "true"})}, "dev (0123456789ab-dirty)"},
		{"nothing recorded says so", "", "", &debug.BuildInfo{Main: devel}, "dev (unknown)"},
		{"no build info at all", "", "", nil, "dev (unknown)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := describe(tc.version, tc.commit, tc.info); got != tc.want {
				t.Fatalf("describe = %q, want %q", got, tc.want)
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
	const stamp, commit = "9.8.7-test", "0123456789ab"
	pkgs := []string{"../../cmd/node", "../../cmd/relay", "../../cmd/msp", "../../cmd/mspbench"}
	build := func(dir string, args ...string) {
		cmd := exec.Command("go", append(append([]string{"build", "-o", dir + string(filepath.Separator)}, args...), pkgs...)...)
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	stamped, bare := t.TempDir(), t.TempDir()
	build(stamped, "-buildvcs=false", "-ldflags", "-X github.com/msprelay/msprelay/internal/buildinfo.version="+stamp+
		" -X github.com/msprelay/msprelay/internal/buildinfo.commit="+commit)
	// Issue 20: "every version reads dev", even built with -buildvcs=false.
	build(bare, "-buildvcs=false")
	cases := []struct {
		dir, bin, arg, want string
	}{
		{stamped, "node", "--version", "msprelay node " + stamp + " (" + commit + ")\n"},
		{stamped, "relay", "--version", "msprelay relay " + stamp + " (" + commit + ") (nats-server "},
		{stamped, "msp", "--version", "msp " + stamp + " (" + commit + ")\n"},
		{stamped, "msp", "version", "msp " + stamp + " (" + commit + ")\n"},
		{stamped, "mspbench", "--version", "mspbench " + stamp + " (" + commit + ")\n"},
		{bare, "node", "--version", "msprelay node dev (unknown)\n"},
		{bare, "relay", "--version", "msprelay relay dev (unknown) (nats-server "},
		{bare, "msp", "--version", "msp dev (unknown)\n"},
		{bare, "mspbench", "--version", "mspbench dev (unknown)\n"},
	}
	for _, tc := range cases {
		out, err := exec.Command(filepath.Join(tc.dir, tc.bin), tc.arg).Output()
		if err != nil {
			t.Fatalf("%s %s: %v", tc.bin, tc.arg, err)
		}
		if !strings.HasPrefix(string(out), tc.want) {
			t.Errorf("%s %s printed %q on stdout, want it to start with %q", tc.bin, tc.arg, out, tc.want)
		}
	}
}
