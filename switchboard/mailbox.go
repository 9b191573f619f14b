package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
)

// JetStream names of the mailbox. Every node of a cluster uses the same
// ones, so that any node can queue for and drain any user.
const (
	// MailboxStream is the stream holding queued messages, one subject per user.
	MailboxStream = "MSP_MAILBOX"
	// MailboxSubjectPrefix starts every mailbox subject: MailboxSubjectPrefix
	// followed by UserToken(user).
	MailboxSubjectPrefix = "msp.mbox."
	// UsersBucket is the key-value bucket of known users, keyed by UserToken.
	UsersBucket = "MSP_USERS"
)

// OfflinePolicy says what happens to a message for a known user that no
// terminal took.
type OfflinePolicy string

// Offline policies.
const (
	OfflineQueue  OfflinePolicy = "queue"  // store it in her mailbox: '+queued'
	OfflineRefuse OfflinePolicy = "refuse" // refuse it: '-alice: not signed in'
)

// ParseOfflinePolicy checks a policy name ("" means OfflineQueue).
func ParseOfflinePolicy(s string) (OfflinePolicy, error) {
	switch OfflinePolicy(s) {
	case "", OfflineQueue:
		return OfflineQueue, nil
	case OfflineRefuse:
		return OfflineRefuse, nil
	}
	return "", fmt.Errorf("switchboard: offline policy %q: want %s or %s", s, OfflineQueue, OfflineRefuse)
}

// MailboxConfig configures the durable mailbox and the known-users bucket.
// Both live in JetStream on the NATS connection of the switchboard; every
// node of a cluster must use the same settings (the last node to start
// rewrites the stream's limits).
type MailboxConfig struct {
	// Disabled turns the mailbox off: users who are not signed in are
	// refused as "not signed in" and nothing is recorded. A switchboard
	// without NATS has no mailbox either.
	Disabled bool
	// Offline is what happens to messages for known users that no terminal
	// took; "" means OfflineQueue.
	Offline OfflinePolicy
	// MaxPerUser caps each user's mailbox; a full mailbox refuses new
	// messages ('-alice: ...; mailbox full'), it never drops old ones.
	// Zero means 1000.
	MaxPerUser int
	// MaxAge is how long a queued message waits for its recipient before
	// it expires. Zero means 7 days.
	MaxAge time.Duration
	// Replicas is the stream's and bucket's replication factor: 1 for a
	// single relay or an embedded server, 3 for a three-relay cluster.
	// Zero means 1.
	Replicas int
	// DuplicateWindow is how long the stream remembers message ids
	// (Nats-Msg-Id) to store each message once. Zero means 5 minutes;
	// it is capped at MaxAge.
	DuplicateWindow time.Duration
	// AckWait is how long a message handed to a draining node may stay
	// unacknowledged before JetStream gives it to another node (the
	// draining node died). Zero means 30 s.
	AckWait time.Duration
	// PollEvery is how often a node holding a user's lines looks into her
	// mailbox without being woken (messages given back after AckWait wake
	// nobody). Zero means 5 s.
	PollEvery time.Duration
	// StoreTimeout bounds one store operation (queueing a message,
	// looking up a user). Zero means 2 s.
	StoreTimeout time.Duration
}

func (c *MailboxConfig) setDefaults() {
	if c.Offline == "" {
		c.Offline = OfflineQueue
	}
	if c.MaxPerUser <= 0 {
		c.MaxPerUser = 1000
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 5 * time.Minute
	}
	c.DuplicateWindow = min(c.DuplicateWindow, c.MaxAge)
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 5 * time.Second
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 2 * time.Second
	}
}

func (c *MailboxConfig) validate() error {
	if _, err := ParseOfflinePolicy(string(c.Offline)); err != nil {
		return err
	}
	if c.Replicas > 5 {
		return fmt.Errorf("switchboard: mailbox replicas %d: at most 5", c.Replicas)
	}
	return nil
}

