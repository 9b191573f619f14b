package bench

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// Profiles of the node child. The allocs scenario's child process runs only
// the node, so its profiles show the node's own cost without the load
// generator and the receivers; the harness passes the paths to write in
// the environment, and the child writes the CPU profile over its whole life
// and the others when it stops.
const (
	childMemProfileEnv   = "MSPBENCH_CHILD_MEMPROFILE"
	childBlockProfileEnv = "MSPBENCH_CHILD_BLOCKPROFILE"
	childMutexProfileEnv = "MSPBENCH_CHILD_MUTEXPROFILE"

	// childMemProfileRate is the child's runtime.MemProfileRate when it
	// writes an allocation profile: one sample per 32 KiB allocated, some
	// eight messages' worth, so the profile is detailed while recording
	// costs the node little. Allocation counts (MemStats) are exact either
	// way.
	childMemProfileRate = 32 * 1024
	// childBlockProfileRate samples one blocking event per 10 µs spent
	// blocked; childMutexProfileFraction one contention event in 10.
	childBlockProfileRate     = 10_000
	childMutexProfileFraction = 10
)

// ProfileTop is the top of one profile of the node child: the functions
// with the largest flat share (spent in the function itself) and the
// largest cumulative share (in it or in what it calls).
type ProfileTop struct {
	Profile string `json:"profile"` // "cpu", "alloc_objects", "alloc_space", "block", "mutex"
	// Workload and Mode name the load path of a per-path profile (its
	// measured batches only); both are empty for a profile of the child's
	// whole run.
	Workload string `json:"workload,omitempty"`
	Mode     string `json:"mode,omitempty"`
	// Scope says what part of the child's run the profile covers.
	Scope      string      `json:"scope"`
	File       string      `json:"file,omitempty"` // empty when the harness made it in a temporary directory
	SampleType string      `json:"sample_type"`    // the pprof sample type summed
	Unit       string      `json:"unit"`           // its unit: nanoseconds, bytes, count
	Total      float64     `json:"total"`          // all samples, in Unit
	Flat       []FuncShare `json:"flat"`
	Cum        []FuncShare `json:"cum"`
}

// FuncShare is one function's part of a profile.
type FuncShare struct {
	Func    string  `json:"func"`
	Value   float64 `json:"value"`   // in the profile's Unit
	Percent float64 `json:"percent"` // of Total
}

// childProfiles are the files the node child writes its profiles to ("" for
// none); temp marks the ones the harness made for ProfileTop alone.
//
// With ProfileTop set, the harness also profiles each load path (workload
// and mode) on its own: it has the child start and stop a CPU profile
// around the path's measured batches and write its allocation profile
// before and after them (into dir), and the path's allocations are the
// difference. A process has one CPU profile at a time, so the child's
// whole-run CPU profile is then the merge of the paths' ones.
type childProfiles struct {
	cpu, mem, block, mutex string
	temp                   map[string]bool
	perPath                bool
	dir                    string
	paths                  []pathFiles // in run order; only the allocs goroutine appends
}

// pathFiles are one load path's profiles.
type pathFiles struct {
	workload, mode          string
	cpu, allocsBase, allocs string
}

// childProfiles returns the profile paths of this run. With ProfileTop set,
// a CPU or allocation profile nobody asked for and the per-path profiles go
// to a temporary directory, which cleanup removes.
func (h *harness) childProfiles() (*childProfiles, func(), error) {
	p := &childProfiles{cpu: h.cfg.NodeCPUProfile, mem: h.cfg.NodeMemProfile,
		block: h.cfg.NodeBlockProfile, mutex: h.cfg.NodeMutexProfile, temp: map[string]bool{}}
	if h.cfg.ProfileTop == 0 {
		return p, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "mspbench-prof-")
	if err != nil {
		return p, nil, fmt.Errorf("bench: %w", err)
	}
	p.perPath, p.dir = true, dir
	if p.cpu == "" {
		p.cpu = filepath.Join(dir, "cpu.pprof")
		p.temp[p.cpu] = true
	}
	if p.mem == "" {
		p.mem = filepath.Join(dir, "mem.pprof")
		p.temp[p.mem] = true
	}
	return p, func() { os.RemoveAll(dir) }, nil
}

