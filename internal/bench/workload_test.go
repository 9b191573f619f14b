package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// Rule (issue 13): the hot workload sends "all messages to ONE recipient
// ... right-terminal addressing": its messages name the terminal in
// RECIP-TERM, the spread workload's leave it empty.
func TestHotMessagesNameTheTerminal(t *testing.T) {
	t.Parallel()
	for _, rterm := range []string{"", hotTerm} {
		m, err := msp.Parse(appendMessage(nil, "hot0", rterm, "w3", 2, 9, 77))
		if err != nil {
			t.Fatalf("rterm %q: %v", rterm, err)
		}
		if m.Recipient != "hot0" || m.RecipTerm != rterm {
			t.Errorf("parsed recipient %q at %q, want hot0 at %q", m.Recipient, m.RecipTerm, rterm)
		}
	}
}

// Rule: scenario names stay stable (the spread workload keeps
// "local/tcp1") and name the workload otherwise ("local-hot/tcp1"), and
// the name alone tells kind, workload and mode, so that reports written
// before the hot workload still read right.
func TestScenarioNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, workload, mode, name string
	}{
		{"local", WorkloadSpread, ModeTCP1, "local/tcp1"},
		{"cross", WorkloadSpread, ModeTCPPipe, "cross/tcppipe"},
		{"local", WorkloadHot, ModeUDP, "local-hot/udp"},
		{"cross", WorkloadHot, ModeTCP1, "cross-hot/tcp1"},
	}
	for _, tc := range tests {
		if got := scenarioName(tc.kind, tc.workload, tc.mode); got != tc.name {
			t.Errorf("scenarioName(%s, %s, %s) = %q, want %q", tc.kind, tc.workload, tc.mode, got, tc.name)
		}
		k, w, m := splitScenario(tc.name)
		if k != tc.kind || w != tc.workload || m != tc.mode {
			t.Errorf("splitScenario(%q) = %s, %s, %s", tc.name, k, w, m)
		}
		if got := (&Comparison{Scenario: tc.name}).workloadOf(); got != tc.workload {
			t.Errorf("workloadOf(%q) without the field = %q, want %q", tc.name, got, tc.workload)
		}
	}
}

// Rule: --workloads selects spread, hot, client or several (all three by
// default); anything else is refused before anything runs.
func TestWorkloadSelection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want []string
		ok   bool
	}{
		{"default is all three", nil, []string{WorkloadSpread, WorkloadHot, WorkloadClient}, true},
		{"client alone", []string{WorkloadClient}, []string{WorkloadClient}, true},
		{"hot alone", []string{WorkloadHot}, []string{WorkloadHot}, true},
		{"spread alone", []string{WorkloadSpread}, []string{WorkloadSpread}, true},
		{"unknown", []string{WorkloadHot, "cold"}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Workloads = tc.in
			err := c.validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("validate = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !slices.Equal(c.Workloads, tc.want) {
				t.Errorf("workloads = %v, want %v", c.Workloads, tc.want)
			}
		})
	}
}

