// Package node wires one msprelay node together: the MSP server on port 18,
// the session listeners, the presence directory, the switchboard, the
// mailbox and the NATS connection (an embedded nats-server by default, or
// external relays).
//
// A Node owns every component it builds: Start binds and starts them, Run
// blocks until its context ends, Close stops them in reverse order and waits.
// The components share one lifecycle shape: New validates and starts
// nothing; Start returns once bound (presence.Directory, switchboard,
// mailbox, broker); Close is idempotent and waits for their goroutines. The
// MSP and session servers keep the net/http shape (Serve blocks on a
// listener the node binds, Shutdown drains).
//
// Errors about one setting are *FieldError values naming the Config field
// (never a command-line flag): New refuses a value (matching ErrConfig),
// Start cannot bind an address or socket path. cmd/node restates them in
// terms of its flags.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/sessionsock"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/msprelay/msprelay/terminal"
)

// Session authentication modes for the TCP session listener.
const (
	AuthTrust  = "trust"  // believe the claimed name: trusted networks and tests only
	AuthSecret = "secret" // per-user shared secrets, challenge-response
)

// DefaultDeliverTimeout bounds one delivery when Config.DeliverTimeout is zero.
const DefaultDeliverTimeout = 3 * time.Second

// Config is everything a node needs. DefaultConfig fills the defaults; the
// components' own defaults apply to fields left zero, except where a field
// says otherwise.
type Config struct {
	// Name is the node's name in the cluster (letters, digits, '-', '_').
	Name string
	// Logger receives all logs; nil means slog.Default().
	Logger *slog.Logger

	// MSPAddr is the MSP listen address, TCP and UDP on one port (":18").
	// Empty disables MSP (useful only in tests).
	MSPAddr string
	// MSPIdleTimeout closes TCP connections idle between messages.
	MSPIdleTimeout time.Duration
	// MSPReadTimeout bounds how long one message may take to arrive.
	MSPReadTimeout time.Duration
	// MSPMaxConns caps concurrent TCP connections (idle ones are evicted first).
	MSPMaxConns int
	// DedupWindow is how long the node treats a message as a repeat, in
	// the three places that look for repeats: the MSP server remembers a
	// UDP (address, port, cookie) this long, the switchboard remembers the
	// ids it delivered to each user this long, and the mailbox stream
	// stores a message id once within this window (capped at MailboxAge).
	// Zero means each component's default.
	DedupWindow time.Duration
	// StripControl strips forbidden octets from messages instead of rejecting them.
	StripControl bool
	// RequireSender rejects messages with an empty SENDER.
	RequireSender bool
	// DeliverTimeout bounds one delivery, including forwarding to other
	// nodes. Zero means DefaultDeliverTimeout.
	DeliverTimeout time.Duration
	// AckTimeout bounds how long a delivery waits for an acknowledging
	// session client before the message goes back to the mailbox. Zero
	// means DeliverTimeout/2.
	AckTimeout time.Duration

	// Offline is what happens to a message for a known user that no
	// terminal took: "queue" (store it in her mailbox) or "refuse".
	Offline string
	// MailboxMax caps each user's mailbox; a full one refuses new messages.
	MailboxMax int
	// MailboxAge is how long a queued message waits before it expires.
	MailboxAge time.Duration
	// MailboxReplicas is the replication factor of the mailbox stream and
	// the known-users bucket: 1, or 3 with a three-relay cluster.
	MailboxReplicas int
	// MailboxAckWait is how long a message handed to a node draining a
	// mailbox may stay unsettled before another node gets it (that node
	// died). Zero means mailbox.DefaultAckWait.
	MailboxAckWait time.Duration
	// MailboxSenderMax is each sender's share of a user's mailbox (issue
	// 12: one sender must not fill it and lock others out); at most
	// MailboxMax. Zero means mailbox.DefaultMaxPerSender, negative no
	// share.
	MailboxSenderMax int
	// MailboxMaxBytes caps the whole mailbox stream; a stream at its cap
	// refuses new messages. Zero means mailbox.DefaultMaxBytes, negative
	// no cap.
	MailboxMaxBytes int64

	// SessionSocket is the Unix socket for local session clients ("" = off).
	// Peer credentials authenticate them.
	SessionSocket string
	// SessionAddr is the TCP session listener ("" = off).
	SessionAddr string
	// SessionAuth is AuthTrust or AuthSecret for SessionAddr.
	SessionAuth string
	// SessionSecrets is the "user secret" file for AuthSecret.
	SessionSecrets string
	// SessionIdleTimeout ends sessions that send nothing (not even PNG).
	SessionIdleTimeout time.Duration
	// MaxSessions caps concurrent sessions per kind of listener (Unix
	// socket, TCP), so that network strangers cannot lock local users
	// out; a session past it is refused with error 600.
	MaxSessions int

	// DataDir holds the embedded NATS/JetStream store.
	DataDir string

	// GossipAddr is the memberlist bind address ("" = single node, no gossip).
	GossipAddr string
	// GossipAdvertise is the address peers should use, if not GossipAddr.
	GossipAdvertise string
	// Join lists seed nodes' gossip addresses.
	Join []string
	// GossipProfile is "lan", "wan" or "local".
	GossipProfile string
	// GossipKeyFile holds the AES key (16, 24 or 32 bytes, raw or base64).
	GossipKeyFile string

	// NATSURLs are external relays; empty means run an embedded nats-server.
	NATSURLs []string
	// NATSListen exposes the embedded nats-server on a client port so that
	// other nodes can use it as their relay ("" = in-process only).
	NATSListen string
	// NATSCreds: user/password or token for external relays or NATSListen.
	NATSUser, NATSPassword, NATSToken string

	// Now is the clock of the switchboard's sign-in and activity stamps;
	// nil means time.Now. Tests step one instead of sleeping.
	Now func() time.Time

	// Abuse limits (docs/SECURITY.md). For each, zero means the package
	// default and negative turns the limit off.

	// MSPMaxConnsPerIP caps one source's (IPv4 address or IPv6 /64) MSP
	// TCP connections.
	MSPMaxConnsPerIP int
	// MSPRatePerIP is the sustained MSP messages a second one source may
	// send, TCP and UDP together; MSPRateBurst how many at once.
	MSPRatePerIP float64
	MSPRateBurst int
	// MSPStallGrace: at MSPMaxConns, a connection whose message has been
	// under way this long is closed to admit a new one.
	MSPStallGrace time.Duration
	// MaxPendingSessions caps the session connections not signed in yet,
	// per kind of listener (Unix socket, TCP).
	MaxPendingSessions int
	// FailedSignInsPerMinute is the sustained failed session sign-ins one
	// network source may make; FailedSignInBurst how many at once.
	FailedSignInsPerMinute float64
	FailedSignInBurst      int
	// SessionAuthInsecure lets --session-auth trust accept clients from
	// non-loopback addresses (anyone who can connect is anyone).
	SessionAuthInsecure bool
	// NATSNkeyFile and NATSPasswordFile are this node's own credentials
	// from `relay gen-creds` (<node>.nk, or <node>.pass with NATSUser
	// defaulting to the node name). With either, NATS holds the node to
	// its per-node permissions, so deliveries from other nodes keep their
	// "verified" mark.
	NATSNkeyFile, NATSPasswordFile string
	// NATSAuthFile is the users file (auth.conf from `relay gen-creds`) for
	// the embedded server exposed with NATSListen.
	NATSAuthFile string
	// NATSCAFile, NATSCertFile and NATSKeyFile configure TLS to tls:// relays.
	NATSCAFile, NATSCertFile, NATSKeyFile string
	// NATSInsecure allows NATSListen on a non-loopback address without
	// credentials (logged as a warning): anyone who reaches it can read
	// every mailbox and forge deliveries.
	NATSInsecure bool
	// GossipInsecure allows gossip on a non-loopback address without
	// GossipKeyFile (logged as a warning): anyone who reaches it can join
	// and fake presence.
	GossipInsecure bool
	// Operations (node/ops.go, package ops).

	// HTTPAddr serves /metrics, /healthz, /readyz, the API and the status
	// page ("" = off). A bare port (":9180") binds to loopback.
	HTTPAddr string
	// HTTPTokenFile holds the token the API and the status page require
	// ("" = none); SIGHUP re-reads it.
	HTTPTokenFile string
	// Version is the msprelay version the node reports to `msp status`.
	Version string

	// ConversationHistory is how many messages a conversation keeps for
	// late joiners; zero means conversation.DefaultHistory (50).
	ConversationHistory int
	// ConversationIdle is how long an empty conversation lasts before it
	// expires; zero means conversation.DefaultIdle (5 min).
	ConversationIdle time.Duration
	// ConversationsPerUser caps the conversations one user has created
	// that have not expired; zero means conversation.DefaultMaxOpenPerUser
	// (16).
	ConversationsPerUser int
	// ConversationSlotsPerUser caps how many members (terminals) one user
	// may be in one conversation; zero means
	// conversation.DefaultMaxSlotsPerUser (4).
	ConversationSlotsPerUser int
	// RoomOpenBridge names the conversations whose MSP bridge ("#name")
	// takes messages from senders who are not verified members; they
	// reach the members marked unverified. Empty: every room takes MSP
	// messages only from verified members.
	RoomOpenBridge []string

	// Terminals publishes the host's logins (utmp) as tty terminals in the
	// cluster directory and delivers to them like write(1) (node/terminals.go).
	Terminals bool
	// Utmp is the utmp file read when Terminals is on.
	Utmp string
	// TTYIdle is how long a tty may see no input before it is shown idle.
	TTYIdle time.Duration
	// TTYCharset is the terminals' charset: UTF-8, ISO-8859-1 or ASCII.
	TTYCharset string
	// TTYPoll is how often utmp and the devices are scanned; zero means 1s.
	TTYPoll time.Duration
	// TTYDevDir is where the devices utmp names live; "" means /dev.
	TTYDevDir string

	// Names and inbound limits (issue 12; docs/SECURITY.md).

	// ConsoleGroup is the host group whose members may sign in at terminal
	// "console" besides root ("" = root only).
	ConsoleGroup string
	// SessionInboundRate is how many messages a second one signed-in
	// terminal takes live, sustained, and SessionInboundBurst how many at
	// once; the excess goes to the user's mailbox (refused without one).
	// Zero means the switchboard's default, a negative rate no limit.
	SessionInboundRate  float64
	SessionInboundBurst int
}