// env is the child's environment for p.
func (p *childProfiles) env() []string {
	var env []string
	for _, e := range []struct{ name, path string }{
		{childMemProfileEnv, p.mem}, {childBlockProfileEnv, p.block}, {childMutexProfileEnv, p.mutex},
	} {
		if e.path != "" {
			env = append(env, e.name+"="+e.path)
		}
	}
	if p.cpu != "" && !p.perPath {
		env = append(env, childProfileEnv+"="+p.cpu)
	}
	return env
}

// beginPath starts profiling the path workload/mode in the child c (when
// per-path profiling is on); endPath ends it.
func (p *childProfiles) beginPath(c *child, workload, mode string) error {
	if !p.perPath {
		return nil
	}
	name := filepath.Join(p.dir, workload+"-"+mode)
	f := pathFiles{workload: workload, mode: mode, cpu: name + ".cpu.pprof",
		allocsBase: name + ".allocs-base.pprof", allocs: name + ".allocs.pprof"}
	if err := c.do("allocs " + f.allocsBase); err != nil {
		return err
	}
	if err := c.do("cpu-start " + f.cpu); err != nil {
		return err
	}
	p.paths = append(p.paths, f)
	return nil
}

func (p *childProfiles) endPath(c *child) error {
	if !p.perPath {
		return nil
	}
	if err := c.do("cpu-stop"); err != nil {
		return err
	}
	return c.do("allocs " + p.paths[len(p.paths)-1].allocs)
}

// mergeCPU writes the merge of the paths' CPU profiles to p.cpu: the
// child's CPU profile when the paths were profiled one by one.
func (p *childProfiles) mergeCPU() error {
	var ps []*profile.Profile
	for _, f := range p.paths {
		prof, err := readProfile(f.cpu)
		if err != nil {
			return err
		}
		ps = append(ps, prof)
	}
	merged, err := profile.Merge(ps)
	if err != nil {
		return fmt.Errorf("bench: merge CPU profiles: %w", err)
	}
	return saveProfile(merged, p.cpu)
}

// saveProfile writes prof to path as pprof files are (gzipped protobuf).
func saveProfile(prof *profile.Profile, path string) error {
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := prof.Write(out); err != nil {
		out.Close()
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	return out.Close()
}

// tops parses the profiles the child wrote and returns the top n of each:
// first the whole run's CPU, allocations by count and by size, blocking
// and mutex delay, then, with per-path profiling, each path's CPU and
// allocations by count.
func (p *childProfiles) tops(n int) ([]ProfileTop, error) {
	if p.perPath && len(p.paths) > 0 {
		if err := p.mergeCPU(); err != nil {
			return nil, err
		}
	}
	var out []ProfileTop
	for _, f := range []struct {
		path  string
		kinds [][2]string // profile name, sample type
	}{
		{p.cpu, [][2]string{{"cpu", "cpu"}}},
		{p.mem, [][2]string{{"alloc_objects", "alloc_objects"}, {"alloc_space", "alloc_space"}}},
		{p.block, [][2]string{{"block", "delay"}}},
		{p.mutex, [][2]string{{"mutex", "delay"}}},
	} {
		if f.path == "" {
			continue
		}
		prof, err := readProfile(f.path)
		if err != nil {
			return out, err
		}
		for _, k := range f.kinds {
			t, err := topFunctions(prof, k[1], n)
			if err != nil {
				return out, fmt.Errorf("bench: %s: %w", f.path, err)
			}
			t.Profile, t.Scope = k[0], "the child's whole run, every workload and mode"
			if f.path == p.cpu && p.perPath {
				t.Scope = "the measured batches of every workload and mode"
			}
			if !p.temp[f.path] {
				t.File = f.path
			}
			out = append(out, t)
		}
	}
	for _, f := range p.paths {
		cpu, err := readProfile(f.cpu)
		if err != nil {
			return out, err
		}
		t, err := topFunctions(cpu, "cpu", n)
		if err != nil {
			return out, fmt.Errorf("bench: %s: %w", f.cpu, err)
		}
		t.Profile, t.Workload, t.Mode, t.Scope = "cpu", f.workload, f.mode, "this path's measured batches"
		out = append(out, t)
		allocs, err := diffProfiles(f.allocs, f.allocsBase)
		if err != nil {
			return out, err
		}
		if t, err = topFunctions(allocs, "alloc_objects", n); err != nil {
			return out, fmt.Errorf("bench: %s: %w", f.allocs, err)
		}
		t.Profile, t.Workload, t.Mode, t.Scope = "alloc_objects", f.workload, f.mode, "this path's measured batches"
		out = append(out, t)
	}
	return out, nil
}

// diffProfiles is the profile at path minus the one at basePath (what
// `go tool pprof -diff_base` shows): the allocations made in between.
func diffProfiles(path, basePath string) (*profile.Profile, error) {
	after, err := readProfile(path)
	if err != nil {
		return nil, err
	}
	base, err := readProfile(basePath)
	if err != nil {
		return nil, err
	}
	base.Scale(-1)
	d, err := profile.Merge([]*profile.Profile{after, base})
	if err != nil {
		return nil, fmt.Errorf("bench: %s minus %s: %w", path, basePath, err)
	}
	return d, nil
}

// readProfile parses a pprof file (gzipped protobuf, as runtime/pprof
// writes it).
func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: profile: %w", err)
	}
	defer f.Close()
	prof, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("bench: profile %s: %w", path, err)
	}
	return prof, nil
}

