// Package mailbox is the durable mailbox of msprelay (docs/MAILBOX.md): a
// JetStream stream with one subject per user holding the messages no
// terminal took, a key-value bucket of the users seen in the cluster (their
// last sign-in or sign-out), and per-user drainers that hand queued messages
// to a user's lines while she is signed in on this node.
//
// A *Mailbox is the switchboard.Mailbox of one node: the switchboard routes
// and decides what to queue, the mailbox stores. It never reaches into the
// switchboard: it delivers through the switchboard.Lines callback it is
// given with each LineUp.
//
// Lifecycle: New validates its Config and starts nothing; Start sets the
// store up (a store that is not reachable yet is retried on use) and starts
// the writer of sign-in records, returning at once; Close stops the drainers
// and the writer and waits for them. Close is idempotent. The caller owns
// the NATS connection and closes it after Close. Drainers start on LineUp
// (also before Start) and end on LineDown of the user's last line or on
// Close.
package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/internal/limitlog"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// JetStream names of the mailbox. Every node of a cluster uses the same
// ones, so that any node can queue for and drain any user.
const (
	// Stream is the stream holding queued messages, one subject per user,
	// sender and storing node: SubjectPrefix, UserToken(user), '.',
	// SenderToken, '.', node name (NodeSubject).
	Stream = "MSP_MAILBOX"
	// SubjectPrefix starts every mailbox subject: SubjectPrefix followed
	// by UserToken(user) is her mailbox (Subject), and a message in it is
	// on a subject below that, one per sender and storing node
	// (NodeSubject); earlier versions wrote one per sender (SenderSubject)
	// or one per user.
	SubjectPrefix = "msp.mbox."
	// UsersBucket is the key-value bucket of known users, keyed by UserToken.
	UsersBucket = "MSP_USERS"
)

// Defaults for the zero fields of Config (StoreTimeout defaults to
// switchboard.DefaultStoreTimeout, which the switchboard's waits assume).
const (
	DefaultMaxPerUser      = 1000
	DefaultMaxPerSender    = 100
	DefaultMaxBytes        = 1 << 30
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultReplicas        = 1
	DefaultDuplicateWindow = 5 * time.Minute
	DefaultAckWait         = 30 * time.Second
	DefaultPollEvery       = 5 * time.Second
	// MaxReplicas is the largest replication factor JetStream allows.
	MaxReplicas = 5
)

// maxMsgSize bounds one stored message: an MSP message is at most 512
// octets, and its JSON envelope a few times that.
const maxMsgSize = 16 << 10

