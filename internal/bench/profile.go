package bench

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

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
	Profile    string      `json:"profile"`        // "cpu", "alloc_objects", "alloc_space", "block", "mutex"
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
type childProfiles struct {
	cpu, mem, block, mutex string
	temp                   map[string]bool
}

// childProfiles returns the profile paths of this run. With ProfileTop set,
// a CPU or allocation profile nobody asked for goes to a temporary
// directory, which cleanup removes.
func (h *harness) childProfiles() (childProfiles, func(), error) {
	p := childProfiles{cpu: h.cfg.NodeCPUProfile, mem: h.cfg.NodeMemProfile,
		block: h.cfg.NodeBlockProfile, mutex: h.cfg.NodeMutexProfile, temp: map[string]bool{}}
	if h.cfg.ProfileTop == 0 || (p.cpu != "" && p.mem != "") {
		return p, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "mspbench-prof-")
	if err != nil {
		return p, nil, fmt.Errorf("bench: %w", err)
	}
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
func (p childProfiles) env() []string {
	var env []string
	for _, e := range []struct{ name, path string }{
		{childProfileEnv, p.cpu}, {childMemProfileEnv, p.mem},
		{childBlockProfileEnv, p.block}, {childMutexProfileEnv, p.mutex},
	} {
		if e.path != "" {
			env = append(env, e.name+"="+e.path)
		}
	}
	return env
}

// tops parses the profiles the child wrote and returns the top n of each:
// CPU, allocations by count and by size, blocking and mutex delay.
func (p childProfiles) tops(n int) ([]ProfileTop, error) {
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
			t.Profile = k[0]
			if !p.temp[f.path] {
				t.File = f.path
			}
			out = append(out, t)
		}
	}
	return out, nil
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
			out = append(out, l.Function.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("0x%x", loc.Address))
	}
	return out
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
