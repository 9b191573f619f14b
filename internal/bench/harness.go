package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Report is everything one run measured; cmd/mspbench prints it as a table
// or as JSON, and draws the chart from it.
type Report struct {
	Command     string           `json:"command"`
	Quick       bool             `json:"quick"`
	Started     time.Time        `json:"started"`
	Seconds     float64          `json:"seconds"`
	Machine     Machine          `json:"machine"`
	Settings    Settings         `json:"settings"`
	Comparisons []*Comparison    `json:"comparisons,omitempty"`
	Presence    []PresenceResult `json:"presence,omitempty"`
	Sessions    *SessionsResult  `json:"sessions,omitempty"`
	Directory   *DirectoryResult `json:"directory,omitempty"`
	Allocs      []AllocResult    `json:"allocs,omitempty"`
	Profiles    []ProfileTop     `json:"profiles,omitempty"`
	Scale       []ScaleResult    `json:"scale,omitempty"`
	Targets     []Target         `json:"targets"`
	Errors      []string         `json:"errors,omitempty"`
}

// Settings records the load shape of the run.
type Settings struct {
	Scenarios   []string `json:"scenarios"`
	Rounds      int      `json:"rounds"`
	RoundSecs   float64  `json:"round_seconds"`
	MaxMessages int64    `json:"max_messages_per_round"`
	Concurrency int      `json:"concurrency"`
	Conns       int      `json:"pipelined_conns"`
	Receivers   int      `json:"receivers"`
	CrossModes  []string `json:"cross_modes"`
	Workloads   []string `json:"workloads,omitempty"` // absent in reports from before the hot workload: spread only
}

// Comparison is one scenario's arms, run alternately, and their ratios.
type Comparison struct {
	Scenario string  `json:"scenario"`           // "local/tcp1", "cross/tcppipe", "local-hot/udp", ...
	Workload string  `json:"workload,omitempty"` // WorkloadSpread or WorkloadHot
	Title    string  `json:"title"`
	Arms     []*Arm  `json:"arms"`
	Ratios   []Ratio `json:"ratios"`
}

// arm returns the arm named name, or nil.
func (c *Comparison) arm(name string) *Arm {
	for _, a := range c.Arms {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// harness carries what every scenario shares.
type harness struct {
	cfg    Config
	clock  clock
	prog   *progress
	rounds int // round ids handed out so far; only the Run goroutine uses it

	mspBin  string   // the msp command built for the client workload, once
	cleanup []func() // run by Run when it returns (the build's directory)
}

// Run runs the configured scenarios one after another and returns the
// report. A scenario that fails is recorded in Report.Errors and the others
// still run; the returned error joins those failures.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, clock: clock{base: time.Now()}, prog: &progress{w: cfg.Progress, live: cfg.Live}}
	defer func() {
		for _, f := range h.cleanup {
			f()
		}
	}()
	rep := &Report{
		Command: cfg.Command,
		Quick:   cfg.Quick,
		Started: time.Now().UTC().Truncate(time.Second),
		Machine: machine(),
		Settings: Settings{
			Scenarios: cfg.Scenarios, Rounds: cfg.Rounds, RoundSecs: cfg.Duration.Seconds(),
			MaxMessages: cfg.MaxMessages, Concurrency: cfg.Concurrency, Conns: cfg.Conns,
			Receivers: cfg.Receivers, CrossModes: cfg.CrossModes, Workloads: cfg.Workloads,
		},
	}
	var errs []error
	step := func(name string, f func() error) {
		if !cfg.wants(name) || ctx.Err() != nil {
			return
		}
		h.prog.printf("== %s", name)
		start := time.Now()
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", name, err))
			h.prog.printf("   %s failed: %v", name, err)
			return
		}
		h.prog.printf("   %s done in %v", name, time.Since(start).Round(100*time.Millisecond))
	}
	step(ScenarioLocal, func() error {
		cs, err := h.local(ctx)
		rep.Comparisons = append(rep.Comparisons, cs...)
		return err
	})
	step(ScenarioCross, func() error {
		cs, err := h.cross(ctx)
		rep.Comparisons = append(rep.Comparisons, cs...)
		return err
	})
	step(ScenarioPresence, func() error {
		for _, n := range cfg.PresenceNodes {
			p, err := h.presence(ctx, n)
			if err != nil {
				return err
			}
			rep.Presence = append(rep.Presence, *p)
		}
		return nil
	})
	step(ScenarioSessions, func() (err error) {
		rep.Sessions, err = h.sessions(ctx)
		return err
	})
	step(ScenarioDirectory, func() (err error) {
		rep.Directory, err = h.directory(ctx)
		return err
	})
	step(ScenarioAllocs, func() (err error) {
		profs, cleanup, err := h.childProfiles()
		if err != nil {
			return err
		}
		defer cleanup()
		rep.Allocs, err = h.allocs(ctx, profs)
		if err == nil && cfg.ProfileTop > 0 {
			rep.Profiles, err = profs.tops(cfg.ProfileTop)
		}
		return err
	})
	step(ScenarioScale, func() (err error) {
		rep.Scale, err = h.scale(ctx)
		return err
	})
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	rep.Machine.LoadAfter = loadAverage()
	rep.Seconds = math.Round(time.Since(rep.Started).Seconds())
	rep.Targets = targets(rep)
	return rep, errors.Join(errs...)
}

