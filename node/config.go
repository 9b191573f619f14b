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
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
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

// Config is everything a node needs. DefaultConfig fills the defaults.
// One rule holds for every number: zero means its default (DefaultConfig's
// value); a negative value turns the setting off only where the field says
// "negative: off"; any other value out of range is refused by New with a
// FieldError naming the field and the valid range (see Ranges), never
// rewritten.
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
	DedupWindow time.Duration
	// StripControl strips forbidden octets from messages instead of rejecting them.
	StripControl bool
	// RequireSender rejects messages with an empty SENDER.
	RequireSender bool
	// DeliverTimeout bounds one delivery, including forwarding to other
	// nodes.
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
	// MailboxReplicas is the replication factor of the mailbox stream, its
	// buckets (known users, blocks) and the conversation stream
	// and bucket: 1, or 3 with a three-relay cluster or three sites.
	MailboxReplicas int
	// MailboxAckWait is how long a message handed to a node draining a
	// mailbox may stay unsettled before another node gets it (that node
	// died).
	MailboxAckWait time.Duration
	// MailboxSweep is how often the node looks for mail stored for its
	// signed-in users whose notice it did not hear (its site was cut off
	// from the storing one): one stream-info request per sweep, then a
	// look by each local user with mail. Sweeps also follow store errors
	// and gossip members coming back. Negative: no periodic sweep (off).
	MailboxSweep time.Duration
	// MailboxSenderMax is each sender's share of a user's mailbox (one
	// sender must not fill it and lock others out); capped at MailboxMax.
	// Negative: no share (off).
	MailboxSenderMax int
	// MailboxMaxBytes caps the whole mailbox stream; a stream at its cap
	// refuses new messages. Negative: no cap (off).
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

	// Abuse limits (docs/SECURITY.md). Zero means the default; a negative
	// value turns off only the limits whose doc says so.

	// MSPMaxConnsPerIP caps one source's (IPv4 address or IPv6 /64) MSP
	// TCP connections; negative: off.
	MSPMaxConnsPerIP int
	// MSPRatePerIP is the sustained MSP messages a second one source may
	// send, TCP and UDP together (negative: off); MSPRateBurst how many
	// at once.
	MSPRatePerIP float64
	MSPRateBurst int
	// MSPStallGrace: at MSPMaxConns, a connection whose message has been
	// under way this long is closed to admit a new one; negative: never.
	MSPStallGrace time.Duration
	// MaxPendingSessions caps the session connections not signed in yet,
	// per kind of listener (Unix socket, TCP).
	MaxPendingSessions int
	// FailedSignInsPerMinute is the sustained failed session sign-ins one
	// network source may make (negative: off); FailedSignInBurst how many
	// at once.
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
	// late joiners.
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
	// TTYPoll is how often utmp and the devices are scanned.
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
	// A negative rate: no limit (off).
	SessionInboundRate  float64
	SessionInboundBurst int
	// SessionAckWindow is how many messages one acknowledging session
	// (msp listen) may have pushed and not yet acknowledged: they go out
	// in order without waiting for each other's ACK; past it a message is
	// refused as "terminal not reading" and goes to the mailbox (issue 21).
	SessionAckWindow int
}

