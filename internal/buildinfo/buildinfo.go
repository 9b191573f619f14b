// Package buildinfo says which version of msprelay a binary is, so that every
// program can answer --version and an operator can tell two builds apart.
//
// Release builds (deploy/pkg, the container image) stamp the version and the
// commit with
//
//	go build -ldflags "-X github.com/msprelay/msprelay/internal/buildinfo.version=1.2.3 \
//	  -X github.com/msprelay/msprelay/internal/buildinfo.commit=0123456789ab"
//
// Other builds fall back to what the Go toolchain recorded in the binary: the
// main module's version (a tag or pseudo-version when built with
// `go install module@version`), else "dev (<commit>)" with the commit the
// linker was given or the VCS revision the toolchain recorded, else
// "dev (unknown)" (a build with -buildvcs=false, or from a go.work
// workspace, records none).
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version and commit are written only by the linker (-X); nothing assigns
// them at run time. The linker can set nothing but a package-level string
// variable, hence the exception to "no package-level mutable state".
var version, commit string

// Version returns the build's version: the stamped release (with its
// commit, when stamped and not already part of it), else the module
// version the toolchain recorded, else "dev (<commit>)".
func Version() string {
	info, _ := debug.ReadBuildInfo()
	return describe(strings.TrimSpace(version), strings.TrimSpace(commit), info)
}

// describe picks the most telling version from the stamps and what the
// toolchain recorded (info may be nil).
func describe(version, commit string, info *debug.BuildInfo) string {
	if version != "" {
		if commit != "" && !strings.Contains(version, commit) {
			return version + " (" + commit + ")"
		}
		return version
	}
	if info != nil {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	if commit == "" {
		commit = vcsRevision(info)
	}
	if commit == "" {
		commit = "unknown"
	}
	return "dev (" + commit + ")"
}

// vcsRevision is the recorded VCS revision, shortened, marked -dirty for
// uncommitted changes; "" when none was recorded.
func vcsRevision(info *debug.BuildInfo) string {
	if info == nil {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return rev
}
