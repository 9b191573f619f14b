// Command node runs one msprelay node: MSP on port 18 (TCP and UDP), session
// listeners for local clients, presence gossip and NATS federation.
//
// Every flag can also be set through the environment as MSPRELAY_<FLAG>, with
// dashes as underscores (MSPRELAY_SESSION_SOCKET=/run/x.sock); a flag given on
// the command line wins.
//
// SIGTERM and SIGINT stop the node cleanly; SIGHUP re-reads the session
// secrets, gossip key, log level and HTTP token files and never stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/internal/cliflags"
	"github.com/msprelay/msprelay/internal/sdnotify"
	"github.com/msprelay/msprelay/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: node [flags]\n\nRuns an msprelay node. Flags (env MSPRELAY_<FLAG> also works):\n")
		fs.PrintDefaults()
	}
	var join, natsURLs, logLevel, logFormat, logLevelFile string
	var showVersion bool
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name in the cluster (letters, digits, - and _)")
	fs.StringVar(&cfg.MSPAddr, "msp", cfg.MSPAddr, "MSP listen address, TCP and UDP")
	fs.StringVar(&cfg.SessionAddr, "session", "", "TCP session listener address (off unless given)")
	fs.StringVar(&cfg.SessionSocket, "session-socket", cfg.SessionSocket, "Unix session socket path (peer credentials authenticate); empty disables")
	fs.StringVar(&cfg.SessionAuth, "session-auth", cfg.SessionAuth, "TCP session auth: trust (believe the claimed name; trusted networks only) or secret")
	fs.StringVar(&cfg.SessionSecrets, "session-secrets", "", "file of 'user secret' lines for --session-auth secret")
	fs.DurationVar(&cfg.SessionIdleTimeout, "session-idle", cfg.SessionIdleTimeout, "close sessions silent for this long (clients ping)")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "maximum concurrent sessions per kind of listener, Unix socket and TCP (an idle signed-in user costs about 10 KiB)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (embedded NATS/JetStream store)")
	fs.StringVar(&cfg.GossipAddr, "gossip", "", "memberlist gossip bind address (e.g. :7946); off unless given or --join is set")
	fs.StringVar(&cfg.GossipAdvertise, "gossip-advertise", "", "gossip address peers should use, if not the bind address")
	fs.StringVar(&join, "join", "", "comma-separated gossip addresses of seed nodes")
	fs.StringVar(&cfg.GossipProfile, "gossip-profile", cfg.GossipProfile, "gossip timing profile: lan, wan or local")
	fs.StringVar(&cfg.GossipKeyFile, "gossip-key", "", "file holding the gossip encryption key (16, 24 or 32 bytes, raw or base64)")
	fs.StringVar(&natsURLs, "nats", "", "comma-separated NATS relay URLs; empty runs an embedded nats-server")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "expose the embedded nats-server on this client address for other nodes")
	fs.StringVar(&cfg.NATSUser, "nats-user", "", "NATS user")
	fs.StringVar(&cfg.NATSPassword, "nats-password", "", "NATS password (prefer env MSPRELAY_NATS_PASSWORD)")
	fs.StringVar(&cfg.NATSToken, "nats-token", "", "NATS token (prefer env MSPRELAY_NATS_TOKEN)")
	fs.StringVar(&cfg.NATSNkeyFile, "nats-nkey", "", "this node's NATS nkey seed file (<node>.nk from relay gen-creds)")
	fs.StringVar(&cfg.NATSPasswordFile, "nats-password-file", "", "this node's NATS password file (<node>.pass from relay gen-creds --passwords); user defaults to the node name")
	fs.StringVar(&cfg.NATSAuthFile, "nats-auth", "", "users file (auth.conf from relay gen-creds) for the server exposed with --nats-listen")
	fs.StringVar(&cfg.NATSCAFile, "nats-tls-ca", "", "CA (PEM) that tls:// relays' certificates must chain to")
	fs.StringVar(&cfg.NATSCertFile, "nats-tls-cert", "", "client certificate (PEM) for relays that require one")
	fs.StringVar(&cfg.NATSKeyFile, "nats-tls-key", "", "client key (PEM) for --nats-tls-cert")
	fs.BoolVar(&cfg.NATSInsecure, "nats-insecure", false, "allow --nats-listen beyond loopback without credentials (warns: anyone reaching it reads all mail)")
	fs.BoolVar(&cfg.GossipInsecure, "gossip-insecure", false, "allow gossip beyond loopback without --gossip-key (warns: anyone reaching it can fake presence)")
	fs.DurationVar(&cfg.MSPIdleTimeout, "idle-timeout", cfg.MSPIdleTimeout, "close MSP TCP connections idle this long")
	fs.IntVar(&cfg.MSPMaxConns, "max-conns", cfg.MSPMaxConns, "maximum concurrent MSP TCP connections")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", cfg.DedupWindow, "how long a message counts as a repeat: UDP (address, port, cookie), delivered ids, mailbox message ids")
	fs.DurationVar(&cfg.DeliverTimeout, "deliver-timeout", cfg.DeliverTimeout, "bound on one delivery, including other nodes")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", 0, "bound on waiting for a session client's acknowledgement (default: half of --deliver-timeout)")
	fs.StringVar(&cfg.Offline, "offline", cfg.Offline, "messages for known users who are not signed in: queue (mailbox) or refuse")
	fs.IntVar(&cfg.MailboxMax, "mailbox-max", cfg.MailboxMax, "messages a user's mailbox holds; a full mailbox refuses more")
	fs.DurationVar(&cfg.MailboxAge, "mailbox-age", cfg.MailboxAge, "how long a queued message waits before it expires")
	fs.IntVar(&cfg.MailboxReplicas, "mailbox-replicas", cfg.MailboxReplicas, "replicas of the mailbox stream and known-users bucket (3 with a three-relay cluster)")
	fs.DurationVar(&cfg.MailboxAckWait, "mailbox-ack-wait", cfg.MailboxAckWait, "how long a queued message handed to a node may stay unsettled before another node gets it")
	fs.IntVar(&cfg.MailboxSenderMax, "mailbox-sender-max", cfg.MailboxSenderMax, "messages one sender may have queued in one user's mailbox (at most --mailbox-max; negative: no share)")
	fs.Int64Var(&cfg.MailboxMaxBytes, "mailbox-max-bytes", cfg.MailboxMaxBytes, "bytes the whole mailbox stream may hold; at the cap new messages are refused (negative: no cap)")
	fs.BoolVar(&cfg.StripControl, "strip-control", false, "strip forbidden control octets instead of rejecting the message")
	fs.BoolVar(&cfg.RequireSender, "require-sender", false, "reject MSP messages with an empty SENDER")
	fs.IntVar(&cfg.ConversationHistory, "conversation-history", conversation.DefaultHistory, "messages a conversation keeps for members who join late")
	fs.DurationVar(&cfg.ConversationIdle, "conversation-idle", conversation.DefaultIdle, "how long an empty conversation lasts before it expires")
	// Abuse limits (docs/SECURITY.md); a negative value turns one off.
	fs.IntVar(&cfg.MSPMaxConnsPerIP, "msp-max-conns-per-ip", cfg.MSPMaxConnsPerIP, "MSP TCP connections one source (IPv4 address or IPv6 /64) may hold")
	fs.Float64Var(&cfg.MSPRatePerIP, "msp-rate", cfg.MSPRatePerIP, "MSP messages a second one source may send, sustained (TCP and UDP together)")
	fs.IntVar(&cfg.MSPRateBurst, "msp-rate-burst", cfg.MSPRateBurst, "MSP messages one source may send at once before --msp-rate applies")
	fs.DurationVar(&cfg.MSPReadTimeout, "msp-read-timeout", cfg.MSPReadTimeout, "time one MSP TCP message may take to arrive once its first octet came")
	fs.DurationVar(&cfg.MSPStallGrace, "msp-stall-grace", cfg.MSPStallGrace, "at --max-conns, close a connection whose message has been arriving this long to admit a new one")
	fs.IntVar(&cfg.MaxPendingSessions, "max-pending-sessions", cfg.MaxPendingSessions, "session connections not signed in yet, per kind of listener (Unix socket, TCP)")
	fs.Float64Var(&cfg.FailedSignInsPerMinute, "session-fail-rate", cfg.FailedSignInsPerMinute, "failed session sign-ins a minute one network source may make, sustained")
	fs.IntVar(&cfg.FailedSignInBurst, "session-fail-burst", cfg.FailedSignInBurst, "failed session sign-ins one network source may make at once")
	fs.BoolVar(&cfg.SessionAuthInsecure, "session-auth-insecure", false, "let --session-auth trust accept clients from non-loopback addresses (anyone who connects is anyone)")
	fs.StringVar(&cfg.ConsoleGroup, "console-group", "", "host group whose members may sign in at terminal console besides root (default: root only)")
	fs.Float64Var(&cfg.SessionInboundRate, "session-inbound-rate", cfg.SessionInboundRate, "messages a second one signed-in terminal takes live, sustained; the excess goes to the user's mailbox (negative: no limit)")
	fs.IntVar(&cfg.SessionInboundBurst, "session-inbound-burst", cfg.SessionInboundBurst, "messages one signed-in terminal takes at once before --session-inbound-rate applies")
	fs.StringVar(&logLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.StringVar(&logLevelFile, "log-level-file", "", "file holding the log level (wins over --log-level); SIGHUP re-reads it")
	fs.StringVar(&cfg.HTTPAddr, "http", "", "serve /metrics, /healthz, /readyz, the API and the status page here (a bare :PORT binds to loopback); off unless given")
	fs.StringVar(&cfg.HTTPTokenFile, "http-token-file", "", "file holding the token the API and status page require (bearer, or basic auth password); SIGHUP re-reads it")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")

	// Login terminals (utmp, write(1)-style delivery).
	fs.Var((*onOff)(&cfg.Terminals), "terminals", "on: publish the host's logins as tty terminals and write messages to them; off: disable")
	fs.StringVar(&cfg.Utmp, "utmp", cfg.Utmp, "utmp file listing the host's logins")
	fs.DurationVar(&cfg.TTYIdle, "tty-idle", cfg.TTYIdle, "a tty with no input for this long is shown idle")
	fs.StringVar(&cfg.TTYCharset, "tty-charset", cfg.TTYCharset, "charset messages are written to ttys in: UTF-8, ISO-8859-1 or ASCII")

	if err := cliflags.FromEnv(fs, "MSPRELAY_", os.LookupEnv); err != nil {
		fmt.Fprintf(stderr, "node: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "node: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if showVersion {
		fmt.Fprintln(os.Stdout, "msprelay node", buildinfo.Version())
		return 0
	}
	cfg.Join = cliflags.SplitList(join)
	cfg.NATSURLs = cliflags.SplitList(natsURLs)
	if len(cfg.Join) > 0 && cfg.GossipAddr == "" {
		cfg.GossipAddr = ":7946"
	}
	logging, err := cliflags.NewLogging(stderr, logLevel, logFormat, logLevelFile)
	if err != nil {
		fmt.Fprintf(stderr, "node: %v\n", err)
		return 2
	}
	logger := logging.Logger
	cfg.Logger = logger
	cfg.Version = buildinfo.Version()
	n, err := node.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "node: %v\n", inFlagTerms(err))
		return 2
	}
	// Type=notify units wait for READY=1, sent once every listener is bound.
	notifier, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		logger.Warn("not notifying the service manager", "err", err)
	}
	run := func(ctx context.Context) error {
		return inFlagTerms(notifier.Run(ctx, logger, func(ctx context.Context) (string, error) {
			if err := n.Start(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("MSP on %s, session socket %s", n.Addrs().MSP, n.Addrs().SessionSocket), nil
		}, n.Serve))
	}
	// SIGHUP: the log level, then the node's secrets, gossip keys and
	// HTTP token; each logs what it reloaded, and failures keep old values.
	return cliflags.RunUntilSignal(logger, "node", run, logging.ReloadAndLog, func() { _ = n.Reload() })
}