// UserToken encodes a user name as one NATS subject token and key-value
// key: the canonical (lower-case) name with every octet other than a-z,
// 0-9, '-' and '_' written as '=' and two upper-case hex digits. User names
// may hold '.', '>', '*' and ISO 8859-1 octets, none of which may appear in
// a subject token; "j.doe" becomes "j=2Edoe" and "jörg" "j=F6rg". The
// encoding is one-to-one (ParseUserToken inverts it).
func UserToken(user string) string {
	user = presence.CanonicalUser(user)
	var b strings.Builder
	b.Grow(len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// ErrBadToken is returned by ParseUserToken for text UserToken cannot produce.
var ErrBadToken = errors.New("switchboard: bad user token")

// ParseUserToken decodes a UserToken back to the canonical user name. It
// accepts exactly what UserToken produces: no escaped safe octets, no
// lower-case hex, no upper-case letters.
func ParseUserToken(tok string) (string, error) {
	if tok == "" || len(tok) > 3*presence.MaxNameLen {
		return "", fmt.Errorf("%w: length %d", ErrBadToken, len(tok))
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenSafe(c):
			out = append(out, c)
		case c == '=' && i+2 < len(tok) && upperHex(tok[i+1]) >= 0 && upperHex(tok[i+2]) >= 0:
			v := byte(upperHex(tok[i+1])<<4 | upperHex(tok[i+2]))
			if tokenSafe(v) {
				return "", fmt.Errorf("%w: %q escapes a plain octet", ErrBadToken, tok[i:i+3])
			}
			out = append(out, v)
			i += 2
		default:
			return "", fmt.Errorf("%w: octet %#x at %d", ErrBadToken, c, i)
		}
	}
	user := string(out)
	if presence.CanonicalUser(user) != user {
		return "", fmt.Errorf("%w: %q is not a canonical name", ErrBadToken, tok)
	}
	return user, nil
}

func upperHex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// MailboxSubject is the subject of user's mailbox.
func MailboxSubject(user string) string { return MailboxSubjectPrefix + UserToken(user) }

// Seen is what the known-users bucket says about one user: her last
// sign-in or sign-out anywhere in the cluster.
type Seen struct {
	User  string    // canonical
	Time  time.Time // of the sign-in or sign-out
	Node  string    // node that recorded it
	Term  string    // terminal signed in or out
	State string    // presence state then; "offline" after a sign-out
}

// wireSeen is the bucket's JSON value; names travel as in wireDelivery.
type wireSeen struct {
	User  string    `json:"user"`
	Time  time.Time `json:"time"`
	Node  string    `json:"node"`
	Term  string    `json:"term"`
	State string    `json:"state"`
}

// mailbox is the JetStream side of a Switchboard: the mailbox stream, the
// known-users bucket, the writer of sign-in records and the per-user
// drainers. The Switchboard owns it: start launches the record writer,
// close stops the drainers and the writer and waits for them.
type mailbox struct {
	sb  *Switchboard
	cfg MailboxConfig
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	ctx    context.Context // cancelled by close; parent of every drainer
	cancel context.CancelFunc
	wg     sync.WaitGroup // record writer and drainers

	// setupMu serialises setup; it guards ready and kv.
	setupMu sync.Mutex
	ready   bool
	kv      jetstream.KeyValue

	// mu guards pending, drains, started and closed.
	mu      sync.Mutex
	pending map[string]Seen // records not yet written, by canonical user
	drains  map[string]*drainer
	started bool
	closed  bool
	wake    chan struct{} // cap 1: pending has records

	recordsDone chan struct{} // closed when recordLoop returns
}

func newMailbox(sb *Switchboard, nc *nats.Conn, cfg MailboxConfig) (*mailbox, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("switchboard: jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &mailbox{sb: sb, cfg: cfg, nc: nc, js: js, log: sb.log.With("component", "mailbox"),
		ctx: ctx, cancel: cancel, pending: map[string]Seen{}, drains: map[string]*drainer{},
		wake: make(chan struct{}, 1), recordsDone: make(chan struct{})}, nil
}

// start tries to set the store up (a relay that is down now is retried on
// first use) and starts the writer of sign-in records.
func (m *mailbox) start() {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.StoreTimeout)
	defer cancel()
	if err := m.setup(ctx); err != nil {
		m.log.Warn("mailbox store not ready yet; retrying on use", "err", err)
	}
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	m.wg.Go(func() {
		defer close(m.recordsDone)
		m.recordLoop()
	})
}

// close stops the drainers and the record writer and waits for them. The
// writer first gets a moment (StoreTimeout at most) to write the sign-out
// records of the lines that just closed.
func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	started := m.started
	m.mu.Unlock()
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
}

