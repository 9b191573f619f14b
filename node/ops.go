package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/ops"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/switchboard"
)

// Delivery log limits: refusals and failures are logged at info, at most
// logRate lines a second after a burst of logBurst, so that a flood of bad
// messages cannot fill the disk; the lines held back are counted and the
// count is logged every suppressedEvery.
const (
	logRate         = 20
	logBurst        = 50
	suppressedEvery = 10 * time.Second
)

// statusTimeout bounds each node's answer to a cluster status request.
const statusTimeout = 1500 * time.Millisecond

// StatusSubject is the NATS subject on which node answers status requests
// (an empty request; the reply is one ops.NodeStatus in JSON).
func StatusSubject(node string) string { return "msp.node." + node + ".status" }

// nodeOps is the node's operations side: its Prometheus registry and
// metrics, the delivery log, the status responder and the HTTP endpoint.
// The Node owns it: newNodeOps builds it in New, startOps starts the
// responder, the suppressed-lines reporter and the endpoint, closeOps stops
// all three and waits for the reporter.
type nodeOps struct {
	n       *Node
	reg     *prometheus.Registry
	rates   *ops.RateWindow
	started time.Time

	messages    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	signins     *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	suppressed  prometheus.Counter

	limiter *rate.Limiter
	held    atomic.Uint64 // refusal lines held back since the last report

	// revCtx caches the revision contexts of the MSP server (withRevision).
	revCtx atomic.Pointer[revisionCtxs]
	// countersMu guards counters, the message counters by label set, so
	// that counting a message looks a counter up without allocating; the
	// label sets are few (transport x revision x outcome x class).
	countersMu sync.Mutex
	counters   map[messageLabels]prometheus.Counter

	secretAuth *session.SecretAuth // set by startSessions with secret auth

	http      *ops.Server        // nil without --http
	statusSub *nats.Subscription // nil until startOps
	quit      chan struct{}      // closed by closeOps
	wg        sync.WaitGroup     // the suppressed-lines reporter

	// running is set once startOps has set every field above; Reload,
	// which a signal may call while Start is still running, reads them
	// only after seeing it.
	running atomic.Bool

	jsOnce sync.Once
	js     jetstream.JetStream
	jsErr  error
}

func newNodeOps(n *Node) *nodeOps {
	o := &nodeOps{
		n:       n,
		reg:     prometheus.NewRegistry(),
		rates:   ops.NewRateWindow(),
		limiter: rate.NewLimiter(logRate, logBurst),
		quit:    make(chan struct{}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msprelay_messages_total",
			Help: "Messages this node accepted for delivery, by transport (tcp, udp, session), MSP revision (A, B; none for session sends), outcome (delivered, queued, refused, failed) and reason class.",
		}, []string{"transport", "revision", "outcome", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "msprelay_delivery_duration_seconds",
			Help:    "Time from accepting a message to its outcome, by path: local (a terminal on this node), cross_node (another node), mailbox (queued).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"path"}),
		signins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msprelay_session_signins_total",
			Help: "Session sign-in attempts by authentication method (peercred, secret, trust) and result (ok, failed).",
		}, []string{"method", "result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "msprelay_mailbox_store_errors_total",
			Help: "Messages the mailbox did not store, by reason (full: her mailbox, the sender's share of it or the stream; down).",
		}, []string{"reason"}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "msprelay_log_lines_suppressed_total",
			Help: "Refused or failed delivery log lines held back by the log rate limit.",
		}),
	}
	o.reg.MustRegister(o.messages, o.latency, o.signins, o.storeErrors, o.suppressed, (*stateCollector)(o))
	// Series that exist from the start, so that rates and quantiles work
	// before the first message of each kind.
	for _, r := range []string{"full", "down"} {
		o.storeErrors.WithLabelValues(r)
	}
	for _, p := range []string{"local", "cross_node", "mailbox"} {
		o.latency.WithLabelValues(p)
	}
	for _, tr := range [][2]string{{"tcp", "B"}, {"udp", "B"}, {"session", "none"}} {
		for _, out := range []string{"delivered", "queued"} {
			o.messages.WithLabelValues(tr[0], tr[1], out, "")
		}
	}
	return o
}