// Config configures a Mailbox. The mailbox, the known-users bucket and the
// consumers live in JetStream on NATS; every node of a cluster must use the
// same settings (the last node to start rewrites the stream's limits).
type Config struct {
	// NATS is the connection to JetStream; required. The caller owns it.
	NATS *nats.Conn
	// Node is this node's name; required. Messages it stores go on
	// subjects ending in it (NodeSubject), which per-node NATS users may
	// publish only under their own name (broker.NodePermissions), so the
	// node that stored a message is known when it drains.
	Node string
	// PeersAuthenticated says that NATS authenticates every node and lets
	// each publish mailbox subjects only under its own name. Only then
	// does a message another node stored keep that node's word that its
	// sender was verified; otherwise it drains unverified (as
	// switchboard.Config.PeersAuthenticated does for deliveries).
	PeersAuthenticated bool
	// Logger receives the mailbox's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxPerUser caps each user's mailbox; a full mailbox refuses new
	// messages ('-alice: ...; mailbox full'), it never drops old ones.
	// Zero means DefaultMaxPerUser.
	MaxPerUser int
	// MaxPerSender is each sender's share of a user's mailbox: a sender
	// (SenderToken) holding that many of her queued messages is refused
	// ('-alice: ...; mailbox share for this sender full'), so that one
	// sender cannot fill her mailbox and lock everyone else out. Zero
	// means DefaultMaxPerSender, negative no share (MaxPerUser); it is
	// capped at MaxPerUser.
	MaxPerSender int
	// MaxBytes caps the whole stream (every user's mailbox); a stream at
	// its cap refuses new messages. Zero means DefaultMaxBytes, negative
	// no cap.
	MaxBytes int64
	// MaxAge is how long a queued message waits for its recipient before
	// it expires. Zero means DefaultMaxAge.
	MaxAge time.Duration
	// Replicas is the stream's and bucket's replication factor: 1 for a
	// single relay or an embedded server, 3 for a three-relay cluster.
	// Zero means DefaultReplicas; at most MaxReplicas.
	Replicas int
	// DuplicateWindow is how long the stream remembers message ids
	// (Nats-Msg-Id) to store each message once. Zero means
	// DefaultDuplicateWindow; it is capped at MaxAge.
	DuplicateWindow time.Duration
	// AckWait is how long a message handed to a draining node may stay
	// unacknowledged before JetStream gives it to another node (the
	// draining node died). Zero means DefaultAckWait.
	AckWait time.Duration
	// PollEvery is how often a node holding a user's lines looks into her
	// mailbox without being woken (messages given back after AckWait wake
	// nobody). Zero means DefaultPollEvery.
	PollEvery time.Duration
	// SweepEvery is how often a node looks for mail stored for its
	// signed-in users without it hearing the notice (a cut between sites;
	// see sweep.go): one stream-info request listing the mailbox subjects
	// that hold mail, then a look by each of its users among them. Sweeps
	// also follow store errors and Sweep calls. Zero means
	// DefaultSweepEvery, negative no periodic sweep.
	SweepEvery time.Duration
	// StoreTimeout bounds one store operation (queueing a message,
	// looking up a user). Zero means switchboard.DefaultStoreTimeout.
	StoreTimeout time.Duration
}

// ErrConfig marks a Config that New refuses.
var ErrConfig = errors.New("mailbox: bad config")

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxPerUser == 0 {
		c.MaxPerUser = DefaultMaxPerUser
	}
	switch {
	case c.MaxPerSender == 0:
		c.MaxPerSender = DefaultMaxPerSender
	case c.MaxPerSender < 0:
		c.MaxPerSender = c.MaxPerUser
	}
	c.MaxPerSender = min(c.MaxPerSender, c.MaxPerUser)
	switch {
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultMaxBytes
	case c.MaxBytes < 0:
		c.MaxBytes = -1 // JetStream's "unlimited"
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	c.DuplicateWindow = min(c.DuplicateWindow, c.MaxAge)
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.PollEvery == 0 {
		c.PollEvery = DefaultPollEvery
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = switchboard.DefaultStoreTimeout
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = DefaultSweepEvery
	}
}

// Mailbox is the JetStream side of a node: the mailbox stream, the
// known-users bucket, the writer of sign-in records and the per-user
// drainers. It implements switchboard.Mailbox.
type Mailbox struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	ctx    context.Context // cancelled by Close; parent of every drainer
	cancel context.CancelFunc
	wg     sync.WaitGroup // record writer and drainers

	// setupMu serialises setup; it guards ready, stream and kv.
	setupMu sync.Mutex
	ready   bool
	stream  jetstream.Stream
	kv      jetstream.KeyValue

	// mu guards pending, drains, byToken, started and closed, and each
	// drainer's running.
	mu      sync.Mutex
	pending map[string]switchboard.Seen // records not yet written, by canonical user
	drains  map[string]*drainer         // by canonical user
	byToken map[string]*drainer         // the same drainers by UserToken, for wake-ups
	// wakeSub is the one subscription on every mailbox subject: a message
	// stored for a user signed in here pokes her drainer. Set by Start,
	// unsubscribed by Close.
	wakeSub *nats.Subscription
	started bool
	closed  bool
	wake    chan struct{} // cap 1: pending has records
	// sweepReq (cap 1) holds the reason of the one pending sweep request;
	// sweepLoop, started by Start, takes it.
	sweepReq chan string

	recordsDone chan struct{} // closed when recordLoop returns (or by Close if it never ran)

	// putMu guards gates; a gate serialises the Puts for one user on this
	// node, so that counting her mailbox and storing into it are one step
	// here (see Put).
	putMu sync.Mutex
	gates map[string]*gate
	// stored remembers the ids this node stored lately (bounded, own lock).
	stored *storedIDs
	// limits logs refusals by a cap at most once per 10 s per kind, with
	// the count held back (own lock): a flood must not flood the log.
	limits *limitlog.Log
	// looks (cap maxLooks) holds a token for each look into a mailbox in
	// flight (hasMail, census): a wave of sign-ins queues in this node
	// instead of at the store.
	looks chan struct{}
	// lookQ (guarded by mu) holds the drainers waiting for a look, each
	// once (drainer.queued); lookReady (cap 1) tells the lookers there is
	// work. See look.go.
	lookQ     []*drainer
	lookReady chan struct{}
	// legacy is false once a census of the stream found no one-subject
	// mailbox of earlier versions; a look then needs one request, not two.
	// Set by setup and by every sweep (which sees every subject).
	legacy atomic.Bool
}