// DefaultConfig returns the defaults for a node named after this host.
func DefaultConfig() Config {
	return Config{
		Name:               DefaultName(),
		MSPAddr:            ":18",
		MSPIdleTimeout:     msp.DefaultIdleTimeout,
		MSPReadTimeout:     msp.DefaultReadTimeout,
		MSPMaxConns:        msp.DefaultMaxConns,
		DedupWindow:        msp.DefaultDedupWindow,
		DeliverTimeout:     DefaultDeliverTimeout,
		Offline:            string(switchboard.OfflineQueue),
		MailboxMax:         mailbox.DefaultMaxPerUser,
		MailboxAge:         mailbox.DefaultMaxAge,
		MailboxReplicas:    mailbox.DefaultReplicas,
		MailboxAckWait:     mailbox.DefaultAckWait,
		MailboxSenderMax:   mailbox.DefaultMaxPerSender,
		MailboxMaxBytes:    mailbox.DefaultMaxBytes,
		SessionSocket:      sessionsock.DefaultSocketPath(),
		SessionAuth:        AuthSecret,
		SessionIdleTimeout: session.DefaultIdleTimeout,
		MaxSessions:        session.DefaultMaxSessions,
		DataDir:            DefaultDataDir(),
		GossipProfile:      presence.DefaultProfile,

		MSPMaxConnsPerIP:       msp.DefaultMaxConnsPerIP,
		MSPRatePerIP:           msp.DefaultRatePerIP,
		MSPRateBurst:           msp.DefaultRateBurst,
		MSPStallGrace:          msp.DefaultStallGrace,
		MaxPendingSessions:     session.DefaultMaxPending,
		FailedSignInsPerMinute: session.DefaultFailedSignInRate * 60,
		FailedSignInBurst:      session.DefaultFailedSignInBurst,
		SessionInboundRate:     switchboard.DefaultInboundRate,
		SessionInboundBurst:    switchboard.DefaultInboundBurst,
		Terminals:              true,
		Utmp:                   terminal.DefaultUtmp,
		TTYIdle:                10 * time.Minute,
		TTYCharset:             terminal.UTF8.String(),
	}
}

