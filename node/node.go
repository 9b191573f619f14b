package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/sockowner"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/msprelay/msprelay/terminal"
)

// Node is one msprelay node.
//
// Start builds and starts every component and binds every listener; Run
// blocks until its context ends and then closes the node; Close stops the
// components in reverse order (MSP first, so in-flight replies finish while
// delivery still works; NATS last) and waits for every goroutine the node
// started. Close is idempotent.
type Node struct {
	cfg Config
	// log names the node (node=Name) once; each component gets it with
	// its own component=... added here, never by the component itself
	// (docs/ARCHITECTURE.md, Logging).
	log *slog.Logger

	// Set by Start, read-only after it returns.
	broker *broker.Broker // nil with external relays
	nc     *nats.Conn
	dir    *presence.Directory
	mbox   *mailbox.Mailbox
	sb     *switchboard.Switchboard
	sess   *session.Server
	conv   *conversation.Manager // nil when JetStream is unavailable
	mspSrv *msp.Server
	sigs   signatures // the secrets store and MSP SIGNATURE checks; see signature.go
	addrs  Addrs
	ops    *nodeOps            // metrics, probes, HTTP endpoint, reload: ops*.go
	terms  *terminal.Service   // nil with Terminals off
	owners *sockowner.Resolver // who owns a local sender's socket; set by New, closed by Close
	lock   *broker.DirLock     // the data directory's lock; nil with external relays
	claim  *nameClaim          // the node name's claim on this host; nil when taken

	// gossipTune, set by internal tests between New and Start, adjusts
	// memberlist's configuration (presence.GossipConfig.Tune): a
	// transport that can be muted simulates a killed node.
	gossipTune func(*memberlist.Config)

	fatal     chan error      // first fatal component error (cap 1)
	runCtx    context.Context // cancelled by Close; parent of component Run calls
	cancelRun context.CancelFunc
	wg        sync.WaitGroup // component goroutines started by Start

	// mu guards started, ready and closed.
	mu      sync.Mutex
	started bool
	ready   bool // Start succeeded: Close then logs "node stopped"
	closed  bool
}

// Addrs are the addresses a started node is bound to.
type Addrs struct {
	MSP           string // host:port, TCP and UDP
	Session       string // TCP session listener, "" when off
	SessionSocket string // Unix session socket path, "" when off
	Gossip        string // memberlist address, "" when not gossiping
	NATS          string // client URL of the embedded server when exposed
}

// New validates cfg. It starts nothing.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: withNames(cfg.Logger).With("node", cfg.Name), fatal: make(chan error, 1)}
	n.owners = sockowner.New(sockowner.Config{Logger: n.log.With("component", "sockowner")})
	n.ops = newNodeOps(n)
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addrs returns the bound addresses; valid after Start.
func (n *Node) Addrs() Addrs { return n.addrs }

// Directory returns the presence directory; valid after Start.
func (n *Node) Directory() *presence.Directory { return n.dir }

// Switchboard returns the switchboard; valid after Start.
func (n *Node) Switchboard() *switchboard.Switchboard { return n.sb }

// Run starts the node, serves until ctx ends or a component fails, then
// closes it.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		return err
	}
	return n.Serve(ctx)
}

// Start brings the node up: NATS, presence (joining the cluster), the
// switchboard, the session listeners and finally MSP, so that nothing is
// accepted before it can be delivered. On error everything already started
// is stopped again.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return errors.New("node: Start called twice or after Close")
	}
	n.started = true
	n.mu.Unlock()
	n.runCtx, n.cancelRun = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := n.openSecrets(); err != nil {
		return err
	}
	claim, taken := claimName(n.cfg.Name)
	n.claim = claim
	if taken {
		n.log.Warn("another node on this host has the same name: nodes of one cluster need distinct names; give this one its own with --name",
			"name", n.cfg.Name)
	}
	if err := n.startNATS(); err != nil {
		return err
	}
	if err := n.startPresence(ctx); err != nil {
		return err
	}
	if err := n.startSwitchboard(ctx); err != nil {
		return err
	}
	if err := n.startConversations(ctx); err != nil {
		return err
	}
	if err := n.startTerminals(); err != nil {
		return err
	}
	if err := n.startSessions(); err != nil {
		return err
	}
	if err := n.startMSP(); err != nil {
		return err
	}
	if err := n.ops.startOps(); err != nil {
		return err
	}
	n.mu.Lock()
	n.ready = true
	n.mu.Unlock()
	n.log.Info("node ready", "msp", n.addrs.MSP, "session", n.addrs.Session, "session_socket", n.addrs.SessionSocket,
		"gossip", n.addrs.Gossip, "nats", n.natsDescription(), "http", n.HTTPAddr())
	return nil
}