// The switchboard talks to a *Mailbox only through its interface.
var _ switchboard.Mailbox = (*Mailbox)(nil)

// New validates cfg and builds a Mailbox. It starts nothing.
func New(cfg Config) (*Mailbox, error) {
	if cfg.NATS == nil {
		return nil, fmt.Errorf("%w: NATS connection required", ErrConfig)
	}
	if err := principal.ValidNode(cfg.Node); err != nil {
		return nil, fmt.Errorf("%w: node name: %w", ErrConfig, err)
	}
	if cfg.Replicas > MaxReplicas || cfg.Replicas < 0 {
		return nil, fmt.Errorf("%w: replicas %d: want 1 to %d", ErrConfig, cfg.Replicas, MaxReplicas)
	}
	if err := cfg.checkNumbers(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	js, err := jetstream.New(cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("mailbox: jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mailbox{cfg: cfg, nc: cfg.NATS, js: js, log: cfg.Logger,
		ctx: ctx, cancel: cancel, pending: map[string]switchboard.Seen{}, drains: map[string]*drainer{},
		byToken: map[string]*drainer{},
		wake:    make(chan struct{}, 1), sweepReq: make(chan string, 1), recordsDone: make(chan struct{}),
		gates: map[string]*gate{}, stored: newStoredIDs(cfg.DuplicateWindow, maxStoredIDs),
		limits: limitlog.New(cfg.Logger, 0), looks: make(chan struct{}, maxLooks),
		lookReady: make(chan struct{}, 1)}
	m.legacy.Store(true) // until a census says otherwise
	return m, nil
}

// Start tries to set the store up, bounded by ctx and StoreTimeout (a
// relay that is down now is retried on first use), and starts the writer
// of sign-in records. It returns ErrClosed after Close and an error when
// called twice; a store that is not ready is only logged.
func (m *Mailbox) Start(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return ErrClosed
	case m.started:
		m.mu.Unlock()
		return errors.New("mailbox: Start called twice")
	}
	m.started = true
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	if err := m.setup(ctx); err != nil {
		m.log.Warn("mailbox store not ready yet; retrying on use", "err", err)
	} else {
		// Before anything else of this node asks the store: this request
		// is outside the bound on looks in flight. If the store is not
		// ready now, the first census (a sweep, or a long look queue)
		// tells instead.
		m.censusLegacy(ctx, m.stream)
	}
	m.wg.Go(func() {
		defer close(m.recordsDone)
		m.recordLoop()
	})
	sub, err := m.nc.Subscribe(SubjectPrefix+">", m.wakeFor)
	if err != nil {
		m.log.Warn("mailbox wake-up subscription failed; queued messages wait for the next sign-in", "err", err)
	}
	m.mu.Lock()
	m.wakeSub = sub
	m.mu.Unlock()
	m.wg.Go(m.reconnectLoop)
	m.wg.Go(m.sweepLoop)
	for range maxLooks {
		m.wg.Go(m.lookLoop)
	}
	m.mu.Lock()
	if len(m.lookQ) > 0 { // lines that came up before Start
		select {
		case m.lookReady <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
	return nil
}

// wakeFor pokes the drainer of the user a stored message is for, if she
// is signed in here. It runs on the wake-up subscription's goroutine.
func (m *Mailbox) wakeFor(msg *nats.Msg) {
	token, _, _ := strings.Cut(strings.TrimPrefix(msg.Subject, SubjectPrefix), ".")
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.byToken[token]; d != nil {
		d.wakeLocked()
	}
}

// reconnectLoop asks for a sweep after the NATS connection came back:
// wake-ups published while it was down were lost, and no drainer polls a
// mailbox it found empty. One census finds the users signed in here who
// have mail; poking every drainer instead would make each of thousands of
// users a request. It ends with the mailbox.
func (m *Mailbox) reconnectLoop() {
	tick := time.NewTicker(m.cfg.PollEvery)
	defer tick.Stop()
	seen := m.nc.Stats().Reconnects
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		if n := m.nc.Stats().Reconnects; n != seen && m.nc.IsConnected() {
			seen = n
			m.Sweep("NATS reconnected")
		}
	}
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("mailbox: closed")

// Close stops the drainers and the record writer and waits for them. The
// writer first gets a moment (StoreTimeout at most) to write the sign-out
// records of the lines that just closed. It is idempotent.
func (m *Mailbox) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.wg.Wait()
		return nil
	}
	m.closed = true
	started := m.started
	sub := m.wakeSub
	m.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	if !started {
		close(m.recordsDone)
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(m.cfg.StoreTimeout)
	select {
	case <-m.recordsDone:
	case <-t.C:
	}
	t.Stop()
	m.cancel()
	m.wg.Wait()
	return nil
}

// setup creates or updates the stream and the bucket once.
func (m *Mailbox) setup(ctx context.Context) error {
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	if m.ready {
		return nil
	}
	st, err := m.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 Stream,
		Description:          "msprelay: messages waiting for their recipients, one subject per user and sender",
		Subjects:             []string{SubjectPrefix + ">"},
		Retention:            jetstream.WorkQueuePolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		// Per subject, that is per user and sender. Counting in Put keeps
		// each sender to MaxPerSender and each user to MaxPerUser; the
		// stream's own cap stays at MaxPerUser so that the one-subject
		// mailboxes of earlier versions are never cut down by an update.
		MaxMsgsPerSubject: int64(m.cfg.MaxPerUser),
		MaxBytes:          m.cfg.MaxBytes,
		MaxAge:            m.cfg.MaxAge,
		MaxMsgSize:        maxMsgSize,
		Duplicates:        m.cfg.DuplicateWindow,
		Replicas:          m.cfg.Replicas,
		Storage:           jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", switchboard.ErrMailboxDown, Stream, err)
	}
	kv, err := m.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      UsersBucket,
		Description: "msprelay: users seen in the cluster, last sign-in or sign-out",
		History:     1,
		Replicas:    m.cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("%w: bucket %s: %w", switchboard.ErrMailboxDown, UsersBucket, err)
	}
	m.stream, m.kv, m.ready = st, kv, true
	return nil
}