// flagFor names the flag that sets each node.Config field a
// node.FieldError may name.
func flagFor(field string) string {
	switch field {
	case "Name":
		return "--name"
	case "MSPAddr":
		return "--msp"
	case "SessionAddr":
		return "--session"
	case "SessionSocket":
		return "--session-socket"
	case "SessionAuth":
		return "--session-auth"
	case "SessionSecrets":
		return "--session-secrets"
	case "SessionAuthInsecure":
		return "--session-auth-insecure"
	case "DataDir":
		return "--data"
	case "GossipAddr":
		return "--gossip"
	case "GossipAdvertise":
		return "--gossip-advertise"
	case "NATSAuthFile":
		return "--nats-auth"
	case "NATSNkeyFile":
		return "--nats-nkey"
	case "NATSPasswordFile":
		return "--nats-password-file"
	case "GossipKeyFile":
		return "--gossip-key"
	case "GossipInsecure":
		return "--gossip-insecure"
	case "Join":
		return "--join"
	case "GossipProfile":
		return "--gossip-profile"
	case "NATSListen":
		return "--nats-listen"
	case "Offline":
		return "--offline"
	case "MailboxMax":
		return "--mailbox-max"
	case "MailboxAge":
		return "--mailbox-age"
	case "MailboxReplicas":
		return "--mailbox-replicas"
	case "MailboxAckWait":
		return "--mailbox-ack-wait"
	case "MailboxSenderMax":
		return "--mailbox-sender-max"
	case "MailboxMaxBytes":
		return "--mailbox-max-bytes"
	case "AckTimeout":
		return "--ack-timeout"
	case "ConsoleGroup":
		return "--console-group"
	case "SessionInboundBurst":
		return "--session-inbound-burst"
	}
	return ""
}