func (n *Node) natsDescription() string {
	if n.broker == nil {
		return strings.Join(n.cfg.NATSURLs, ",")
	}
	if n.addrs.NATS != "" {
		return "embedded " + n.addrs.NATS
	}
	return "embedded (in-process)"
}

func (n *Node) startNATS() error {
	auth, err := n.clientAuth().Options()
	if err != nil {
		return fmt.Errorf("node: nats credentials: %w", err)
	}
	if len(n.cfg.NATSURLs) > 0 {
		nc, err := broker.Dial(n.cfg.NATSURLs, "msprelay-node-"+n.cfg.Name, n.log.With("component", "nats-client"), auth...)
		if err != nil {
			return fmt.Errorf("node: connect to relays: %w", err)
		}
		n.nc = nc
		return nil
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return &FieldError{Field: "DataDir", Err: err}
	}
	// Before anything opens the store: a second node on this directory
	// would corrupt it.
	lock, err := broker.LockDir(n.cfg.DataDir)
	if err != nil {
		return &FieldError{Field: "DataDir", Err: err}
	}
	n.lock = lock
	store := filepath.Join(n.cfg.DataDir, "nats")
	if err := os.MkdirAll(store, 0o700); err != nil {
		return &FieldError{Field: "DataDir", Err: err}
	}
	b, err := broker.New(broker.Config{
		Name:      n.cfg.Name,
		Logger:    embeddedNATSLogger(n.log.With("component", "nats")),
		JetStream: true,
		DataDir:   store,
		Listen:    n.cfg.NATSListen,
		User:      n.cfg.NATSUser,
		Password:  n.cfg.NATSPassword,
		Token:     n.cfg.NATSToken,
		// The users file also holds the listen setting's counterpart:
		// nothing but authorization, so Listen above still decides.
		ConfigFile: n.cfg.NATSAuthFile,
		Insecure:   n.cfg.NATSInsecure,
	})
	if err != nil {
		return fmt.Errorf("node: embedded nats: %w", err)
	}
	n.broker = b
	if err := b.Start(); err != nil {
		return fmt.Errorf("node: embedded nats: %w", err)
	}
	n.addrs.NATS = b.ClientURL()
	// In process, our own user matters only when the users file is loaded;
	// otherwise Connect sends the shared credentials the server was given.
	inProc := []nats.Option{nats.CustomInboxPrefix(broker.InboxPrefix(n.cfg.Name))}
	if n.cfg.NATSAuthFile != "" {
		inProc = auth
	}
	nc, err := b.Connect(inProc...)
	if err != nil {
		return fmt.Errorf("node: embedded nats: %w", err)
	}
	n.nc = nc
	return nil
}

// clientAuth is how this node authenticates to NATS, in-process or remote.
func (n *Node) clientAuth() broker.ClientAuth {
	a := broker.ClientAuth{
		Node: n.cfg.Name, NkeyFile: n.cfg.NATSNkeyFile, PasswordFile: n.cfg.NATSPasswordFile,
		User: n.cfg.NATSUser, CAFile: n.cfg.NATSCAFile, CertFile: n.cfg.NATSCertFile, KeyFile: n.cfg.NATSKeyFile,
	}
	if a.PasswordFile == "" {
		a.Password, a.Token = n.cfg.NATSPassword, n.cfg.NATSToken
	}
	return a
}

func (n *Node) startPresence(ctx context.Context) error {
	g := presence.GossipConfig{
		BindAddr:      n.cfg.GossipAddr,
		AdvertiseAddr: n.cfg.GossipAdvertise,
		Join:          n.cfg.Join,
		Profile:       n.cfg.GossipProfile,
		// A member that has lost its NATS connection and misses a ping
		// is dropped at once rather than after memberlist's 5-20 s
		// (issue 22; presence/confirm.go). NATS is up before presence.
		Confirm: n.confirmGone,
		Tune:    n.gossipTune,
	}
	if n.cfg.GossipKeyFile == "" && n.cfg.GossipAddr != "" && (!loopbackListen(n.cfg.GossipAddr) || n.cfg.GossipAdvertise != "" && !loopbackListen(n.cfg.GossipAdvertise)) {
		n.log.Warn("INSECURE: gossip without --gossip-key (--gossip-insecure): anyone who reaches the gossip port can join and fake presence",
			"gossip", n.cfg.GossipAddr)
	}
	if n.cfg.GossipKeyFile != "" {
		keys, err := readGossipKeys(n.cfg.GossipKeyFile)
		if err != nil {
			return err
		}
		g.SecretKey = keys[0]
	}
	dir, err := presence.New(presence.Config{Name: n.cfg.Name, Logger: n.log.With("component", "presence"), Gossip: g})
	if err != nil {
		return fmt.Errorf("node: presence: %w", err)
	}
	n.dir = dir
	if err := dir.Start(ctx); err != nil {
		return &FieldError{Field: "GossipAddr", Err: fmt.Errorf("presence: %w", err)}
	}
	n.addrs.Gossip = dir.GossipAddr()
	// Run reports a name conflict found while joining, or later, which
	// must bring the whole node down rather than leave it half in the
	// cluster.
	n.wg.Go(func() {
		if err := dir.Run(n.runCtx); err != nil {
			n.fail(fmt.Errorf("node: presence: %w", err))
		}
	})
	return nil
}