// censusLegacy asks the stream whether any one-subject mailbox of earlier
// versions holds mail (their subjects are the only ones with a single
// token after the prefix) and, if none does, spares every later look its
// second request. Start calls it once the store is set up. A failed
// census leaves the two requests on. Mail an earlier version stores later
// is found by the next sweep, which sees every subject and sets legacy
// again.
func (m *Mailbox) censusLegacy(ctx context.Context, st jetstream.Stream) {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+"*"))
	if err != nil {
		return
	}
	for _, c := range info.State.Subjects {
		if c > 0 {
			return
		}
	}
	m.legacy.Store(false)
}

// handles sets the store up if need be and returns the stream and bucket.
func (m *Mailbox) handles(ctx context.Context) (jetstream.Stream, jetstream.KeyValue, error) {
	if err := m.setup(ctx); err != nil {
		return nil, nil, err
	}
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	return m.stream, m.kv, nil
}

// storeCtx bounds one store operation by StoreTimeout and the mailbox's
// life, not by the caller's context: a delivery that used up its time on a
// dead node must still be able to queue the message (or the sender would
// get '-' for a message the cluster could have kept), and a drainer whose
// user just signed out must still settle the message it delivered.
func (m *Mailbox) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.ctx, m.cfg.StoreTimeout)
}