// armSpec is one side of a comparison before it has run.
type armSpec struct {
	name, role string
	load       *load
	rcv        *receivers // nil when nothing is delivered
}

// compare runs the arms alternately: a warm-up of each, then round 1 of
// every arm, round 2 of every arm, and so on.
func (h *harness) compare(ctx context.Context, scenario, workload, title string, specs []armSpec) *Comparison {
	c := &Comparison{Scenario: scenario, Workload: workload, Title: title}
	for _, s := range specs {
		c.Arms = append(c.Arms, &Arm{Name: s.name, Role: s.role, Mode: s.load.mode, delivers: s.rcv != nil})
	}
	if h.cfg.Warmup > 0 {
		for _, s := range specs {
			h.round(ctx, scenario+" "+s.name+" warm-up", s, h.cfg.Warmup)
		}
	}
	for i := range h.cfg.Rounds {
		for j, s := range specs {
			label := fmt.Sprintf("%s %s round %d/%d", scenario, s.name, i+1, h.cfg.Rounds)
			r, reply, deliv := h.round(ctx, label, s, h.cfg.Duration)
			c.Arms[j].add(r, reply, deliv)
			line := fmt.Sprintf("   %-40s %8.0f msg/s  %7d ok  %5d failed", label, r.Rate, r.OK, r.Failed)
			if s.rcv != nil {
				line += fmt.Sprintf("  %7d delivered", r.Delivered)
			}
			if r.Queued > 0 {
				line += fmt.Sprintf("  %d queued", r.Queued)
			}
			h.prog.printf("%s", line)
		}
	}
	for _, a := range c.Arms {
		a.finish()
	}
	return c
}

// round runs one arm for d (and at most MaxMessages) and, when the arm
// delivers, waits for its deliveries.
func (h *harness) round(ctx context.Context, label string, s armSpec, d time.Duration) (Round, []time.Duration, []time.Duration) {
	h.rounds++
	r := &run{round: h.rounds, clock: h.clock, deadline: time.Now().Add(d), max: h.cfg.MaxMessages}
	if s.rcv != nil {
		s.rcv.begin(r.round)
	}
	stop := h.prog.track(label, &r.done)
	res, reply := s.load.exec(ctx, r)
	stop()
	var deliv []time.Duration
	if s.rcv != nil {
		deliv = s.rcv.collect(res.OK, 3*time.Second)
		res.Delivered = int64(len(deliv))
	}
	if res.Seconds > 0 {
		res.Rate = math.Round(float64(res.OK) / res.Seconds)
	}
	return res, reply, deliv
}

// newLoad shapes a load of mode against addr with the configured
// concurrency: pipelined mode spreads it over Conns connections. Messages
// go to recips in turn, at terminal rterm ("" for the node's choice).
func (h *harness) newLoad(mode, addr string, recips []string, rterm string) *load {
	l := &load{mode: mode, addr: addr, workers: h.cfg.Concurrency, depth: 1, recips: recips, rterm: rterm}
	if mode == ModeTCPPipe {
		l.workers = h.cfg.Conns
		l.depth = (h.cfg.Concurrency + h.cfg.Conns - 1) / h.cfg.Conns
	}
	// ModeTCPSeq is the pipelined loop with one connection per worker and
	// a window of one: each sender waits for its reply before it writes
	// the next message on the same connection.
	return l
}
