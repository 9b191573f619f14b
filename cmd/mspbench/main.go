// Command mspbench is msprelay's benchmark harness: a load generator that
// speaks raw MSP over TCP (one message per connection, or pipelined) and
// UDP, and measures a node against baselines in the same run.
//
//	mspbench                        # the full run: about 1.5 hours, the scale scenario most of it
//	mspbench --quick                # a smoke test, under a minute
//	mspbench --scenarios local --cpuprofile cpu.out
//	mspbench --json > results.json  # the report for machines
//	mspbench --out docs/bench       # also write results.json and chart.svg
//	mspbench --replot docs/bench    # redraw chart.svg from results.json; no run
//	mspbench --scenarios allocs --cpuprofile cpu.out --memprofile mem.out --profile-top 15
//	mspbench --scenarios local --workloads client --msp-binary /tmp/msp  # msp listen as the receiver
//
// Scenarios: local (one node; TCP per message, TCP one message at a time
// per connection, TCP pipelined, UDP, each against the minimal relay, which
// does the node's job and nothing else, and a minimal RFC 1312 server or a
// bare UDP reply loop), cross (two
// nodes and a NATS relay; cross-node delivery against local delivery and
// raw NATS request-reply), presence (gossip convergence and failure
// detection), sessions (memory per idle session), directory (100k
// principals with churn), allocs (allocations per message) and scale
// (clusters of real node processes: sign-in visibility, churn of real
// sessions, memory per principal, crash detection and false deaths;
// --out also draws scale.svg). The local,
// cross and allocs scenarios run once per workload: spread (recipients
// spread over several sessions), hot (every message to one session,
// addressed to its terminal) and client (as hot, the session being an
// `msp listen` process). Every figure is reported with its ratio to
// its baseline; arms alternate round by round.
//
// Progress goes to stderr (one redrawn line on a terminal); the final table
// (Markdown) or JSON goes to stdout. All traffic stays on 127.0.0.1. The
// exit status is 0 when every scenario ran (whether or not targets were
// met), 1 when one failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/msprelay/msprelay/internal/bench"
	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/internal/cliflags"
)