// Registry is the node's Prometheus registry (never the global one).
func (n *Node) Registry() *prometheus.Registry { return n.ops.reg }

// HTTPAddr is the bound address of the HTTP endpoint, "" when off.
func (n *Node) HTTPAddr() string {
	if n.ops.http == nil {
		return ""
	}
	return n.ops.http.Addr()
}

func (c *Config) validateOps() error {
	if c.HTTPAddr == "" {
		if c.HTTPTokenFile != "" {
			return &FieldError{Field: "HTTPTokenFile", Err: errors.New("a token protects the HTTP endpoint, which is off"), Fix: []string{"HTTPAddr"}, refused: true}
		}
		return nil
	}
	// ops.ListenAddr's own error names the flag already; say it once.
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return &FieldError{Field: "HTTPAddr", Err: fmt.Errorf("%q: %v", c.HTTPAddr, err), refused: true}
	}
	return nil
}

// startOps starts the status responder and the suppressed-lines reporter
// and, with --http, the endpoint. It runs last in Start.
func (o *nodeOps) startOps() error {
	n := o.n
	o.started = time.Now()
	if f := n.cfg.GossipKeyFile; f != "" && n.addrs.Gossip != "" {
		// Start encrypted with the first key; the others of a key file in
		// the middle of a rotation must decrypt from the start too.
		if keys, err := readGossipKeys(f); err == nil && len(keys) > 1 {
			if err := n.dir.SetGossipKeys(keys); err != nil {
				return fmt.Errorf("node: gossip keys: %w", err)
			}
		}
	}
	sub, err := n.nc.Subscribe(StatusSubject(n.cfg.Name), func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		defer cancel()
		b, err := json.Marshal(o.selfStatus(ctx))
		if err == nil {
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return fmt.Errorf("node: status responder: %w", err)
	}
	o.statusSub = sub
	o.wg.Go(o.reportSuppressed)
	if n.cfg.HTTPAddr == "" {
		o.running.Store(true)
		return nil
	}
	srv, err := ops.New(ops.Config{
		Addr:      n.cfg.HTTPAddr,
		Registry:  o.reg,
		Checks:    o.checks(),
		Source:    (*opsSource)(o),
		TokenFile: n.cfg.HTTPTokenFile,
		Daemon:    "msprelay node",
		Version:   n.cfg.Version,
		Logger:    n.log.With("component", "http"),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	o.http = srv
	o.running.Store(true)
	return nil
}

// closeOps stops the endpoint first, so that probes fail while the rest
// of the node shuts down, then the responder and the reporter.
func (o *nodeOps) closeOps() {
	if o.http != nil {
		if err := o.http.Close(); err != nil {
			o.n.log.Warn("http endpoint close", "err", err)
		}
	}
	if o.statusSub != nil {
		_ = o.statusSub.Unsubscribe()
	}
	close(o.quit)
	o.wg.Wait()
}

// checks are /readyz: the node takes traffic when MSP listens, NATS is
// connected, gossip has joined another node (when seeds were given) and
// JetStream answers.
func (o *nodeOps) checks() []ops.Check {
	n := o.n
	var cs []ops.Check
	if n.cfg.MSPAddr != "" {
		cs = append(cs, ops.Check{Name: "msp", Fn: func(context.Context) error {
			if n.mspSrv == nil || n.addrs.MSP == "" {
				return errors.New("not listening")
			}
			return nil
		}})
	}
	cs = append(cs, ops.Check{Name: "nats", Fn: func(context.Context) error {
		if !n.nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", strings.ToLower(n.nc.Status().String()))
		}
		return nil
	}})
	if len(n.cfg.Join) > 0 {
		cs = append(cs, ops.Check{Name: "gossip", Fn: func(context.Context) error {
			if len(n.dir.Members()) < 2 {
				return errors.New("not joined: no other node in sight")
			}
			return nil
		}})
	}
	cs = append(cs, ops.Check{Name: "jetstream", Fn: func(ctx context.Context) error {
		if !n.nc.IsConnected() {
			return errors.New("unreachable: not connected to NATS")
		}
		js, err := o.jetStream()
		if err != nil {
			return err
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("unreachable: %v", err)
		}
		return nil
	}})
	return cs
}

func (o *nodeOps) jetStream() (jetstream.JetStream, error) {
	o.jsOnce.Do(func() { o.js, o.jsErr = jetstream.New(o.n.nc) })
	return o.js, o.jsErr
}

// selfStatus is this node's answer to a status request.
func (o *nodeOps) selfStatus(ctx context.Context) ops.NodeStatus {
	rd := ops.Ready(ctx, o.checks())
	started := o.started
	return ops.NodeStatus{Name: o.n.cfg.Name, Reachable: true, Status: rd.Status, Checks: rd.Checks,
		Version: o.n.cfg.Version, StartedAt: &started, MSP: o.n.addrs.MSP, Warnings: o.n.warnings()}
}

// revisionKey carries the MSP revision of the message being handled from
// the MSP handler to the switchboard observer through Send's context.
type revisionKey struct{}

// revisionCtxs is a server context with the two revision values attached.
type revisionCtxs struct {
	base, a, b context.Context
}

// withRevision returns base carrying the MSP revision of m for observe.
// Every message of one MSP server shares the server's context, so the two
// derived contexts are made once and reused rather than per message.
func (o *nodeOps) withRevision(base context.Context, v byte) context.Context {
	rc := o.revCtx.Load()
	if rc == nil || rc.base != base {
		rc = &revisionCtxs{base: base,
			a: context.WithValue(base, revisionKey{}, "A"),
			b: context.WithValue(base, revisionKey{}, "B")}
		o.revCtx.Store(rc)
	}
	if v == msp.Version1 {
		return rc.a
	}
	return rc.b
}

// observe is the switchboard Observer: metrics, recent rates and the
// delivery log for every message sent through this node.
func (o *nodeOps) observe(ctx context.Context, d *switchboard.Delivery, out *switchboard.Outcome) {
	rev, _ := ctx.Value(revisionKey{}).(string)
	if rev == "" {
		rev = "none"
	}
	outcome, reason := classify(out)
	o.counter(messageLabels{d.Origin.Transport, rev, outcome, reason}).Inc()
	o.rates.Add(outcome)
	path := "local"
	if out.Mailbox != nil && out.Mailbox.Stored {
		path = "mailbox"
	} else {
		for _, r := range out.Results {
			if r.Node != o.n.cfg.Name {
				path = "cross_node"
			}
		}
	}
	o.latency.WithLabelValues(path).Observe(time.Since(d.Time).Seconds())
	if mb := out.Mailbox; mb != nil && mb.Err != nil {
		if errors.Is(mb.Err, switchboard.ErrMailboxFull) || errors.Is(mb.Err, switchboard.ErrSenderShareFull) {
			o.storeErrors.WithLabelValues("full").Inc()
		} else {
			o.storeErrors.WithLabelValues("down").Inc()
		}
	}
	accepted := outcome == "delivered" || outcome == "queued"
	if accepted && !o.n.log.Enabled(ctx, slog.LevelDebug) {
		return // the common case: nothing to log, so build no attributes
	}
	attrs := []any{"sender", msp.Latin1ToUTF8(d.Sender), "recipient", msp.Latin1ToUTF8(d.Recipient),
		"recip_term", msp.Latin1ToUTF8(d.RecipTerm), "transport", d.Origin.Transport, "from", d.Origin.Addr}
	if accepted {
		o.n.log.Debug("message "+outcome, append(attrs, "result", msp.Latin1ToUTF8(out.Summary()))...)
		return
	}
	if !o.limiter.Allow() {
		o.held.Add(1)
		o.suppressed.Inc()
		return
	}
	attrs = append(attrs, "reason", msp.Latin1ToUTF8(out.Summary()), "class", reason)
	if held := o.held.Swap(0); held > 0 {
		attrs = append(attrs, "suppressed_before", held)
	}
	o.n.log.Info("message "+outcome, attrs...)
}

// messageLabels is one label set of msprelay_messages_total.
type messageLabels struct{ transport, revision, outcome, reason string }

// counter returns the messages counter of l, made once per label set.
func (o *nodeOps) counter(l messageLabels) prometheus.Counter {
	o.countersMu.Lock()
	defer o.countersMu.Unlock()
	c, ok := o.counters[l]
	if !ok {
		if o.counters == nil {
			o.counters = make(map[messageLabels]prometheus.Counter)
		}
		c = o.messages.WithLabelValues(l.transport, l.revision, l.outcome, l.reason)
		o.counters[l] = c
	}
	return c
}

// reportSuppressed logs how many delivery lines the rate limit held back,
// so that a flood that stopped is still accounted for.
func (o *nodeOps) reportSuppressed() {
	t := time.NewTicker(suppressedEvery)
	defer t.Stop()
	for {
		select {
		case <-o.quit:
			if held := o.held.Swap(0); held > 0 {
				o.n.log.Info("delivery log lines suppressed", "count", held)
			}
			return
		case <-t.C:
			if held := o.held.Swap(0); held > 0 {
				o.n.log.Info("delivery log lines suppressed", "count", held, "limit_per_second", logRate)
			}
		}
	}
}

// reasonClasses name the sentinel errors in metrics labels; a fixed set
// keeps the label's cardinality bounded.
var reasonClasses = []struct {
	err   error
	class string
}{
	{switchboard.ErrNoSuchUser, "not_signed_in"},
	{switchboard.ErrUnknownUser, "unknown_user"},
	{switchboard.ErrNoTerminal, "no_terminal"},
	{switchboard.ErrNoConsole, "no_console"},
	{switchboard.ErrBadAddress, "bad_address"},
	{switchboard.ErrBusy, "busy"},
	{switchboard.ErrBlocked, "blocked"},
	{switchboard.ErrTerminalGone, "terminal_gone"},
	{switchboard.ErrTerminalSlow, "terminal_slow"},
	{switchboard.ErrNotAcked, "not_acked"},
	{switchboard.ErrNodeDown, "node_down"},
	{switchboard.ErrTimeout, "timeout"},
	{switchboard.ErrMailboxFull, "mailbox_full"},
	{switchboard.ErrSenderShareFull, "mailbox_share_full"},
	{switchboard.ErrMailboxDown, "mailbox_down"},
}

func reasonClass(err error) string {
	for _, c := range reasonClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	return "other"
}

// classify folds an outcome into the outcome and reason labels: refused is
// the recipient's or the address's answer (not signed in, busy, mailbox
// full), failed a fault (node down, timeout, store down).
func classify(o *switchboard.Outcome) (outcome, reason string) {
	if o.Delivered() {
		if o.Mailbox != nil && o.Mailbox.Stored {
			return "queued", ""
		}
		for _, r := range o.Results {
			if r.Status == switchboard.Delivered {
				return "delivered", ""
			}
		}
		return "queued", ""
	}
	var err error
	switch {
	case o.Mailbox != nil && o.Mailbox.Err != nil:
		err = o.Mailbox.Err
	case o.Err != nil:
		err = o.Err
	default:
		for i := range o.Results {
			if o.Results[i].Status == switchboard.Refused {
				return "refused", reasonClass(o.Results[i].Err)
			}
		}
		if len(o.Results) > 0 {
			err = o.Results[0].Err
		}
	}
	class := reasonClass(err)
	switch class {
	case "terminal_gone", "terminal_slow", "not_acked", "node_down", "timeout", "mailbox_down", "other":
		return "failed", class
	}
	return "refused", class
}

// authCounter counts sign-ins by method and result around an Authenticator.
type authCounter struct {
	session.Authenticator
	method string
	c      *prometheus.CounterVec
}

func (o *nodeOps) countAuth(method string, a session.Authenticator) session.Authenticator {
	for _, r := range []string{"ok", "failed"} {
		o.signins.WithLabelValues(method, r)
	}
	return authCounter{a, method, o.signins}
}

func (a authCounter) Authenticate(ctx context.Context, req *session.AuthRequest) (session.Identity, error) {
	id, err := a.Authenticator.Authenticate(ctx, req)
	result := "ok"
	if err != nil {
		result = "failed"
	}
	a.c.WithLabelValues(a.method, result).Inc()
	return id, err
}

// stateCollector reports the node's state at scrape time: sessions,
// presence, gossip, NATS and the mailbox.
type stateCollector nodeOps

var (
	descSessions   = prometheus.NewDesc("msprelay_sessions_open", "Open session connections (signed in or not).", nil, nil)
	descTerminals  = prometheus.NewDesc("msprelay_presence_terminals", "Terminals in the presence directory, by node (hidden ones included).", []string{"node"}, nil)
	descUsers      = prometheus.NewDesc("msprelay_presence_users", "Distinct users signed in anywhere in the cluster.", nil, nil)
	descDirNodes   = prometheus.NewDesc("msprelay_presence_nodes", "Nodes whose presence tables this node holds.", nil, nil)
	descMembers    = prometheus.NewDesc("msprelay_gossip_members", "Live gossip members by state: synced (their presence is complete here) or syncing.", []string{"state"}, nil)
	descNATSUp     = prometheus.NewDesc("msprelay_nats_connected", "1 when the NATS connection is up.", nil, nil)
	descNATSRTT    = prometheus.NewDesc("msprelay_nats_rtt_seconds", "Round trip to the NATS server, measured at scrape time.", nil, nil)
	descReconnects = prometheus.NewDesc("msprelay_nats_reconnects_total", "Reconnections of the NATS connection.", nil, nil)
	descMailbox    = prometheus.NewDesc("msprelay_mailbox_messages", "Messages waiting in all mailboxes (the cluster's mailbox stream).", nil, nil)
	descMailboxUp  = prometheus.NewDesc("msprelay_mailbox_up", "1 when the mailbox stream answered at scrape time.", nil, nil)
	descBuild      = prometheus.NewDesc("msprelay_build_info", "Always 1; the labels name the build.", []string{"version", "node"}, nil)
	descStart      = prometheus.NewDesc("msprelay_start_time_seconds", "When the node started, in Unix seconds.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descTerminals, descUsers, descDirNodes, descMembers,
		descNATSUp, descNATSRTT, descReconnects, descMailbox, descMailboxUp, descBuild, descStart} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	o := (*nodeOps)(c)
	n := o.n
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, n.cfg.Version, n.cfg.Name)
	ch <- prometheus.MustNewConstMetric(descStart, prometheus.GaugeValue, float64(o.started.UnixNano())/1e9)
	if n.sess != nil {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(n.sess.Sessions()))
	}
	if n.dir != nil {
		perNode := map[string]int{}
		users := map[string]struct{}{}
		for _, e := range n.dir.All() {
			perNode[e.Node]++
			users[e.User] = struct{}{}
		}
		nodes := n.dir.Nodes()
		for _, name := range nodes {
			ch <- prometheus.MustNewConstMetric(descTerminals, prometheus.GaugeValue, float64(perNode[name]), name)
		}
		ch <- prometheus.MustNewConstMetric(descUsers, prometheus.GaugeValue, float64(len(users)))
		ch <- prometheus.MustNewConstMetric(descDirNodes, prometheus.GaugeValue, float64(len(nodes)))
		synced, syncing := 0, 0
		for _, m := range n.dir.Members() {
			if m.Synced {
				synced++
			} else {
				syncing++
			}
		}
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(synced), "synced")
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(syncing), "syncing")
	}
	if n.nc == nil {
		return
	}
	up := 0.0
	if n.nc.IsConnected() {
		up = 1
		if rtt, err := n.nc.RTT(); err == nil {
			ch <- prometheus.MustNewConstMetric(descNATSRTT, prometheus.GaugeValue, rtt.Seconds())
		}
	}
	ch <- prometheus.MustNewConstMetric(descNATSUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(n.nc.Stats().Reconnects))
	mbUp := 0.0
	if up == 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if js, err := o.jetStream(); err == nil {
			if st, err := js.Stream(ctx, mailbox.Stream); err == nil {
				mbUp = 1
				ch <- prometheus.MustNewConstMetric(descMailbox, prometheus.GaugeValue, float64(st.CachedInfo().State.Msgs))
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descMailboxUp, prometheus.GaugeValue, mbUp)
}