// ErrNoSampleType: the profile does not record the sample type asked for.
var ErrNoSampleType = errors.New("bench: profile lacks sample type")

// topFunctions sums sampleType over p's samples per function: flat to the
// innermost function of each sample's stack (inlined frames count as their
// own functions, as `go tool pprof` shows them), cumulative to every
// function on the stack, once per sample even when it recurses. It returns
// the n largest of each, largest first.
func topFunctions(p *profile.Profile, sampleType string, n int) (ProfileTop, error) {
	idx := slices.IndexFunc(p.SampleType, func(st *profile.ValueType) bool { return st.Type == sampleType })
	if idx < 0 {
		return ProfileTop{}, fmt.Errorf("%w %q", ErrNoSampleType, sampleType)
	}
	t := ProfileTop{SampleType: sampleType, Unit: p.SampleType[idx].Unit}
	flat, cum := map[string]int64{}, map[string]int64{}
	var total int64
	seen := map[string]bool{}
	for _, s := range p.Sample {
		v := s.Value[idx]
		if v == 0 {
			continue
		}
		total += v
		clear(seen)
		leaf := true
		for _, loc := range s.Location {
			for _, name := range frameNames(loc) {
				if leaf {
					flat[name] += v
					leaf = false
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	t.Total = float64(total)
	t.Flat, t.Cum = largest(flat, total, n), largest(cum, total, n)
	return t, nil
}

// frameNames are the functions of one location, innermost first (a
// location holds several when calls were inlined into its caller).
func frameNames(loc *profile.Location) []string {
	out := make([]string, 0, len(loc.Line))
	for _, l := range loc.Line {
		if l.Function != nil {
			out = append(out, shortGeneric(l.Function.Name))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("0x%x", loc.Address))
	}
	return out
}

// shortGeneric drops the type arguments of an instantiated generic
// function ("slices.Clone[go.shape.[]...]" becomes "slices.Clone[...]"),
// which can be hundreds of characters of GC shape.
func shortGeneric(name string) string {
	i := strings.Index(name, "[go.shape.")
	if i < 0 {
		return name
	}
	depth := 0
	for j := i; j < len(name); j++ {
		switch name[j] {
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return name[:i] + "[...]" + shortGeneric(name[j+1:])
			}
		}
	}
	return name[:i] + "[...]"
}

// largest returns the n largest values of m as shares of total, largest
// first, ties by name so the order is stable.
func largest(m map[string]int64, total int64, n int) []FuncShare {
	out := make([]FuncShare, 0, len(m))
	for f, v := range m {
		pct := 0.0
		if total > 0 {
			pct = math.Round(float64(v)/float64(total)*1000) / 10
		}
		out = append(out, FuncShare{Func: f, Value: float64(v), Percent: pct})
	}
	slices.SortFunc(out, func(a, b FuncShare) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Func, b.Func))
	})
	return out[:min(n, len(out))]
}

// fmtProfileValue formats a profile total for people: seconds for
// nanoseconds, MiB for bytes, a plain count otherwise.
func fmtProfileValue(v float64, unit string) string {
	switch unit {
	case "nanoseconds":
		return fmt.Sprintf("%.2f s", v/1e9)
	case "bytes":
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}