// DefaultName is the host name up to its first dot, with characters that
// node names may not hold replaced by '-'.
func DefaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node"
	}
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) > presence.MaxNameLen {
		b = b[:presence.MaxNameLen]
	}
	return string(b)
}

// DefaultDataDir is /var/lib/msprelay for root, else the user's state dir
// ($XDG_STATE_HOME or ~/.local/state), else "" (then --data is required):
// never a shared directory such as /tmp, where another user could have
// made the path first.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/msprelay"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "msprelay")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "msprelay")
	}
	return ""
}

// ErrConfig marks a configuration New refuses.
var ErrConfig = errors.New("node: bad config")

// FieldError is a problem with one Config field: a value New refuses
// (then it matches ErrConfig) or an address or path Start cannot bind.
// Field is the Go name of the field, so that a caller with its own names
// for the settings (cmd/node's flags) can say which one to change.
type FieldError struct {
	Field string // Config field, e.g. "SessionSocket"
	Err   error  // what is wrong, without the field's name
	// Fix names the other Config fields that would settle it (a key for
	// gossip beyond loopback, say), so a caller can name them too.
	Fix []string
	// refused: New refused the value (ErrConfig), rather than Start
	// failing to use it.
	refused bool
}

func (e *FieldError) Error() string {
	if e.refused {
		return ErrConfig.Error() + ": " + e.Field + ": " + e.Err.Error()
	}
	return "node: " + e.Field + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Is makes a refused value match ErrConfig.
func (e *FieldError) Is(target error) bool { return e.refused && target == ErrConfig }

// setDefaults fills the fields the node itself uses with their defaults;
// zero fields it hands on are defaulted by their components.
func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DeliverTimeout <= 0 {
		c.DeliverTimeout = DefaultDeliverTimeout
	}
}

