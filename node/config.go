// Package node wires one msprelay node together: the MSP server on port 18,
// the session listeners, the presence directory, the switchboard and the NATS
// connection (an embedded nats-server by default, or external relays).
//
// A Node owns every component it builds: Start binds and starts them, Run
// blocks until its context ends, Close stops them in reverse order and waits.
package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/session"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/msprelay/msprelay/terminal"
)

// Session authentication modes for the TCP session listener.
const (
	AuthTrust  = "trust"  // believe the claimed name: trusted networks and tests only
	AuthSecret = "secret" // per-user shared secrets, challenge-response
)

// Config is everything a node needs. DefaultConfig fills the defaults.
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
	// DedupWindow is how long a UDP (address, port, cookie) is remembered.
	DedupWindow time.Duration
	// StripControl strips forbidden octets from messages instead of rejecting them.
	StripControl bool
	// RequireSender rejects messages with an empty SENDER.
	RequireSender bool
	// DeliverTimeout bounds one delivery, including forwarding to other nodes.
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
	// died). Zero means 30 s.
	MailboxAckWait time.Duration

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
	// MaxSessions caps concurrent sessions (both listeners together); a
	// session past it is refused with error 600.
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
}

// DefaultConfig returns the defaults for a node named after this host.
func DefaultConfig() Config {
	return Config{
		Name:               DefaultName(),
		MSPAddr:            ":18",
		MSPIdleTimeout:     5 * time.Minute,
		MSPReadTimeout:     30 * time.Second,
		MSPMaxConns:        10000,
		DedupWindow:        5 * time.Minute,
		DeliverTimeout:     3 * time.Second,
		Offline:            string(switchboard.OfflineQueue),
		MailboxMax:         1000,
		MailboxAge:         7 * 24 * time.Hour,
		MailboxReplicas:    1,
		MailboxAckWait:     30 * time.Second,
		SessionSocket:      session.DefaultSocketPath(),
		SessionAuth:        AuthSecret,
		SessionIdleTimeout: 3 * time.Minute,
		MaxSessions:        session.DefaultMaxSessions,
		DataDir:            DefaultDataDir(),
		GossipProfile:      "lan",
		Terminals:          true,
		Utmp:               terminal.DefaultUtmp,
		TTYIdle:            10 * time.Minute,
		TTYCharset:         terminal.UTF8.String(),
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

// DefaultDataDir is /var/lib/msprelay for root, else the user's state dir.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/msprelay"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "msprelay")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "msprelay")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("msprelay-%d", os.Geteuid()), "data")
}

// ErrConfig marks a configuration New refuses.
var ErrConfig = errors.New("node: bad config")

func (c *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if err := presence.ValidNode(c.Name); err != nil {
		return bad("--name: %v", err)
	}
	for flag, a := range map[string]string{"--msp": c.MSPAddr, "--session": c.SessionAddr, "--gossip": c.GossipAddr, "--nats-listen": c.NATSListen} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("%s %q: %v", flag, a, err)
		}
	}
	if c.SessionAddr != "" {
		switch c.SessionAuth {
		case AuthTrust:
		case AuthSecret:
			if c.SessionSecrets == "" {
				return bad("--session-auth secret needs --session-secrets FILE")
			}
		default:
			return bad("--session-auth %q: want %s or %s", c.SessionAuth, AuthTrust, AuthSecret)
		}
	}
	switch c.GossipProfile {
	case "", "lan", "wan", "local":
	default:
		return bad("--gossip-profile %q: want lan, wan or local", c.GossipProfile)
	}
	if len(c.Join) > 0 && c.GossipAddr == "" {
		return bad("--join needs --gossip ADDR")
	}
	if len(c.NATSURLs) > 0 && c.NATSListen != "" {
		return bad("--nats-listen exposes the embedded server; it cannot be combined with --nats URLS")
	}
	if len(c.NATSURLs) == 0 && c.DataDir == "" {
		return bad("--data DIR is required for the embedded NATS store")
	}
	if c.DeliverTimeout <= 0 {
		c.DeliverTimeout = 3 * time.Second
	}
	if _, err := switchboard.ParseOfflinePolicy(c.Offline); err != nil {
		return bad("--offline %q: want queue or refuse", c.Offline)
	}
	if c.MailboxMax < 0 || c.MailboxAge < 0 || c.MailboxAckWait < 0 || c.AckTimeout < 0 {
		return bad("--mailbox-max, --mailbox-age, --mailbox-ack-wait and --ack-timeout must not be negative")
	}
	if c.MailboxReplicas < 0 || c.MailboxReplicas > 5 {
		return bad("--mailbox-replicas %d: want 1 to 5", c.MailboxReplicas)
	}
	if err := c.validateTerminals(); err != nil {
		return err
	}
	if c.AckTimeout >= c.DeliverTimeout {
		return bad("--ack-timeout %v must be shorter than --deliver-timeout %v", c.AckTimeout, c.DeliverTimeout)
	}
	return nil
}