// inFlagTerms restates an error about one setting in terms of its flag:
// the library names its Config fields, a user of this command knows flags.
// An address or path that cannot be bound is most often held by another
// node on this host (issue 14: "another node is listening on
// /run/msprelay/session.sock" left the user guessing what to change).
func inFlagTerms(err error) error {
	var fe *node.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	flag := flagFor(fe.Field)
	switch {
	case flag == "":
		return err
	case errors.Is(err, node.ErrConfig) && len(fe.Fix) > 0:
		var fix []string
		for _, f := range fe.Fix {
			if ff := flagFor(f); ff != "" {
				fix = append(fix, ff)
			}
		}
		return fmt.Errorf("%s: %w (see %s)", flag, fe.Err, strings.Join(fix, ", "))
	case errors.Is(err, node.ErrConfig):
		return fmt.Errorf("%s: %w", flag, fe.Err)
	}
	return fmt.Errorf("%s: %w (if another node runs on this host, give this one its own with %s)", flag, fe.Err, flag)
}

// onOff is a boolean flag spelled on or off (true and false work too).
type onOff bool

func (o *onOff) String() string {
	if o != nil && bool(*o) {
		return "on"
	}
	return "off"
}

func (o *onOff) Set(s string) error {
	switch s {
	case "on", "true", "1", "yes":
		*o = true
	case "off", "false", "0", "no":
		*o = false
	default:
		return fmt.Errorf("want on or off, not %q", s)
	}
	return nil
}

// IsBoolFlag lets --terminals alone mean on.
func (o *onOff) IsBoolFlag() bool { return true }
