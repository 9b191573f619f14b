// Package buildinfo says which version of msprelay a binary is, so that every
// program can answer --version and an operator can tell two builds apart.
//
// Release builds (deploy/pkg, the container image) stamp the version with
//
//	go build -ldflags "-X github.com/msprelay/msprelay/internal/buildinfo.version=1.2.3"
//
// Other builds fall back to what the Go toolchain recorded in the binary: the
// main module's version (a tag or pseudo-version when built with
// `go install module@version` or from a VCS checkout), else the VCS revision,
// else "dev".
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version is written only by the linker (-X); nothing assigns it at run time.
// The linker can set nothing but a package-level string variable, hence the
// exception to "no package-level mutable state".
var version string

// Version returns the build's version: the -ldflags value, else the version
// the toolchain recorded, else "dev".
func Version() string {
	if v := strings.TrimSpace(version); v != "" {
		return v
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(info)
}

// fromBuildInfo picks the most telling version the toolchain recorded.
func fromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
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
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "dev-" + rev
	if modified == "true" {
		v += "-dirty"
	}
	return v
}