// opsSource answers the HTTP API from the node's directory, switchboard
// and mailbox. Hidden terminals never leave it.
type opsSource nodeOps

func (s *opsSource) Self() string     { return s.n.cfg.Name }
func (s *opsSource) Rates() ops.Rates { return s.rates.Rates() }

// whoEntry is e as `msp who --json` prints it.
func whoEntry(e *presence.Entry) ops.WhoEntry {
	aliases := make([]string, 0, len(e.Aliases))
	for _, a := range e.Aliases {
		aliases = append(aliases, msp.Latin1ToUTF8(a))
	}
	// Whole seconds in UTC, as the session protocol carries them, so that
	// the API and `msp who --json` print the same document.
	since, active := e.Since.UTC().Truncate(time.Second), e.LastActive.UTC().Truncate(time.Second)
	w := ops.WhoEntry{User: msp.Latin1ToUTF8(e.User), Node: e.Node, Term: msp.Latin1ToUTF8(e.Term),
		State: e.State.String(), Aliases: aliases, Since: &since, LastActive: &active, Kind: e.Kind.String()}
	if e.Kind == presence.KindTTY {
		idle := int64(max(time.Since(e.LastActive), 0) / time.Second)
		w.Idle = &idle
	}
	return w
}

func (s *opsSource) Who() []ops.WhoEntry {
	var out []ops.WhoEntry
	for _, e := range s.n.dir.All() {
		if e.State == presence.Hidden {
			continue
		}
		out = append(out, whoEntry(&e))
	}
	return out
}

