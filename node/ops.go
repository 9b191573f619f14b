package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/msprelay/msprelay/ops"
)

// nodeOps is the node's operations side: its Prometheus registry and
// metrics, the delivery log, the status responder and the HTTP endpoint.
// Its parts live by responsibility: this file holds the type and its
// lifecycle, ops_observer.go the metrics and delivery log (the switchboard
// observer), ops_status.go the status responder and the HTTP API's source,
// ops_reload.go the reload loop.
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

	// countersMu guards counters, the message counters by label set, so
	// that counting a message looks a counter up without allocating; the
	// label sets are few (transport x revision x outcome x class).
	countersMu sync.Mutex
	counters   map[messageLabels]prometheus.Counter

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
		// A token file without --http is accepted and unused: the package
		// names its token for every node (the unit's environment), and
		// the token guards the endpoint once the operator turns it on.
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
		if m.Header.Get(ProbeHeader) != "" {
			_ = m.Respond(nil) // "still here": no checks, nothing to show
			return
		}
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