// fail records the first fatal error of a running component; Run returns it.
func (n *Node) fail(err error) {
	n.log.Error("component failed", "err", err)
	select {
	case n.fatal <- err:
	default:
	}
}

// readKey reads a gossip key file: base64 text of a 16, 24 or 32 byte key
// (what `openssl rand -base64 32` writes), or the raw key bytes. Text that
// decodes as base64 to a valid length is taken as base64, so the two forms
// cannot be confused.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: gossip key: %w", err)
	}
	valid := func(n int) bool { return n == 16 || n == 24 || n == 32 }
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err == nil && valid(len(k)) {
		return k, nil
	}
	if valid(len(b)) {
		return b, nil
	}
	return nil, fmt.Errorf("node: gossip key %s: want 16, 24 or 32 bytes, raw or base64 (got %d bytes)", path, len(b))
}

// startSwitchboard builds the mailbox and the switchboard, which share
// the NATS connection: the switchboard routes, the mailbox stores.
func (n *Node) startSwitchboard(ctx context.Context) error {
	mb, err := mailbox.New(mailbox.Config{
		NATS:            n.nc,
		Logger:          n.log.With("component", "mailbox"),
		MaxPerUser:      n.cfg.MailboxMax,
		MaxAge:          n.cfg.MailboxAge,
		Replicas:        n.cfg.MailboxReplicas,
		DuplicateWindow: n.cfg.DedupWindow,
		AckWait:         n.cfg.MailboxAckWait,
		SweepEvery:      n.cfg.MailboxSweep,
		MaxPerSender:    n.cfg.MailboxSenderMax,
		MaxBytes:        n.cfg.MailboxMaxBytes,
		Node:            n.dir.Name(),
		// Per-node credentials mean the relays bind mailbox subjects to
		// the storing node too (broker.NodePermissions).
		PeersAuthenticated: n.clientAuth().PerNode(),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.mbox = mb
	console, err := consoleAllowed(n.cfg.ConsoleGroup)
	if err != nil {
		return &FieldError{Field: "ConsoleGroup", Err: err}
	}
	sb, err := switchboard.New(switchboard.Config{
		Node:           n.dir.Name(),
		Directory:      n.dir,
		Logger:         n.log.With("component", "switchboard"),
		Observer:       n.ops.observe,
		NATS:           n.nc,
		ForwardTimeout: n.cfg.DeliverTimeout,
		AckTimeout:     n.cfg.AckTimeout,
		DedupWindow:    n.cfg.DedupWindow,
		Mailbox:        mb,
		Offline:        switchboard.OfflinePolicy(n.cfg.Offline),
		Now:            n.cfg.Now,
		// Per-node credentials mean the relays enforce per-node subjects.
		PeersAuthenticated: n.clientAuth().PerNode(),
		ConsoleAllowed:     console,
		InboundRate:        n.cfg.SessionInboundRate,
		InboundBurst:       n.cfg.SessionInboundBurst,
		Rooms:              rooms{n}, // "#name" recipients (conversations.go)
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.sb = sb
	if err := mb.Start(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := sb.Start(ctx); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.wg.Go(func() { watchMembers(n.runCtx, n.dir, mb.Sweep, memberWatchEvery) })
	return nil
}

// blockStore is where users' block lists last (msp block): the mailbox's
// bucket, or none without a mailbox.
func (n *Node) blockStore() session.BlockStore {
	if n.mbox == nil {
		return nil
	}
	return n.mbox.Blocks()
}

func (n *Node) startSessions() error {
	if n.cfg.SessionSocket == "" && n.cfg.SessionAddr == "" {
		return nil
	}
	srv, err := session.New(session.Config{
		Node:        n.dir.Name(),
		Switchboard: n.sb,
		Directory:   n.dir,
		Logger:      n.log.With("component", "session"),
		IdleTimeout: n.cfg.SessionIdleTimeout,
		MaxSessions: n.cfg.MaxSessions,
		MaxPending:  n.cfg.MaxPendingSessions,
		AckWindow:   n.cfg.SessionAckWindow,

		FailedSignInRate:  n.cfg.FailedSignInsPerMinute / 60,
		FailedSignInBurst: n.cfg.FailedSignInBurst,
		Conversations:     n.conv,
		Identify:          n.identify,
		Blocks:            n.blockStore(),
	})
	if err != nil {
		return fmt.Errorf("node: sessions: %w", err)
	}
	n.sess = srv
	if p := n.cfg.SessionSocket; p != "" {
		// ListenUnix creates and checks the socket's directory itself.
		l, err := session.ListenUnix(p)
		if err != nil {
			return &FieldError{Field: "SessionSocket", Err: err}
		}
		n.addrs.SessionSocket = p
		auth := n.ops.countAuth("peercred", session.PeerCred{})
		n.serve("session socket", func() error { return srv.Serve(l, auth) })
	}
	if a := n.cfg.SessionAddr; a != "" {
		var auth session.Authenticator = session.Trust{Insecure: n.cfg.SessionAuthInsecure}
		if n.cfg.SessionAuth == AuthSecret {
			// validate requires SessionSecrets here, so openSecrets
			// opened the store; Reload refreshes it for both users.
			auth = session.NewSecretAuth(n.sigs.store)
		}
		auth = n.ops.countAuth(n.cfg.SessionAuth, auth)
		l, err := net.Listen("tcp", a)
		if err != nil {
			return &FieldError{Field: "SessionAddr", Err: err}
		}
		n.addrs.Session = l.Addr().String()
		n.serve("session tcp", func() error { return srv.Serve(l, auth) })
	}
	return nil
}

func (n *Node) startMSP() error {
	if n.cfg.MSPAddr == "" {
		return nil
	}
	l, pc, err := msp.Listen(n.cfg.MSPAddr)
	if err != nil {
		// The socket's own error says "listen tcp ADDR" once; msp.Listen's
		// wrapping says it again.
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe
		}
		return &FieldError{Field: "MSPAddr", Err: err}
	}
	n.mspSrv = &msp.Server{
		Handler:       msp.HandlerFunc(n.serveMSP),
		Logger:        n.log.With("component", "msp"),
		ReadTimeout:   n.cfg.MSPReadTimeout,
		IdleTimeout:   n.cfg.MSPIdleTimeout,
		MaxConns:      n.cfg.MSPMaxConns,
		DedupWindow:   n.cfg.DedupWindow,
		StripControl:  n.cfg.StripControl,
		RequireSender: n.cfg.RequireSender,
		MaxConnsPerIP: n.cfg.MSPMaxConnsPerIP,
		RatePerIP:     n.cfg.MSPRatePerIP,
		RateBurst:     n.cfg.MSPRateBurst,
		StallGrace:    n.cfg.MSPStallGrace,
		Identify:      n.identify,
	}
	n.addrs.MSP = l.Addr().String()
	n.serve("msp tcp", func() error { return n.mspSrv.Serve(l) })
	n.serve("msp udp", func() error { return n.mspSrv.ServePacket(pc) })
	return nil
}

// identify is the MSP and session servers' Identify: the kernel's word on
// which local account owns a sender's socket.
func (n *Node) identify(network string, local, remote netip.AddrPort) msp.Peer {
	return msp.Peer(n.owners.Lookup(network, local, remote))
}

// serve runs a blocking Serve call in a goroutine the node owns; its
// ErrServerClosed at shutdown is expected.
func (n *Node) serve(what string, f func() error) {
	n.wg.Go(func() {
		if err := f(); err != nil && !errors.Is(err, msp.ErrServerClosed) && !errors.Is(err, session.ErrServerClosed) {
			n.log.Error("listener stopped", "listener", what, "err", err)
		}
	})
}

// idAddr is the source address that takes part in a message's id. RFC
// 1312 identifies a UDP message by (address, port, cookie). Over TCP a
// sender that did not get its reply sends the message again on a new
// connection, from a new port (msp.Client.Send promises that this is a
// retransmission), so only the host takes part. Two different messages
// still never share an id: Send completes it with recipient, terminal and
// text (switchboard.MessageKey), which is what sets them apart.
func idAddr(network, src string) string {
	if host, _, err := net.SplitHostPort(src); err == nil && network == "tcp" {
		return host
	}
	return src
}

// serveMSP turns one MSP message into a delivery and answers with the outcome.
func (n *Node) serveMSP(w msp.ResponseWriter, m *msp.Message) {
	// No deadline context per message (a timer each): every step that
	// waits has its own bound (the terminal's AckTimeout, ForwardTimeout,
	// StoreTimeout), and the switchboard keeps the right-terminal fallback
	// within ForwardTimeout.
	ctx := w.Context()
	src := w.RemoteAddrString()
	verified, err := n.sigs.check(m)
	if err != nil {
		_ = w.Nack(signatureRefusal(err))
		return
	}
	d := &switchboard.Delivery{
		ID:         switchboard.FullMessageKey(m.Sender, m.SenderTerm, m.Cookie, idOrigin(verified, w.Network(), src), m.Recipient, m.RecipTerm, m.Text),
		Recipient:  m.Recipient,
		RecipTerm:  m.RecipTerm,
		Sender:     m.Sender,
		SenderTerm: m.SenderTerm,
		Text:       m.Text,
		Cookie:     m.Cookie,
		Signature:  m.Signature,
		Origin: switchboard.Origin{Node: n.cfg.Name, Addr: src, Transport: w.Network(), Revision: revision(m.Version),
			Sender: n.senderIdentity(w, m, src, verified)},
		Time: time.Now(),
	}
	if ord, ok := w.(switchboard.Orderer); ok {
		// A pipelined TCP message: once it is queued for its terminal, the
		// connection's next message for the same recipient may go ahead
		// while this one waits for the client's acknowledgement.
		d.Ordered = ord
	}
	o := n.sb.Send(ctx, d)
	if o.Delivered() {
		_ = w.Ack(o.Summary())
		return
	}
	_ = w.Nack(o.Summary())
}

// Close shuts the node down: MSP stops accepting and finishes in-flight
// replies, sessions are told OUT SSD and closed, the node leaves the gossip
// cluster, and NATS closes last. It is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.ops.closeOps()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if n.mspSrv != nil {
		if err := n.mspSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("msp shutdown: %w", err))
		}
	}
	if n.sess != nil {
		if err := n.sess.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("session shutdown: %w", err))
		}
	}
	if n.terms != nil {
		n.terms.Close()
	}
	n.closeConversations()
	if n.sb != nil {
		n.sb.Close() // signs lines out, telling the mailbox
	}
	if n.mbox != nil {
		n.mbox.Close() // writes those sign-out records, stops the drainers
	}
	if n.dir != nil {
		if err := n.dir.Close(); err != nil {
			errs = append(errs, fmt.Errorf("presence close: %w", err))
		}
	}
	if n.cancelRun != nil {
		n.cancelRun()
	}
	n.wg.Wait()
	n.owners.Close() // after the MSP and session servers, which ask it
	if n.nc != nil {
		n.nc.Close()
	}
	if n.broker != nil {
		if err := n.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("nats close: %w", err))
		}
	}
	n.lock.Release() // the store is closed
	n.claim.release()
	if p := n.addrs.SessionSocket; p != "" {
		_ = os.Remove(p)
	}
	n.mu.Lock()
	ready := n.ready
	n.mu.Unlock()
	if ready {
		// A node that never became ready did not start, so it does not
		// stop either: its caller reports why it failed.
		n.log.Info("node stopped")
	}
	return errors.Join(errs...)
}

// revision names the MSP revision a message came in, as Origin.Revision
// carries it.
func revision(v byte) string {
	if v == msp.Version1 {
		return "A"
	}
	return "B"
}

// senderIdentity establishes, once, who sent an MSP message: the SENDER
// when its signature verified (signed; Signature), else the local account
// owning the sending socket when the kernel named it (Kernel; a SENDER
// naming someone else stays that claim, shown with the real user), else
// nobody (None: the SENDER is only a claim).
func (n *Node) senderIdentity(w msp.ResponseWriter, m *msp.Message, src string, signed bool) identity.Identity {
	id := identity.Identity{Claimed: m.Sender, Node: n.cfg.Name, Source: src}
	switch p := w.Peer(); {
	case signed:
		// A valid signature proves the claimed SENDER itself, which the
		// kernel's word on the socket cannot: a signing script run by
		// another local account is still the signer's message.
		id.Method, id.User = identity.Signature, m.Sender
	case p.Known && p.User != "":
		id.Method, id.User = identity.Kernel, p.User
	}
	return id
}
