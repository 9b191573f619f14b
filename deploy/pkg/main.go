// Command pkg builds the msprelay Debian packages: static binaries
// (CGO_ENABLED=0) stamped with the version, then the msprelay and
// msprelay-relay .deb files described by msprelay.yaml and
// msprelay-relay.yaml, written with nfpm used as a library.
//
//	go run ./deploy/pkg --out dist/ [--version v1.2.3] [--arch amd64]
//
// It is its own Go module (github.com/msprelay/msprelay/deploy/pkg) because
// nfpm brings in some forty modules (git, PGP, templating) that the daemons
// must not carry; the go.work file at the repository root makes the command
// above work from a checkout. The binaries themselves are built with
// GOWORK=off, from the main module's own go.mod and go.sum, so a package
// holds exactly the dependency versions the main module pins.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

// mainModule is the module whose programs are packaged.
const mainModule = "github.com/msprelay/msprelay"

// versionVar and commitVar are the -X targets read by internal/buildinfo.
const (
	versionVar = mainModule + "/internal/buildinfo.version"
	commitVar  = mainModule + "/internal/buildinfo.commit"
)

// binaries maps each program's package to its installed name.
var binaries = []struct{ pkg, name string }{
	{"./cmd/node", "msprelay-node"},
	{"./cmd/relay", "msprelay-relay"},
	{"./cmd/msp", "msp"},
}

// specs are the nfpm descriptions under deploy/pkg, one per package.
var specs = []string{"msprelay.yaml", "msprelay-relay.yaml"}

// Config is what one packaging run needs.
type Config struct {
	Src     string    // repository root (holds the main module's go.mod)
	Out     string    // directory the .deb files are written to
	Version string    // e.g. v1.2.3; "" means derived from git
	Commit  string    // stamped beside the version; "" means git's HEAD, if any
	Arch    string    // GOARCH of the binaries and the packages
	Log     io.Writer // progress lines
	// Binaries, when set, is a directory of msprelay-node, msprelay-relay
	// and msp already built for Version and Arch; Build then packs those
	// instead of compiling.
	Binaries string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: go run ./deploy/pkg [flags]\n\nBuilds the msprelay and msprelay-relay Debian packages.\n\n")
		fs.PrintDefaults()
	}
	var cfg Config
	fs.StringVar(&cfg.Out, "out", "dist", "directory to write the .deb files to")
	fs.StringVar(&cfg.Src, "src", "", "repository root (default: found from the working directory)")
	fs.StringVar(&cfg.Version, "version", "", "package and program version, e.g. v1.2.3 (default: from git describe)")
	fs.StringVar(&cfg.Arch, "arch", runtime.GOARCH, "target architecture (GOARCH): amd64, arm64, ...")
	fs.StringVar(&cfg.Binaries, "binaries", "", "directory of prebuilt msprelay-node, msprelay-relay and msp to pack instead of building")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pkg: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.Log = stderr
	debs, err := Build(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pkg: %v\n", err)
		return 1
	}
	for _, d := range debs {
		fmt.Fprintln(stdout, d)
	}
	return 0
}

// Build compiles the binaries and writes the packages; it returns the paths
// of the .deb files.
func Build(cfg Config) ([]string, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Src == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if cfg.Src, err = findRoot(wd); err != nil {
			return nil, err
		}
	}
	src, err := filepath.Abs(cfg.Src)
	if err != nil {
		return nil, err
	}
	if cfg.Version == "" {
		cfg.Version = gitVersion(src)
	}
	if cfg.Commit == "" {
		cfg.Commit = gitCommit(src)
	}
	if !validVersion.MatchString(cfg.Version) {
		return nil, fmt.Errorf("--version %q: want a semantic version such as v1.2.3 or 1.2.3-rc1", cfg.Version)
	}
	stage := cfg.Binaries
	if stage == "" {
		if stage, err = os.MkdirTemp("", "msprelay-pkg-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(stage)
		if err := buildBinaries(src, stage, cfg); err != nil {
			return nil, err
		}
	}
	if stage, err = filepath.Abs(stage); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	vars := map[string]string{"VERSION": cfg.Version, "ARCH": cfg.Arch, "BIN": stage, "SRC": src}
	var out []string
	for _, spec := range specs {
		p, err := writeDeb(filepath.Join(src, "deploy", "pkg", spec), vars, cfg.Out)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(cfg.Log, "pkg: wrote %s\n", p)
		out = append(out, p)
	}
	return out, nil
}

// validVersion accepts what nfpm can turn into a Debian version.
var validVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// findRoot walks up from dir to the directory whose go.mod declares the
// main module.
func findRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && declares(b, mainModule) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod for %s above %s; give --src", mainModule, dir)
		}
	}
}

func declares(gomod []byte, module string) bool {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1] == module
		}
	}
	return false
}

// gitVersion derives a version from the checkout: the nearest v* tag
// (commits since it become build metadata, so they sort after the tag), else
// 0.0.0 with the commit as metadata; uncommitted changes are marked.
func gitVersion(src string) string {
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	dirty := ""
	if git("status", "--porcelain", "--untracked-files=no") != "" {
		dirty = ".dirty"
	}
	if d := git("describe", "--tags", "--match", "v[0-9]*", "--long"); d != "" {
		// v1.2.3-4-gabcdef0: tag, commits since, commit.
		if i := strings.LastIndex(d, "-g"); i > 0 {
			if j := strings.LastIndex(d[:i], "-"); j > 0 {
				tag, n, sha := d[:j], d[j+1:i], d[i+2:]
				if n == "0" && dirty == "" {
					return tag
				}
				return tag + "+" + n + ".g" + sha + dirty
			}
		}
	}
	if sha := git("rev-parse", "--short=12", "HEAD"); sha != "" {
		return "v0.0.0+git." + sha + dirty
	}
	return "v0.0.0+dev"
}

// gitCommit is the checkout's short commit, "" outside a git checkout.
// The binaries are built with GOWORK=off from a module directory, where
// the toolchain may record no VCS revision (-buildvcs=false, a source
// tarball); the stamp says which commit a package holds regardless.
func gitCommit(src string) string {
	cmd := exec.Command("git", "rev-parse", "--short=12", "HEAD")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// buildBinaries compiles the programs statically into stage under their
// installed names.
func buildBinaries(src, stage string, cfg Config) error {
	for _, b := range binaries {
		fmt.Fprintf(cfg.Log, "pkg: building %s %s for linux/%s\n", b.name, cfg.Version, cfg.Arch)
		ldflags := "-s -w -X " + versionVar + "=" + cfg.Version
		if cfg.Commit != "" {
			ldflags += " -X " + commitVar + "=" + cfg.Commit
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags,
			"-o", filepath.Join(stage, b.name), b.pkg)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+cfg.Arch, "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out.Bytes())
		}
	}
	return nil
}

// writeDeb reads one nfpm description (strictly: an unknown key is an
// error), expands ${VAR} from vars only and writes the package into dir.
func writeDeb(spec string, vars map[string]string, dir string) (string, error) {
	cfg, err := nfpm.ParseFileWithEnvMapping(spec, func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	// nfpm reads scripts relative to the working directory; make them
	// relative to the description instead.
	for _, s := range []*string{&info.Scripts.PreInstall, &info.Scripts.PostInstall, &info.Scripts.PreRemove, &info.Scripts.PostRemove} {
		if *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(filepath.Dir(spec), *s)
		}
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	path := filepath.Join(dir, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("%s: %w", spec, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}