func main() {
	if mode := os.Getenv(bench.ChildEnv); mode != "" {
		if err := bench.RunChild(mode, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg := bench.DefaultConfig()
	if slices.ContainsFunc(args, func(a string) bool {
		return a == "-quick" || a == "--quick" || a == "--quick=true" || a == "-quick=true"
	}) {
		cfg = bench.QuickConfig()
	}
	fs := flag.NewFlagSet("mspbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mspbench [flags]\n\nBenchmarks an msprelay node against same-run baselines (see docs/BENCHMARKS.md).\n\n")
		fs.PrintDefaults()
	}
	var (
		quick              bool
		scenarios          = strings.Join(bench.Scenarios(), ",")
		presenceNodes      = joinInts(cfg.PresenceNodes)
		crossModes         = strings.Join(cfg.CrossModes, ",")
		workloads          = strings.Join(bench.Workloads(), ",")
		allocModes         = "tcppipe,tcpseq,tcp1,udp"
		memProfile         string
		blockProfile       string
		mutexProfile       string
		asJSON             bool
		outDir, cpuProfile string
		// The default covers the default run: each of the scale
		// scenario's two 30-node clusters takes at most about 65 minutes
		// if every phase runs to its bound (the 100k sign-ins 20 of them,
		// --scale-load-for), the other scenarios fit in 15.
		timeout                 = 150 * time.Minute
		allocMsgs, allocWarmup  = cfg.AllocMessages, cfg.AllocWarmup
		dirNodes, dirPrincipals = cfg.DirectoryNodes, cfg.DirectoryPrincipals
		scaleNodes              = joinInts(cfg.ScaleNodes)
		scaleProfiles           = strings.Join(cfg.ScaleProfiles, ",")
		scaleRates              = joinInts(cfg.ScaleChurnRates)
	)
	fs.BoolVar(&quick, "quick", false, "smoke test: short rounds, small clusters, under a minute")
	fs.StringVar(&scenarios, "scenarios", scenarios, "comma-separated scenarios to run")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds per arm; arms alternate A B A B")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of one arm's round")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unrecorded warm-up of each arm")
	fs.Int64Var(&cfg.MaxMessages, "max-messages", cfg.MaxMessages, "message bound of one arm's round")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "messages in flight (workers; pipelined: total window)")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections the pipelined window is spread over")
	fs.IntVar(&cfg.Receivers, "receivers", cfg.Receivers, "receiving sessions (recipients)")
	fs.StringVar(&workloads, "workloads", workloads, "comma-separated workloads of the local, cross and allocs scenarios: spread (recipients spread over the receiving sessions), hot (every message to one session, at its terminal), client (as hot, the session an msp listen process acknowledging each message)")
	fs.StringVar(&cfg.MSPBinary, "msp-binary", "", "path of the msp command the client workload runs as its receiver, msp listen (default: build ./cmd/msp into a temporary directory)")
	fs.StringVar(&crossModes, "cross-modes", crossModes, "comma-separated load modes of the cross-node comparison: tcp1, tcpseq, tcppipe, udp")
	fs.StringVar(&presenceNodes, "presence-nodes", presenceNodes, "comma-separated gossip cluster sizes")
	fs.IntVar(&cfg.SignIns, "signins", cfg.SignIns, "sign-ins timed per cluster size")
	fs.IntVar(&cfg.Sessions, "sessions", cfg.Sessions, "idle sessions for the memory figures")
	fs.IntVar(&cfg.ManySessions, "many-sessions", cfg.ManySessions, "sessions signed in to one node at once for sign-in rate, memory, delivery latency and shutdown time (sessions scenario; capped by the open-file limit; negative: skip)")
	fs.StringVar(&cfg.UsersHeapProfile, "users-heap-profile", "", "write the heap profile of the node child with --sessions distinct users signed in to this file (sessions scenario)")
	fs.IntVar(&dirNodes, "dir-nodes", dirNodes, "nodes of the directory scenario")
	fs.IntVar(&dirPrincipals, "dir-principals", dirPrincipals, "principals of the directory scenario")
	fs.DurationVar(&cfg.ChurnFor, "churn", cfg.ChurnFor, "length of the directory churn phase (0: none)")
	fs.IntVar(&cfg.ChurnRate, "churn-rate", cfg.ChurnRate, "sign-outs and sign-ins per second during churn")
	fs.StringVar(&scaleNodes, "scale-nodes", scaleNodes, "comma-separated cluster sizes of the scale scenario (node processes)")
	fs.StringVar(&scaleProfiles, "scale-profiles", scaleProfiles, "comma-separated gossip profiles of the scale scenario: lan, wan, local")
	fs.IntVar(&cfg.ScaleSignIns, "scale-signins", cfg.ScaleSignIns, "sign-ins timed per scale cluster")
	fs.IntVar(&cfg.ScaleLoadNodes, "scale-load-nodes", cfg.ScaleLoadNodes, "the scale cluster size that also gets --scale-principals and the churn phases (0: none)")
	fs.IntVar(&cfg.ScalePrincipals, "scale-principals", cfg.ScalePrincipals, "principals (real signed-in sessions) of the scale scenario's loaded cluster")
	fs.StringVar(&scaleRates, "scale-churn-rates", scaleRates, "comma-separated churn rates (sign-outs and sign-ins per second) of the scale scenario")
	fs.DurationVar(&cfg.ScaleChurnFor, "scale-churn", cfg.ScaleChurnFor, "length of each scale churn phase (0: none)")
	fs.DurationVar(&cfg.ScaleLoadFor, "scale-load-for", cfg.ScaleLoadFor, "bound on signing in --scale-principals; those not in by then are recorded as missing and the later phases run with the rest")
	fs.DurationVar(&cfg.ScaleSoak, "scale-soak", 0, "after the churn phases, churn the loaded scale cluster at --scale-soak-rate for this long while counting false deaths (0: no soak)")
	fs.IntVar(&cfg.ScaleSoakRate, "scale-soak-rate", cfg.ScaleSoakRate, "churn rate (sign-outs and sign-ins per second) of --scale-soak")
	fs.IntVar(&cfg.ScaleCrashes, "scale-crashes", cfg.ScaleCrashes, "nodes (never s1) each scale cluster's last phase kills with SIGKILL, one at a time, timing until every other node pushes its user offline (0: no crash phase)")
	fs.StringVar(&cfg.ScaleNodeBinary, "scale-node-binary", "", "a built cmd/node for the scale scenario (default: go build one into a temporary directory)")
	fs.StringVar(&allocModes, "alloc-modes", allocModes, "comma-separated load modes of the allocs scenario (one alone profiles one path)")
	fs.IntVar(&allocMsgs, "alloc-messages", allocMsgs, "messages per measured batch of the allocs scenario")
	fs.IntVar(&allocWarmup, "alloc-warmup", allocWarmup, "warm-up messages of the allocs scenario")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of the table")
	fs.StringVar(&outDir, "out", "", "also write results.json and chart.svg (and scale.svg when the scale scenario ran) into this directory")
	var replotDir string
	fs.StringVar(&replotDir, "replot", "", "run nothing: redraw DIR/chart.svg from DIR/results.json")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file, and one of the allocs scenario's node process to FILE.node")
	fs.StringVar(&memProfile, "memprofile", "", "write an allocation profile (alloc_space, alloc_objects) of the allocs scenario's node process to this file")
	fs.StringVar(&blockProfile, "blockprofile", "", "write a blocking profile of the allocs scenario's node process to this file")
	fs.StringVar(&mutexProfile, "mutexprofile", "", "write a mutex contention profile of the allocs scenario's node process to this file")
	fs.IntVar(&cfg.ProfileTop, "profile-top", 0, "report the top N functions of the allocs scenario's node process by CPU and allocations, flat and cumulative (0: none)")
	fs.DurationVar(&timeout, "timeout", timeout, "bound on the whole run")
	var showVersion bool
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mspbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if showVersion {
		fmt.Fprintln(stdout, "mspbench", buildinfo.Version())
		return 0
	}
	if replotDir != "" {
		if err := replot(replotDir); err != nil {
			fmt.Fprintf(stderr, "mspbench: --replot: %v\n", err)
			return 1
		}
		return 0
	}
	cfg.Scenarios = cliflags.SplitList(scenarios)
	cfg.CrossModes = cliflags.SplitList(crossModes)
	cfg.Workloads = cliflags.SplitList(workloads)
	cfg.AllocModes = cliflags.SplitList(allocModes)
	if len(cfg.Workloads) == 0 {
		fmt.Fprintf(stderr, "mspbench: --workloads: want at least one of %s\n", strings.Join(bench.Workloads(), ", "))
		return 2
	}
	var err error
	for _, f := range []struct {
		path string
		dst  *string
	}{{memProfile, &cfg.NodeMemProfile}, {blockProfile, &cfg.NodeBlockProfile}, {mutexProfile, &cfg.NodeMutexProfile}} {
		if f.path == "" {
			continue
		}
		// The child runs in the same directory, but an absolute path is
		// what the report should name.
		if *f.dst, err = filepath.Abs(f.path); err != nil {
			fmt.Fprintf(stderr, "mspbench: %v\n", err)
			return 2
		}
	}
	if cfg.PresenceNodes, err = parseInts(presenceNodes); err != nil {
		fmt.Fprintf(stderr, "mspbench: --presence-nodes: %v\n", err)
		return 2
	}
	if cfg.ScaleNodes, err = parseInts(scaleNodes); err != nil {
		fmt.Fprintf(stderr, "mspbench: --scale-nodes: %v\n", err)
		return 2
	}
	if cfg.ScaleChurnRates, err = parseInts(scaleRates); err != nil {
		fmt.Fprintf(stderr, "mspbench: --scale-churn-rates: %v\n", err)
		return 2
	}
	cfg.ScaleProfiles = cliflags.SplitList(scaleProfiles)
	cfg.DirectoryNodes, cfg.DirectoryPrincipals = dirNodes, dirPrincipals
	cfg.AllocMessages, cfg.AllocWarmup = allocMsgs, allocWarmup
	cfg.Progress = stderr
	cfg.Live = isTerminal(stderr)
	cfg.Command = strings.TrimSpace("mspbench " + strings.Join(args, " "))

	if cpuProfile != "" {
		if cfg.NodeCPUProfile, err = filepath.Abs(cpuProfile + ".node"); err != nil {
			fmt.Fprintf(stderr, "mspbench: %v\n", err)
			return 2
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "mspbench: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "mspbench: cpu profile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rep, runErr := bench.Run(ctx, cfg)
	if rep == nil {
		fmt.Fprintf(stderr, "mspbench: %v\n", runErr)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err == nil && outDir != "" {
		err = writeOut(outDir, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mspbench: %v\n", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "mspbench: %v\n", runErr)
		return 1
	}
	return 0
}

// writeOut writes results.json and chart.svg into dir.
func writeOut(dir string, rep *bench.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return writeChart(dir, rep)
}

// replot redraws dir/chart.svg from dir/results.json, so that a change to
// the chart does not need a new run.
func replot(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "results.json"), err)
	}
	return writeChart(dir, &rep)
}

func writeChart(dir string, rep *bench.Report) error {
	if len(rep.Scale) > 0 {
		f, err := os.Create(filepath.Join(dir, "scale.svg"))
		if err != nil {
			return err
		}
		if err := rep.WriteScaleChart(f); err != nil {
			f.Close()
			return fmt.Errorf("scale chart: %w", err)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "chart.svg"))
	if err != nil {
		return err
	}
	if err := rep.WriteChart(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	return f.Close()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