func (s *opsSource) Changes() (<-chan presence.Event, func()) {
	sub := s.n.dir.Subscribe()
	return sub.C, sub.Cancel
}

// Nodes asks every node the directory or gossip knows of, in parallel.
func (s *opsSource) Nodes(ctx context.Context) []ops.NodeStatus {
	n := s.n
	members := map[string]presence.Member{}
	for _, m := range n.dir.Members() {
		members[m.Name] = m
	}
	names := n.dir.Nodes()
	for name := range members {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	if !slices.Contains(names, n.cfg.Name) {
		names = append(names, n.cfg.Name)
	}
	slices.Sort(names)
	out := make([]ops.NodeStatus, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			var st ops.NodeStatus
			if name == n.cfg.Name {
				st = (*nodeOps)(s).selfStatus(ctx)
				st.Self = true
			} else {
				st = s.askStatus(ctx, name)
			}
			m, ok := members[name]
			st.Name, st.Gossip, st.Synced = name, m.Addr, ok && m.Synced
			st.Principals = len(n.dir.ByNode(name))
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

func (s *opsSource) askStatus(ctx context.Context, name string) ops.NodeStatus {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	bad := func(err error) ops.NodeStatus {
		return ops.NodeStatus{Name: name, Status: "unreachable", Error: err.Error()}
	}
	m, err := s.n.nc.RequestWithContext(ctx, StatusSubject(name), nil)
	if err != nil {
		return bad(err)
	}
	var st ops.NodeStatus
	if len(m.Data) > 64<<10 {
		return bad(errors.New("status reply too large"))
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return bad(fmt.Errorf("bad status reply: %w", err))
	}
	if st.Status != "ready" && st.Status != "unavailable" {
		st.Status = "unavailable"
	}
	st.Reachable, st.Self, st.Error = true, false, ""
	return st
}

// User shows what may be shown about one user: her visible terminals,
// her last record as offline when she has none visible (a hidden user
// looks offline), and her mailbox depth. A user with neither terminals nor
// a record is not found.
func (s *opsSource) User(ctx context.Context, name string) (ops.UserInfo, error) {
	n := s.n
	// The URL is UTF-8; names are ISO 8859-1 octets inside the cluster.
	name, err := msp.UTF8ToLatin1(name)
	if err != nil {
		return ops.UserInfo{}, fmt.Errorf("bad user name: %w", err)
	}
	if err := presence.ValidUser(name); err != nil {
		return ops.UserInfo{}, fmt.Errorf("bad user name: %w", err)
	}
	u := ops.UserInfo{User: msp.Latin1ToUTF8(presence.CanonicalUser(name)), Terminals: []ops.WhoEntry{}}
	for _, e := range n.dir.Lookup(name) {
		if e.State != presence.Hidden && e.User == presence.CanonicalUser(name) {
			u.Terminals = append(u.Terminals, whoEntry(&e))
		}
	}
	// With no visible terminal, a sign-in record is a hidden terminal's:
	// shown as offline, like a sign-out, so that she looks offline (issue
	// 12: hidden users are indistinguishable from offline ones).
	if seen, err := n.sb.LastSeen(ctx, name); err == nil && (seen.State == presence.Offline.String() || len(u.Terminals) == 0) {
		u.LastSeen = &ops.LastSeen{Time: seen.Time.UTC().Truncate(time.Second), Node: seen.Node, Term: msp.Latin1ToUTF8(seen.Term), State: presence.Offline.String()}
	}
	if len(u.Terminals) == 0 && u.LastSeen == nil {
		return ops.UserInfo{}, ops.ErrNotFound
	}
	if n.mbox != nil && n.nc.IsConnected() {
		if depth, err := n.mbox.Depth(ctx, name); err == nil {
			u.MailboxDepth = &depth
		}
	}
	return u, nil
}

// Reload re-reads what can change without a restart: the session secrets
// file, the gossip keyring and the HTTP token. Each part that fails keeps
// its old value; the error joins all failures. It logs what it reloaded.
func (n *Node) Reload() error {
	var errs []error
	var reloaded []string
	o := n.ops
	if !o.running.Load() {
		n.log.Warn("reload: the node is not running (starting or failed); nothing reloaded")
		return nil
	}
	if o.secretAuth != nil {
		if s, err := session.LoadSecrets(n.cfg.SessionSecrets); err != nil {
			errs = append(errs, fmt.Errorf("session secrets: %w", err))
		} else {
			o.secretAuth.SetSecrets(s)
			reloaded = append(reloaded, "session secrets "+n.cfg.SessionSecrets)
		}
	}
	if n.cfg.GossipKeyFile != "" && n.dir != nil {
		keys, err := readGossipKeys(n.cfg.GossipKeyFile)
		if err == nil {
			err = n.dir.SetGossipKeys(keys)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gossip keys: %w", err))
		} else {
			reloaded = append(reloaded, fmt.Sprintf("gossip keyring %s (%d keys)", n.cfg.GossipKeyFile, len(keys)))
		}
	}
	if o.http != nil && n.cfg.HTTPTokenFile != "" {
		if changed, err := o.http.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("http token: %w", err))
		} else {
			reloaded = append(reloaded, fmt.Sprintf("http token %s (changed: %v)", n.cfg.HTTPTokenFile, changed))
		}
	}
	err := errors.Join(errs...)
	switch {
	case err != nil:
		n.log.Error("reload incomplete; the parts that failed keep their old values", "reloaded", reloaded, "err", err)
	case len(reloaded) == 0:
		// Issue 20: "reloaded what=[]" read as if something had been.
		n.log.Info("reload: nothing changed (no session secrets, gossip key or HTTP token file to re-read)")
	default:
		n.log.Info("reloaded", "what", reloaded)
	}
	return err
}

// readGossipKeys reads a gossip key file for a reload: one key (as at
// start), or several, one per line, base64, the first one used to encrypt.
func readGossipKeys(path string) ([][]byte, error) {
	if k, err := readKey(path); err == nil {
		return [][]byte{k}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: gossip key: %w", err)
	}
	var keys [][]byte
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, fmt.Errorf("node: gossip key %s: each line must be a base64 key of 16, 24 or 32 bytes", path)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("node: gossip key %s: no key", path)
	}
	return keys, nil
}