// errNotConnected is why the store is not even asked while the NATS
// connection is down: a request made now would wait out StoreTimeout in
// the reconnect buffer, and a publish might even be stored later, after
// the sender was told '-'.
var errNotConnected = errors.New("not connected to NATS")

func (m *Mailbox) connected() error {
	if !m.nc.IsConnected() {
		return fmt.Errorf("%w: %w", switchboard.ErrMailboxDown, errNotConnected)
	}
	return nil
}

// Subject is the subject of user's mailbox as earlier versions wrote it,
// one subject per user; her messages are now on the subjects below it
// (SenderSubject), and her drainer reads both.
func Subject(user string) string { return SubjectPrefix + UserToken(user) }

// SenderSubject is the subject of the messages sender (a SenderToken)
// queued for user as earlier versions wrote it; her messages are now on
// the subjects below it, one per storing node (NodeSubject).
func SenderSubject(user, sender string) string { return Subject(user) + "." + sender }

// NodeSubject is the subject of the messages sender (a SenderToken) queued
// for user by node. The last token names the storing node: a per-node NATS
// user may publish only subjects ending in its own name, so a drainer
// knows which node vouches for a stored message (bindOrigin).
func NodeSubject(user, sender, node string) string { return SenderSubject(user, sender) + "." + node }

// storingNode is the node named by a mailbox subject, "" for the subjects
// of earlier versions (one per user, or one per user and sender), which
// name none.
func storingNode(subject string) string {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return ""
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return ""
	}
	return parts[2]
}

// jsErrStoreFailed is JetStream's error code for a message the stream
// refused to store (JSStreamStoreFailedF): one of its limits, here the byte
// cap (MaxBytes) or, for a sender racing another node, the per-subject cap.
const jsErrStoreFailed jetstream.ErrorCode = 10077

// Put stores d in user's mailbox and returns once the store has confirmed
// it. dup reports that the store already held a message with d's id.
// Errors wrap switchboard.ErrSenderShareFull, switchboard.ErrMailboxFull or
// switchboard.ErrMailboxDown.
//
// Put counts her mailbox before it stores: the sender's messages against
// MaxPerSender, all of them against MaxPerUser. The count and the store are
// one step on this node (a gate per user); nodes racing each other for one
// mailbox may overshoot a cap by one message each. A repeat of a message
// this node stored lately skips the count, so that it is answered "already
// queued" even when the mailbox has filled since.
func (m *Mailbox) Put(d *switchboard.Delivery, user string) (dup bool, err error) {
	if err := m.connected(); err != nil {
		return false, err
	}
	ctx, cancel := m.storeCtx()
	defer cancel()
	st, _, err := m.handles(ctx)
	if err != nil {
		return false, err
	}
	user = principal.CanonicalUser(user)
	body, err := switchboard.EncodeQueued(m.vouch(d), user)
	if err != nil {
		return false, fmt.Errorf("mailbox: queue for %s: %w", user, err)
	}
	sender := SenderToken(d)
	msg := nats.NewMsg(NodeSubject(user, sender, m.cfg.Node))
	msg.Data = body
	id := ""
	if d.ID != "" {
		// The stream's duplicate window spans every mailbox: the owner
		// takes part in the id, so that a message for bob never makes
		// one for alice a repeat, whatever the ids look like.
		id = msgID(user, d.ID)
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	release := m.gate(user)
	defer release()
	if id == "" || !m.stored.has(id) {
		if err := m.room(ctx, st, user, sender); err != nil {
			return false, err
		}
	}
	ack, err := m.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(Stream))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStoreFailed {
			if rerr := m.room(ctx, st, user, sender); rerr != nil {
				return false, rerr
			}
			m.limits.Hit("mailbox stream at its byte cap; message refused", "max_bytes", m.cfg.MaxBytes)
			return false, fmt.Errorf("%w (store at its cap of %d bytes)", switchboard.ErrMailboxFull, m.cfg.MaxBytes)
		}
		m.storeFailed()
		return false, fmt.Errorf("%w: %w", switchboard.ErrMailboxDown, err)
	}
	if id != "" {
		m.stored.add(id)
	}
	m.log.Debug("queued", "user", user, "id", d.ID, "sender", sender, "seq", ack.Sequence, "duplicate", ack.Duplicate)
	return ack.Duplicate, nil
}

