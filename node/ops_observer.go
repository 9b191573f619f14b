package node

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
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

// observe is the switchboard Observer: metrics, recent rates and the
// delivery log for every message sent through this node.
func (o *nodeOps) observe(ctx context.Context, d *switchboard.Delivery, out *switchboard.Outcome) {
	rev := d.Origin.Revision
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
	descSessions   = prometheus.NewDesc("msprelay_sessions_open", "Open session connections (signed in or not), those of hidden sign-ins left out.", nil, nil)
	descTerminals  = prometheus.NewDesc("msprelay_presence_terminals", "Visible terminals in the presence directory, by node (hidden ones count as absent).", []string{"node"}, nil)
	descUsers      = prometheus.NewDesc("msprelay_presence_users", "Distinct users visibly signed in anywhere in the cluster.", nil, nil)
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
	// Hidden terminals count as absent in every series: a gauge that moves
	// when a hidden user signs in or out tells her apart from an offline
	// one (issue 18: "hidden looks offline in every field, counter and
	// event").
	hiddenSessions := 0
	if n.dir != nil {
		perNode := map[string]int{}
		users := map[string]struct{}{}
		for _, e := range n.dir.All() {
			if e.State == principal.Hidden {
				if e.Node == n.cfg.Name && e.Kind == principal.KindSession {
					hiddenSessions++
				}
				continue
			}
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
	if n.sess != nil {
		// One session connection signs in one terminal: a hidden one's
		// connection is left out, so that the gauge moves as if she had
		// not connected.
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(max(n.sess.Sessions()-hiddenSessions, 0)))
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