// DefaultConfig returns the defaults for a node named after this host,
// composed from the components' own DefaultConfig: the node holds no
// default of a component's setting itself, so the two cannot drift apart.
func DefaultConfig() Config {
	ms := msp.DefaultServer()
	ss := session.DefaultConfig()
	sb := switchboard.DefaultConfig()
	mb := mailbox.DefaultConfig()
	pr := presence.DefaultConfig()
	cv := conversation.DefaultConfig()
	tm := terminal.DefaultConfig()
	return Config{
		Name:               DefaultName(),
		MSPAddr:            ms.Addr,
		MSPIdleTimeout:     ms.IdleTimeout,
		MSPReadTimeout:     ms.ReadTimeout,
		MSPMaxConns:        ms.MaxConns,
		DedupWindow:        ms.DedupWindow,
		DeliverTimeout:     DefaultDeliverTimeout,
		Offline:            string(sb.Offline),
		MailboxMax:         mb.MaxPerUser,
		MailboxAge:         mb.MaxAge,
		MailboxReplicas:    mb.Replicas,
		MailboxAckWait:     mb.AckWait,
		MailboxSweep:       mb.SweepEvery,
		MailboxSenderMax:   mb.MaxPerSender,
		MailboxMaxBytes:    mb.MaxBytes,
		SessionSocket:      sessionsock.DefaultSocketPath(),
		SessionAuth:        AuthSecret,
		SessionIdleTimeout: ss.IdleTimeout,
		MaxSessions:        ss.MaxSessions,
		DataDir:            DefaultDataDir(),
		GossipProfile:      pr.Gossip.Profile,

		MSPMaxConnsPerIP:         ms.MaxConnsPerIP,
		MSPRatePerIP:             ms.RatePerIP,
		MSPRateBurst:             ms.RateBurst,
		MSPStallGrace:            ms.StallGrace,
		MaxPendingSessions:       ss.MaxPending,
		FailedSignInsPerMinute:   ss.FailedSignInRate * 60,
		FailedSignInBurst:        ss.FailedSignInBurst,
		SessionInboundRate:       sb.InboundRate,
		SessionInboundBurst:      sb.InboundBurst,
		SessionAckWindow:         ss.AckWindow,
		ConversationHistory:      cv.History,
		ConversationIdle:         cv.Idle,
		ConversationsPerUser:     cv.MaxOpenPerUser,
		ConversationSlotsPerUser: cv.MaxSlotsPerUser,
		Terminals:                DefaultTerminals,
		Utmp:                     tm.Utmp,
		TTYIdle:                  tm.Idle,
		TTYCharset:               tm.Charset.String(),
		TTYPoll:                  tm.Poll,
		TTYDevDir:                tm.DevDir,
	}
}

// DefaultTerminals: a node publishes the host's logins unless told not to,
// so that a message reaches a user at her shell as write(1)'s would.
const DefaultTerminals = true

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
	if len(b) > principal.MaxNameLen {
		b = b[:principal.MaxNameLen]
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

// setDefaults fills every zero number of c with its default from
// DefaultConfig (zero means the default, for every field), and the
// Logger. AckTimeout stays zero: its default is half of DeliverTimeout,
// which the switchboard derives.
func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := DefaultConfig()
	for _, r := range c.numbers() {
		r.setDefault(&def)
	}
}

// number is the contract of one numeric Config field: zero means its
// default; a negative value turns the setting off only where the field's
// doc says so (off); anything else below min or above max is refused with
// a FieldError naming the field and the valid range, never rewritten.
type number struct {
	field string
	p     any // *int, *int64, *float64 or *time.Duration: the field in c
	min   float64
	max   float64 // 0: no upper bound
	off   bool    // a negative value turns it off
}