// msgID is the stream's duplicate id (Nats-Msg-Id) of the message id for
// user's mailbox.
func msgID(user, id string) string { return UserToken(user) + "/" + id }

// room counts user's mailbox and returns nil when it may take one more
// message from sender, else why not. A count that cannot be made is
// ErrMailboxDown: a store that cannot count cannot keep its caps either.
func (m *Mailbox) room(ctx context.Context, st jetstream.Stream, user, sender string) error {
	// The one-subject mailbox of earlier versions is not counted: it only
	// drains, and counting it would cost a second request per message.
	subjects, err := m.count(ctx, st, user, false)
	if err != nil {
		return fmt.Errorf("%w: counting the mailbox of %s: %w", switchboard.ErrMailboxDown, user, err)
	}
	var total uint64
	for _, n := range subjects {
		total += n
	}
	switch {
	case total >= uint64(m.cfg.MaxPerUser):
		m.limits.Hit("mailbox full; message refused", "user", user, "max", m.cfg.MaxPerUser)
		return fmt.Errorf("%w (%d messages)", switchboard.ErrMailboxFull, m.cfg.MaxPerUser)
	case senderCount(subjects, user, sender) >= uint64(m.cfg.MaxPerSender):
		m.limits.Hit("mailbox share for a sender full; message refused", "user", user, "sender", sender, "max", m.cfg.MaxPerSender)
		return fmt.Errorf("%w (%d messages)", switchboard.ErrSenderShareFull, m.cfg.MaxPerSender)
	}
	return nil
}

// senderCount is how many of user's queued messages are sender's, on
// every storing node's subject and on the one of earlier versions.
func senderCount(subjects map[string]uint64, user, sender string) uint64 {
	own := SenderSubject(user, sender)
	var n uint64
	for subj, c := range subjects {
		if subj == own || (strings.HasPrefix(subj, own) && subj[len(own)] == '.') {
			n += c
		}
	}
	return n
}

// count returns how many messages each subject of user's mailbox holds;
// legacy adds the one-subject mailbox of earlier versions.
func (m *Mailbox) count(ctx context.Context, st jetstream.Stream, user string, legacy bool) (map[string]uint64, error) {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(Subject(user)+".>"))
	if err != nil {
		return nil, err
	}
	out := info.State.Subjects
	if out == nil {
		out = map[string]uint64{}
	}
	if !legacy || !m.legacy.Load() {
		return out, nil
	}
	old, err := st.Info(ctx, jetstream.WithSubjectFilter(Subject(user)))
	if err != nil {
		return nil, err
	}
	maps.Copy(out, old.State.Subjects)
	return out, nil
}

// Depth returns how many messages user's mailbox holds.
func (m *Mailbox) Depth(ctx context.Context, user string) (uint64, error) {
	st, _, err := m.handles(ctx)
	if err != nil {
		return 0, err
	}
	subjects, err := m.count(ctx, st, principal.CanonicalUser(user), true)
	if err != nil {
		return 0, fmt.Errorf("mailbox: depth of %s: %w", user, err)
	}
	var n uint64
	for _, c := range subjects {
		n += c
	}
	return n, nil
}