// setup creates or updates the stream and the bucket once.
func (m *mailbox) setup(ctx context.Context) error {
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	if m.ready {
		return nil
	}
	_, err := m.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 MailboxStream,
		Description:          "msprelay: messages waiting for their recipients, one subject per user",
		Subjects:             []string{MailboxSubjectPrefix + "*"},
		Retention:            jetstream.WorkQueuePolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    int64(m.cfg.MaxPerUser),
		MaxAge:               m.cfg.MaxAge,
		MaxMsgSize:           16 << 10,
		Duplicates:           m.cfg.DuplicateWindow,
		Replicas:             m.cfg.Replicas,
		Storage:              jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrMailboxDown, MailboxStream, err)
	}
	kv, err := m.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      UsersBucket,
		Description: "msprelay: users seen in the cluster, last sign-in or sign-out",
		History:     1,
		Replicas:    m.cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("%w: bucket %s: %v", ErrMailboxDown, UsersBucket, err)
	}
	m.kv, m.ready = kv, true
	return nil
}

func (m *mailbox) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	if err := m.setup(ctx); err != nil {
		return nil, err
	}
	m.setupMu.Lock()
	defer m.setupMu.Unlock()
	return m.kv, nil
}

// storeCtx bounds one store operation by StoreTimeout and the mailbox's
// life, not by the caller's context: a delivery that used up its time on a
// dead node must still be able to queue the message (or the sender would
// get '-' for a message the cluster could have kept), and a drainer whose
// user just signed out must still settle the message it delivered.
func (m *mailbox) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.ctx, m.cfg.StoreTimeout)
}

// errNotConnected is why the store is not even asked while the NATS
// connection is down: a request made now would wait out StoreTimeout in
// the reconnect buffer, and a publish might even be stored later, after
// the sender was told '-'.
var errNotConnected = errors.New("not connected to NATS")

func (m *mailbox) connected() error {
	if !m.nc.IsConnected() {
		return fmt.Errorf("%w: %v", ErrMailboxDown, errNotConnected)
	}
	return nil
}

// put stores d in user's mailbox and returns once the store has confirmed
// it. dup reports that the store already held a message with d's id.
func (m *mailbox) put(d *Delivery, user string) (dup bool, err error) {
	if err := m.connected(); err != nil {
		return false, err
	}
	ctx, cancel := m.storeCtx()
	defer cancel()
	if err := m.setup(ctx); err != nil {
		return false, err
	}
	user = presence.CanonicalUser(user)
	body, err := encodeDelivery(d, []presence.Entry{{User: user, Term: d.RecipTerm}})
	if err != nil {
		return false, fmt.Errorf("switchboard: queue for %s: %w", user, err)
	}
	msg := nats.NewMsg(MailboxSubject(user))
	msg.Data = body
	if d.ID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, d.ID)
	}
	ack, err := m.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(MailboxStream))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrStoreFailed && strings.Contains(apiErr.Description, "per subject") {
			return false, fmt.Errorf("%w (%d messages)", ErrMailboxFull, m.cfg.MaxPerUser)
		}
		return false, fmt.Errorf("%w: %v", ErrMailboxDown, err)
	}
	m.log.Debug("queued", "user", user, "id", d.ID, "seq", ack.Sequence, "duplicate", ack.Duplicate)
	return ack.Duplicate, nil
}

// jsErrStoreFailed is JetStream's error code for a refused store; with
// DiscardNewPerSubject it means the user's mailbox is full.
const jsErrStoreFailed jetstream.ErrorCode = 10077

// known reports whether user has ever signed in anywhere in the cluster.
func (m *mailbox) known(user string) (bool, error) {
	ctx, cancel := m.storeCtx()
	defer cancel()
	_, err := m.lastSeen(ctx, user)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnknownUser):
		return false, nil
	}
	return false, err
}