// loopbackListen reports whether a listen address binds loopback only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func (c *Config) validate() error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf(format, a...), refused: true}
	}
	badFix := func(field string, fix []string, format string, a ...any) error {
		return &FieldError{Field: field, Err: fmt.Errorf(format, a...), Fix: fix, refused: true}
	}
	if err := presence.ValidNode(c.Name); err != nil {
		return bad("Name", "%v", err)
	}
	for _, f := range []struct{ field, addr string }{{"MSPAddr", c.MSPAddr}, {"SessionAddr", c.SessionAddr}, {"GossipAddr", c.GossipAddr}, {"NATSListen", c.NATSListen}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return bad(f.field, "%q: %v", f.addr, err)
		}
	}
	if c.SessionAddr != "" {
		switch c.SessionAuth {
		case AuthTrust:
		case AuthSecret:
			if c.SessionSecrets == "" {
				return bad("SessionSecrets", "a secrets file is required for %s authentication", AuthSecret)
			}
		default:
			return bad("SessionAuth", "%q: want %s or %s", c.SessionAuth, AuthTrust, AuthSecret)
		}
		if c.SessionAuth == AuthTrust && !c.SessionAuthInsecure && !loopbackListen(c.SessionAddr) {
			return bad("SessionAuthInsecure", "trust authentication believes any claimed name, so it listens on loopback only: use a loopback session address, secret authentication, or allow insecure trust to accept anyone who can connect")
		}
	}
	switch c.GossipProfile {
	case "", "lan", "wan", "local":
	default:
		return bad("GossipProfile", "%q: want lan, wan or local", c.GossipProfile)
	}
	if len(c.Join) > 0 && c.GossipAddr == "" {
		return bad("Join", "seeds need a gossip address to join from")
	}
	if len(c.NATSURLs) > 0 && c.NATSListen != "" {
		return bad("NATSListen", "exposes the embedded server; it cannot be combined with external relays")
	}
	if c.GossipKeyFile == "" && !c.GossipInsecure {
		for field, a := range map[string]string{"GossipAddr": c.GossipAddr, "GossipAdvertise": c.GossipAdvertise} {
			if a != "" && !loopbackListen(a) {
				return badFix(field, []string{"GossipKeyFile", "GossipInsecure"}, "%q is not a loopback address: gossip beyond loopback needs a gossip key (or insecure gossip, on a trusted network only)", a)
			}
		}
	}
	if c.NATSAuthFile != "" && c.NATSListen == "" {
		return badFix("NATSAuthFile", []string{"NATSListen"}, "configures the exposed embedded server; it needs a NATS listen address")
	}
	if c.NATSListen != "" && c.NATSAuthFile == "" && (c.NATSNkeyFile != "" || c.NATSPasswordFile != "") {
		// Per-node credentials make this node trust other nodes' names;
		// its own server must then enforce them.
		return badFix("NATSAuthFile", []string{"NATSAuthFile"}, "an exposed embedded server with per-node credentials needs the users file they belong to")
	}
	if c.NATSAuthFile != "" && c.NATSNkeyFile == "" && c.NATSPasswordFile == "" {
		return badFix("NATSNkeyFile", []string{"NATSNkeyFile", "NATSPasswordFile"}, "a users file needs this node's own credentials too (an nkey or a password file)")
	}
	if len(c.NATSURLs) == 0 && c.DataDir == "" {
		return bad("DataDir", "required for the embedded NATS store")
	}
	if len(c.NATSURLs) == 0 {
		// A missing directory is created 0700 at start; an existing one
		// must be ours alone, or another user could swap the store.
		if _, err := os.Lstat(c.DataDir); err == nil {
			if err := sessionsock.CheckDir(c.DataDir); err != nil {
				return bad("DataDir", "%s: %v", c.DataDir, err)
			}
		}
	}
	if _, err := switchboard.ParseOfflinePolicy(c.Offline); err != nil {
		return bad("Offline", "%q: want %s or %s", c.Offline, switchboard.OfflineQueue, switchboard.OfflineRefuse)
	}
	for _, f := range []struct {
		field string
		neg   bool
	}{{"MailboxMax", c.MailboxMax < 0}, {"MailboxAge", c.MailboxAge < 0}, {"MailboxAckWait", c.MailboxAckWait < 0}, {"AckTimeout", c.AckTimeout < 0}} {
		if f.neg {
			return bad(f.field, "must not be negative")
		}
	}
	if c.MailboxReplicas < 0 || c.MailboxReplicas > mailbox.MaxReplicas {
		return bad("MailboxReplicas", "%d: want 1 to %d", c.MailboxReplicas, mailbox.MaxReplicas)
	}
	if c.SessionInboundBurst < 0 {
		return bad("SessionInboundBurst", "must not be negative")
	}
	if _, err := consoleAllowed(c.ConsoleGroup); err != nil {
		return bad("ConsoleGroup", "%v", err)
	}
	if err := c.validateTerminals(); err != nil {
		return err
	}
	if c.AckTimeout >= c.DeliverTimeout {
		return bad("AckTimeout", "%v must be shorter than the delivery timeout %v", c.AckTimeout, c.DeliverTimeout)
	}
	return c.validateOps()
}