// gate waits for user's turn to count and store and returns the function
// that ends it. Gates live only while a Put holds or waits for them.
func (m *Mailbox) gate(user string) (release func()) {
	m.putMu.Lock()
	g := m.gates[user]
	if g == nil {
		g = &gate{}
		m.gates[user] = g
	}
	g.refs++
	m.putMu.Unlock()
	g.mu.Lock()
	return func() {
		g.mu.Unlock()
		m.putMu.Lock()
		if g.refs--; g.refs == 0 {
			delete(m.gates, user)
		}
		m.putMu.Unlock()
	}
}

// gate serialises the Puts for one user; refs (guarded by Mailbox.putMu)
// counts the Puts holding or waiting for mu.
type gate struct {
	mu   sync.Mutex
	refs int
}

// wireSeen is the bucket's JSON value; names travel as in the federation's
// deliver requests (ISO 8859-1 octets as the runes of the same value).
type wireSeen struct {
	User  string    `json:"user"`
	Time  time.Time `json:"time"`
	Node  string    `json:"node"`
	Term  string    `json:"term"`
	State string    `json:"state"`
}

// LastSeen returns what the known-users bucket says about user. It returns
// switchboard.ErrUnknownUser for a user never seen and an error wrapping
// switchboard.ErrMailboxDown when the store cannot be asked. It is bounded
// by ctx, StoreTimeout and the mailbox's life.
func (m *Mailbox) LastSeen(ctx context.Context, user string) (switchboard.Seen, error) {
	if err := m.connected(); err != nil {
		return switchboard.Seen{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	_, kv, err := m.handles(ctx)
	if err != nil {
		return switchboard.Seen{}, err
	}
	e, err := kv.Get(ctx, UserToken(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return switchboard.Seen{}, switchboard.ErrUnknownUser
	}
	if err != nil {
		return switchboard.Seen{}, fmt.Errorf("%w: %w", switchboard.ErrMailboxDown, err)
	}
	var w wireSeen
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		return switchboard.Seen{}, fmt.Errorf("mailbox: known user %s: %w", user, err)
	}
	s := switchboard.Seen{Time: w.Time, Node: w.Node, State: w.State}
	if s.User, err = msp.UTF8ToLatin1(w.User); err != nil {
		return switchboard.Seen{}, fmt.Errorf("mailbox: known user %s: %w", user, err)
	}
	if s.Term, err = msp.UTF8ToLatin1(w.Term); err != nil {
		return switchboard.Seen{}, fmt.Errorf("mailbox: known user %s: %w", user, err)
	}
	return s, nil
}

// LineUp records her sign-in and starts her drainer, or wakes the running
// one (a new line may take messages the others could not).
func (m *Mailbox) LineUp(s switchboard.Seen, lines switchboard.Lines) {
	m.record(s)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if d := m.drains[s.User]; d != nil {
		d.pokeLocked()
		return
	}
	d := &drainer{m: m, user: s.User, token: UserToken(s.User), lines: lines}
	m.drains[s.User] = d
	m.byToken[d.token] = d
	d.pokeLocked() // her mailbox may hold messages from while she was away
}

// LineDown records her sign-out; after her last line here her drainer
// stops, and a message it is delivering right now goes back to the mailbox.
func (m *Mailbox) LineDown(s switchboard.Seen, last bool) {
	m.record(s)
	if !last {
		return
	}
	m.mu.Lock()
	d := m.drains[s.User]
	delete(m.drains, s.User)
	if d != nil {
		if m.byToken[d.token] == d {
			delete(m.byToken, d.token)
		}
		d.stopLocked()
	}
	m.mu.Unlock()
}

// Wake wakes user's drainer, if she has one here.
func (m *Mailbox) Wake(user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.drains[principal.CanonicalUser(user)]; d != nil {
		d.wakeLocked()
	}
}