// numbers lists c's numeric fields with their ranges.
func (c *Config) numbers() []number {
	return []number{
		{field: "MSPIdleTimeout", p: &c.MSPIdleTimeout, min: 0},
		{field: "MSPReadTimeout", p: &c.MSPReadTimeout, min: 0},
		{field: "MSPMaxConns", p: &c.MSPMaxConns, min: 1},
		{field: "DedupWindow", p: &c.DedupWindow, min: 0},
		{field: "DeliverTimeout", p: &c.DeliverTimeout, min: 0},
		{field: "AckTimeout", p: &c.AckTimeout, min: 0},
		{field: "MailboxMax", p: &c.MailboxMax, min: 1},
		{field: "MailboxAge", p: &c.MailboxAge, min: 0},
		{field: "MailboxReplicas", p: &c.MailboxReplicas, min: 1, max: mailbox.MaxReplicas},
		{field: "MailboxAckWait", p: &c.MailboxAckWait, min: 0},
		{field: "MailboxSweep", p: &c.MailboxSweep, min: 0, off: true},
		{field: "MailboxSenderMax", p: &c.MailboxSenderMax, min: 1, off: true},
		{field: "MailboxMaxBytes", p: &c.MailboxMaxBytes, min: 1, off: true},
		{field: "SessionIdleTimeout", p: &c.SessionIdleTimeout, min: 0},
		{field: "MaxSessions", p: &c.MaxSessions, min: 1},
		{field: "MSPMaxConnsPerIP", p: &c.MSPMaxConnsPerIP, min: 1, off: true},
		{field: "MSPRatePerIP", p: &c.MSPRatePerIP, min: 0, off: true},
		{field: "MSPRateBurst", p: &c.MSPRateBurst, min: 1},
		{field: "MSPStallGrace", p: &c.MSPStallGrace, min: 0, off: true},
		{field: "MaxPendingSessions", p: &c.MaxPendingSessions, min: 1},
		{field: "FailedSignInsPerMinute", p: &c.FailedSignInsPerMinute, min: 0, off: true},
		{field: "FailedSignInBurst", p: &c.FailedSignInBurst, min: 1},
		{field: "ConversationHistory", p: &c.ConversationHistory, min: 1},
		{field: "ConversationIdle", p: &c.ConversationIdle, min: 0},
		{field: "ConversationsPerUser", p: &c.ConversationsPerUser, min: 1},
		{field: "ConversationSlotsPerUser", p: &c.ConversationSlotsPerUser, min: 1},
		{field: "TTYIdle", p: &c.TTYIdle, min: 0},
		{field: "TTYPoll", p: &c.TTYPoll, min: 0},
		{field: "SessionInboundRate", p: &c.SessionInboundRate, min: 0, off: true},
		{field: "SessionInboundBurst", p: &c.SessionInboundBurst, min: 1},
		{field: "SessionAckWindow", p: &c.SessionAckWindow, min: 1},
	}
}

// value is the field's value as a float, for comparing with the range.
func (n number) value() float64 {
	switch p := n.p.(type) {
	case *int:
		return float64(*p)
	case *int64:
		return float64(*p)
	case *float64:
		return *p
	case *time.Duration:
		return float64(*p)
	}
	panic(fmt.Sprintf("node: number %s: unexpected %T", n.field, n.p))
}

// show formats v as the field's kind: a duration as a duration.
func (n number) show(v float64) string {
	if _, ok := n.p.(*time.Duration); ok {
		return time.Duration(v).String()
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// setDefault sets a zero field to its value in def.
func (n number) setDefault(def *Config) {
	if n.value() != 0 {
		return
	}
	d := reflect.ValueOf(def).Elem().FieldByName(n.field)
	reflect.ValueOf(n.p).Elem().Set(d)
}

// Range states the valid values, for errors and docs ("1 to 5", "above
// 0"), with what zero and a negative value mean.
func (n number) Range() string {
	var r string
	switch {
	case n.max != 0:
		r = n.show(n.min) + " to " + n.show(n.max)
	case n.min == 0:
		r = "above 0"
	default:
		r = "at least " + n.show(n.min)
	}
	r += ", 0 for the default"
	if n.off {
		r += ", negative for off"
	}
	return r
}

// check refuses a value out of range.
func (n number) check() error {
	v := n.value()
	if v == 0 || v < 0 && n.off {
		return nil
	}
	if v < n.min || v < 0 || n.max != 0 && v > n.max {
		return &FieldError{Field: n.field, Err: fmt.Errorf("%s: %w: want %s", n.show(v), ErrOutOfRange, n.Range()), refused: true}
	}
	return nil
}

// ErrOutOfRange marks a number outside its field's valid range (inside a
// FieldError that names the field and states the range).
var ErrOutOfRange = errors.New("out of range")

// Ranges maps each numeric Config field to its valid values, as errors
// state them ("at least 1, 0 for the default, negative for off"), so that
// a command can document its flags from the same source.
func Ranges() map[string]string {
	var c Config
	m := make(map[string]string)
	for _, n := range c.numbers() {
		m[n.field] = n.Range()
	}
	return m
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
	if err := principal.ValidNode(c.Name); err != nil {
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
	for _, n := range c.numbers() {
		if err := n.check(); err != nil {
			return err
		}
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