// Rule (issues 13 and 21): "Targets (ratios in one run ...; every
// workload)": every message-path target is evaluated once per workload,
// local delivery against the minimal relay (one per connection >= 0.8x,
// one at a time and pipelined and UDP >= 0.7x), the cross-node rate also
// against raw NATS (>= 0.3x), allocations per message <= 10, and the
// no-growth target only once the duplicate windows are full, which the
// table says.
func TestTargetsForEveryWorkload(t *testing.T) {
	t.Parallel()
	cmpOf := func(scenario, wl string, qs ...Ratio) *Comparison {
		return &Comparison{Scenario: scenario, Workload: wl, Ratios: qs}
	}
	rep := &Report{Settings: Settings{Workloads: Workloads()}}
	for _, wl := range Workloads() {
		hot := wl == WorkloadHot
		pick := func(other, hot_ float64) float64 {
			if hot {
				return hot_
			}
			return other
		}
		server := Ratio{Of: "node", To: armMinimal, Rate: 0.3}
		rep.Comparisons = append(rep.Comparisons,
			cmpOf(scenarioName("local", wl, ModeTCP1), wl, Ratio{Of: "node", To: armRelay, Rate: pick(0.9, 0.7)}, server),
			cmpOf(scenarioName("local", wl, ModeTCPSeq), wl, Ratio{Of: "node", To: armRelay, Rate: pick(0.75, 0.65)}, server),
			cmpOf(scenarioName("local", wl, ModeTCPPipe), wl, Ratio{Of: "node", To: armRelay, Rate: 0.7}, server),
			cmpOf(scenarioName("local", wl, ModeUDP), wl, Ratio{Of: "node", To: armRelay, Rate: 0.2},
				Ratio{Of: "node", To: armUDPLoop, Rate: 0.1}),
			cmpOf(scenarioName("cross", wl, ModeTCPPipe), wl,
				Ratio{Of: "cross", To: "local", Rate: 0.55, P99: pick(1.5, 2.5)},
				Ratio{Of: "cross", To: "nats", Rate: pick(0.31, 0.29)}))
		rep.Allocs = append(rep.Allocs,
			AllocResult{Workload: wl, Mode: ModeTCPPipe, AllocsPerMsg: []float64{9, pick(10, 11)}, Warmup: 200000, Before: 200000,
				WindowsFull: true, NoGrowth: true},
			AllocResult{Workload: wl, Mode: ModeUDP, AllocsPerMsg: []float64{8, 8}, Warmup: int(pick(50000, 1000)), Before: 400000,
				WindowsFull: !hot, NoGrowth: true})
	}
	got := map[string]Target{}
	for _, tg := range targets(rep) {
		got[tg.Name] = tg
	}
	want := map[string]string{
		"sign-in visible on all 10 nodes, p99":          StatusNotMeasured,
		"idle session memory":                           StatusNotMeasured,
		"idle signed-in user on a node, distinct users": StatusNotMeasured,
	}
	for _, wl := range Workloads() {
		hot := wl == WorkloadHot
		st := func(ok bool) string { return status(ok) }
		want["TCP one message per connection, rate ("+wl+")"] = st(!hot)
		want["TCP one connection per sender, one at a time, rate ("+wl+")"] = st(!hot)
		want["TCP pipelined, rate ("+wl+")"] = StatusMet
		want["UDP, rate ("+wl+")"] = StatusNotMet
		want["cross-node rate (tcppipe, "+wl+")"] = StatusMet
		want["cross-node reply p99 (tcppipe, "+wl+")"] = st(!hot)
		want["cross-node rate vs raw NATS request-reply (tcppipe, "+wl+")"] = st(!hot)
		want["allocations per locally delivered message ("+wl+")"] = st(!hot)
		want["no live-heap growth once the dedup windows are full ("+wl+")"] = StatusMet
		if hot {
			want["no live-heap growth once the dedup windows are full ("+wl+")"] = StatusNotMeasured
		}
	}
	for name, st := range want {
		tg, ok := got[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if tg.Status != st {
			t.Errorf("target %q: status %q (got %q), want %q", name, tg.Status, tg.Got, st)
		}
	}
	if tg := got["UDP, rate (client)"]; tg.Want != ">= 0.7x minimal-relay" || !strings.Contains(tg.Got, "0.10x udp-loop") {
		t.Errorf("UDP target %+v: want >= 0.7x minimal-relay, the udp-loop ratio shown", tg)
	}
	if len(got) != len(want) {
		t.Errorf("%d targets, want %d: %v", len(got), len(want), got)
	}
	if tg := got["cross-node rate vs raw NATS request-reply (tcppipe, spread)"]; tg.Want != ">= 0.3x nats" {
		t.Errorf("NATS target wants %q, want >= 0.3x nats", tg.Want)
	}
	heap := got["no live-heap growth once the dedup windows are full (spread)"].Got
	for _, s := range []string{"sent before 200000 > window 65536", "UDP warm-up 50000 > UDP window 16384"} {
		if !strings.Contains(heap, s) {
			t.Errorf("no-growth target says %q, lacks %q", heap, s)
		}
	}
	if hot := got["no live-heap growth once the dedup windows are full (hot)"].Got; !strings.HasPrefix(hot, "windows not full") {
		t.Errorf("hot no-growth target with a short UDP warm-up says %q; want it to say the windows were not full", hot)
	}
}

// burnCPU spins for d; its name is what TestProfileTop looks for.
func burnCPU(d time.Duration) uint64 {
	var x uint64
	for end := time.Now().Add(d); time.Now().Before(end); {
		for i := range 10000 {
			x += uint64(i)*x ^ 0x9e3779b97f4a7c15
		}
	}
	return x
}

// allocChunks allocates n small slices; its name is what TestProfileTop
// looks for.
//
//go:noinline
func allocChunks(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 1024)
	}
	return out
}