func (m *mailbox) lastSeen(ctx context.Context, user string) (Seen, error) {
	if err := m.connected(); err != nil {
		return Seen{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	kv, err := m.bucket(ctx)
	if err != nil {
		return Seen{}, err
	}
	e, err := kv.Get(ctx, UserToken(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Seen{}, ErrUnknownUser
	}
	if err != nil {
		return Seen{}, fmt.Errorf("%w: %v", ErrMailboxDown, err)
	}
	var w wireSeen
	if err := json.Unmarshal(e.Value(), &w); err != nil {
		return Seen{}, fmt.Errorf("switchboard: known user %s: %w", user, err)
	}
	s := Seen{Time: w.Time, Node: w.Node, State: w.State}
	if s.User, err = msp.UTF8ToLatin1(w.User); err != nil {
		return Seen{}, fmt.Errorf("switchboard: known user %s: %w", user, err)
	}
	if s.Term, err = msp.UTF8ToLatin1(w.Term); err != nil {
		return Seen{}, fmt.Errorf("switchboard: known user %s: %w", user, err)
	}
	return s, nil
}

// record queues a sign-in or sign-out record for the writer. Records are
// coalesced per user (the newest wins), so the backlog is bounded by the
// number of users this node has seen while the store was away.
func (m *mailbox) record(s Seen) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.pending[s.User] = s
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// maxRecordBatch bounds how many records one round of recordLoop writes.
const maxRecordBatch = 256

// maxRecordBackoff caps the pause between attempts while the store is away.
const maxRecordBackoff = 30 * time.Second

// recordLoop writes sign-in records to the known-users bucket. A record
// that cannot be written stays pending (unless a newer one replaced it) and
// is retried after a pause.
func (m *mailbox) recordLoop() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0) // zero while writes succeed
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-retry.C:
		}
		m.mu.Lock()
		batch := make([]Seen, 0, min(len(m.pending), maxRecordBatch))
		for _, s := range m.pending {
			if len(batch) == maxRecordBatch {
				break
			}
			batch = append(batch, s)
		}
		m.mu.Unlock()
		failed := false
		for _, s := range batch {
			if err := m.writeRecord(s); err != nil {
				lvl := slog.LevelDebug
				if backoff == 0 {
					lvl = slog.LevelWarn // once per outage
				}
				m.log.Log(m.ctx, lvl, "known-users record not written; will retry", "user", s.User, "err", err)
				failed = true
				break
			}
			if backoff != 0 {
				m.log.Info("known-users records written again")
				backoff = 0
			}
			m.mu.Lock()
			if cur, ok := m.pending[s.User]; ok && cur == s {
				delete(m.pending, s.User)
			}
			m.mu.Unlock()
		}
		m.mu.Lock()
		more, closed := len(m.pending) > 0, m.closed
		m.mu.Unlock()
		switch {
		case closed && (failed || !more):
			return // closing: what could be written is written
		case failed:
			backoff = min(max(2*backoff, time.Second), maxRecordBackoff)
			retry.Reset(backoff)
		case more:
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (m *mailbox) writeRecord(s Seen) error {
	ctx, cancel := m.storeCtx()
	defer cancel()
	kv, err := m.bucket(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(wireSeen{User: msp.Latin1ToUTF8(s.User), Time: s.Time.UTC(), Node: s.Node,
		Term: msp.Latin1ToUTF8(s.Term), State: s.State})
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, UserToken(s.User), b)
	return err
}

// settle decides what happens to a message that no terminal took: a known
// user's goes to her mailbox (policy permitting), an unknown user's is
// refused as such. Refusals (busy, blocked) are the recipient's decision
// and stay refusals; so do addresses that matched nothing for other
// reasons (no such terminal, no console, bad address). o is updated in
// place.
func (m *mailbox) settle(d *Delivery, o *Outcome) {
	user, node := SplitAddress(d.Recipient)
	if user == "" || o.Delivered() {
		return
	}
	switch {
	case o.Err != nil:
		if !errors.Is(o.Err, ErrNoSuchUser) {
			return
		}
		if node != "" && len(m.sb.dir.Lookup(user)) > 0 {
			return // pinned to a node she is not on, while she is on another
		}
		known, err := m.known(user)
		switch {
		case err != nil:
			if m.cfg.Offline == OfflineQueue {
				o.Mailbox = &MailboxResult{User: presence.CanonicalUser(user), Err: err}
			}
			return
		case !known:
			o.Err = ErrUnknownUser
			return
		}
		user = presence.CanonicalUser(user)
	default:
		for _, r := range o.Results {
			if r.Status != Failed {
				return
			}
		}
		if len(o.Results) == 0 {
			return
		}
		user = o.Results[0].User // aliases resolve to the terminal's owner
	}
	if m.cfg.Offline != OfflineQueue {
		return
	}
	dup, err := m.put(d, user)
	o.Mailbox = &MailboxResult{User: user, Stored: err == nil, Duplicate: dup, Err: err}
	if err != nil {
		m.log.Warn("message not queued", "user", user, "id", d.ID, "err", err)
	}
}

// LastSeen returns what the known-users bucket says about user: when and
// where she last signed in or out. It returns ErrUnknownUser for a user
// never seen, an error wrapping ErrMailboxDown when the store cannot be
// asked, and ErrMailboxDown itself without a mailbox.
func (s *Switchboard) LastSeen(ctx context.Context, user string) (Seen, error) {
	if s.mbox == nil {
		return Seen{}, ErrMailboxDown
	}
	return s.mbox.lastSeen(ctx, user)
}