// Rule: --profile-top reads real pprof files: the function that burned the
// CPU tops the cumulative list of a CPU profile, the function that
// allocated between two allocation profiles tops the flat list of their
// difference, shares are
// percentages of the total, and a sample type the profile lacks is an
// error.
//
// Not parallel: the CPU and allocation profiles are the whole process's,
// and the other tests' load would crowd out the functions looked for.
func TestProfileTop(t *testing.T) {
	dir := t.TempDir()
	cpuPath := filepath.Join(dir, "cpu.pprof")
	f, err := os.Create(cpuPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	burnCPU(400 * time.Millisecond)
	pprof.StopCPUProfile()
	f.Close()

	// 64 MiB in 1 KiB chunks: at the default rate of one sample per 512 KiB
	// that is over a hundred samples, all in allocChunks. The profile is
	// the process's since it started, so the test takes the difference
	// (as the harness does for one path) to leave out earlier tests.
	basePath, afterPath := filepath.Join(dir, "base.pprof"), filepath.Join(dir, "after.pprof")
	if err := writeProfile("allocs", basePath); err != nil {
		t.Fatal(err)
	}
	keep := allocChunks(64 << 10)
	if err := writeProfile("allocs", afterPath); err != nil {
		t.Fatal(err)
	}
	_ = keep[0]
	diff, err := diffProfiles(afterPath, basePath)
	if err != nil {
		t.Fatal(err)
	}
	memPath := filepath.Join(dir, "mem.pprof")
	if err := saveProfile(diff, memPath); err != nil {
		t.Fatal(err)
	}

	tops, err := (&childProfiles{cpu: cpuPath, mem: memPath, temp: map[string]bool{memPath: true}}).tops(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(tops) != 3 {
		t.Fatalf("%d profile tops, want cpu, alloc_objects, alloc_space", len(tops))
	}
	for _, tp := range tops {
		if tp.Total <= 0 || len(tp.Flat) == 0 || len(tp.Flat) > 5 || len(tp.Cum) == 0 || len(tp.Cum) > 5 {
			t.Fatalf("%s: total %v, %d flat, %d cum: want samples and at most 5 of each", tp.Profile, tp.Total, len(tp.Flat), len(tp.Cum))
		}
		for i, fs := range tp.Cum {
			if fs.Percent < 0 || fs.Percent > 100 || (i > 0 && fs.Value > tp.Cum[i-1].Value) {
				t.Errorf("%s: cum list not sorted shares: %+v", tp.Profile, tp.Cum)
			}
		}
	}
	cpu := tops[0]
	if cpu.Profile != "cpu" || cpu.Unit != "nanoseconds" || cpu.File != cpuPath {
		t.Errorf("cpu top = %s in %s from %q, want cpu in nanoseconds from %s", cpu.Profile, cpu.Unit, cpu.File, cpuPath)
	}
	if !slices.ContainsFunc(cpu.Cum, func(fs FuncShare) bool { return strings.HasSuffix(fs.Func, ".burnCPU") && fs.Percent > 50 }) {
		t.Errorf("burnCPU is not above 50%% cumulative in the CPU profile: %+v", cpu.Cum)
	}
	for _, tp := range tops[1:] {
		if tp.File != "" {
			t.Errorf("%s: file %q named though it is temporary", tp.Profile, tp.File)
		}
		if !strings.HasSuffix(tp.Flat[0].Func, ".allocChunks") || tp.Flat[0].Percent < 50 {
			t.Errorf("%s: top flat %+v, want allocChunks with most of it", tp.Profile, tp.Flat[0])
		}
	}
	prof, err := readProfile(cpuPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topFunctions(prof, "alloc_space", 5); !errors.Is(err, ErrNoSampleType) {
		t.Errorf("alloc_space of a CPU profile: %v, want ErrNoSampleType", err)
	}
}

// Rule: the allocs scenario measures every workload and path in the node
// child (the client workload's receiver an msp listen process),
// says whether the duplicate windows were full, and with --profile-top
// reports the child's CPU and allocation profiles (made in temporary
// files) and the block and mutex profiles asked for.
func TestAllocsBothWorkloadsWithProfiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := QuickConfig()
	cfg.Scenarios = []string{ScenarioAllocs}
	cfg.Concurrency, cfg.Conns, cfg.Receivers = 4, 2, 2
	cfg.AllocMessages, cfg.AllocWarmup = 300, 100
	cfg.ProfileTop = 4
	cfg.NodeBlockProfile = filepath.Join(dir, "block.pprof")
	cfg.NodeMutexProfile = filepath.Join(dir, "mutex.pprof")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []string
	for _, a := range rep.Allocs {
		got = append(got, a.Workload+"/"+a.Mode)
		// A UDP reply later than the load's 500 ms counts as failed, which
		// a loaded machine (and -race) can cause now and then; TCP has no
		// such excuse.
		lost := a.Failed != 0
		if a.Mode == ModeUDP {
			lost = a.Failed*20 > int64(a.Messages*allocBatches)
		}
		if lost || len(a.AllocsPerMsg) != allocBatches || a.Before < int64(a.Warmup) {
			t.Errorf("%s %s: %d failed, allocs %v, %d sent before with warm-up %d", a.Workload, a.Mode, a.Failed, a.AllocsPerMsg, a.Before, a.Warmup)
		}
		if a.WindowsFull {
			t.Errorf("%s %s: windows full after %d messages, but they hold %d", a.Workload, a.Mode, a.Before, recentIDWindow)
		}
	}
	var want []string
	for _, wl := range Workloads() {
		for _, mode := range []string{ModeTCPPipe, ModeTCPSeq, ModeTCP1, ModeUDP} {
			want = append(want, wl+"/"+mode)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("allocs results %v, want %v", got, want)
	}
	var kinds []string
	for _, p := range rep.Profiles {
		kinds = append(kinds, strings.Trim(p.Workload+" "+p.Mode+" "+p.Profile, " "))
	}
	wantKinds := []string{"cpu", "alloc_objects", "alloc_space", "block", "mutex"}
	for _, path := range want {
		wl, mode, _ := strings.Cut(path, "/")
		wantKinds = append(wantKinds, wl+" "+mode+" cpu", wl+" "+mode+" alloc_objects")
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("profiles %q, want %q", kinds, wantKinds)
	}
	for _, p := range rep.Profiles {
		if p.File != "" && p.Profile != "block" && p.Profile != "mutex" {
			t.Errorf("%s %s %s: names file %q, which was temporary", p.Workload, p.Mode, p.Profile, p.File)
		}
		if len(p.Flat) > 4 || len(p.Cum) > 4 {
			t.Errorf("%s %s %s: %d flat, %d cum entries, want at most 4", p.Workload, p.Mode, p.Profile, len(p.Flat), len(p.Cum))
		}
		// A path's batches are short: its CPU profile may hold no sample,
		// but every path allocates.
		if p.Profile == "alloc_objects" && (p.Total <= 0 || len(p.Flat) == 0) {
			t.Errorf("%s %s alloc_objects: total %v, top %+v: want allocations", p.Workload, p.Mode, p.Total, p.Flat)
		}
	}
	if p := rep.Profiles[3]; p.File != cfg.NodeBlockProfile {
		t.Errorf("block profile from %q, want %q", p.File, cfg.NodeBlockProfile)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| hot | udp |", "Node child profile **alloc_objects**", "**alloc_objects**, hot udp", "| 1 |",
		"| no live-heap growth once the dedup windows are full (hot) | no growth | windows not full"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
}

// Rule (issue 13): a hot recipient the node cannot keep up with is
// reported, not hidden: a '+' saying the message was queued in the mailbox
// ("+queued for hot0 (t1@n1 terminal not reading)") counts as failed and
// queued, never as a delivered '+'.
func TestQueuedRepliesCountAsFailed(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { // ends when the pipe closes or the replies are written
		b.Write([]byte("+sent to hot0 at t1\x00+queued for hot0 (t1@n1 terminal not reading)\x00-hot0: no such user\x00"))
	}()
	a.SetDeadline(time.Now().Add(5 * time.Second))
	var rr replyReader
	rr.reset(a)
	var tl tally
	for i, want := range []struct{ ok, queued bool }{{true, false}, {true, true}, {false, false}} {
		ok, queued, err := rr.next()
		if err != nil || ok != want.ok || queued != want.queued {
			t.Fatalf("reply %d: ok %v queued %v err %v; want %+v", i, ok, queued, err, want)
		}
		tl.reply(ok, queued, time.Millisecond)
	}
	if tl.ok != 1 || tl.failed != 2 || tl.queued != 1 || len(tl.lat) != 1 {
		t.Fatalf("tally ok %d failed %d queued %d, %d latencies; want 1, 2, 1, 1", tl.ok, tl.failed, tl.queued, len(tl.lat))
	}
	if !isQueued([]byte("+queued for x")) || isQueued([]byte("+sent")) || isQueued([]byte("-queued")) {
		t.Error("isQueued does not tell a mailbox '+' from others")
	}
}

// Rule: generic instantiations are named without their GC shapes, so the
// profile tables stay readable; other names are kept as they are.
func TestShortGeneric(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"github.com/msprelay/msprelay/msp.(*Server).handle", "github.com/msprelay/msprelay/msp.(*Server).handle"},
		{"slices.Clone[go.shape.[]principal.Entry,go.shape.struct { User string; Aliases []string }]", "slices.Clone[...]"},
		{"pkg.(*T[go.shape.int]).M[go.shape.string]", "pkg.(*T[...]).M[...]"},
		{"pkg.F[go.shape.[]int].func1", "pkg.F[...].func1"},
		{"pkg.F[go.shape.[]int", "pkg.F[...]"},
		{"pkg.Map[string]", "pkg.Map[string]"},
	}
	for _, tc := range tests {
		if got := shortGeneric(tc.in); got != tc.want {
			t.Errorf("shortGeneric(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
