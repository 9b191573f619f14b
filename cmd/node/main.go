// Command node runs one msprelay node: MSP on port 18 (TCP and UDP), session
// listeners for local clients, presence gossip and NATS federation.
//
// Every flag can also be set through the environment as MSPRELAY_<FLAG>, with
// dashes as underscores (MSPRELAY_SESSION_SOCKET=/run/x.sock); a flag given on
// the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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
	var join, natsURLs, logLevel, logFormat string
	var showVersion bool
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name in the cluster (letters, digits, - and _)")
	fs.StringVar(&cfg.MSPAddr, "msp", cfg.MSPAddr, "MSP listen address, TCP and UDP")
	fs.StringVar(&cfg.SessionAddr, "session", "", "TCP session listener address (off unless given)")
	fs.StringVar(&cfg.SessionSocket, "session-socket", cfg.SessionSocket, "Unix session socket path (peer credentials authenticate); empty disables")
	fs.StringVar(&cfg.SessionAuth, "session-auth", cfg.SessionAuth, "TCP session auth: trust (believe the claimed name; trusted networks only) or secret")
	fs.StringVar(&cfg.SessionSecrets, "session-secrets", "", "file of 'user secret' lines for --session-auth secret")
	fs.DurationVar(&cfg.SessionIdleTimeout, "session-idle", cfg.SessionIdleTimeout, "close sessions silent for this long (clients ping)")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "maximum concurrent sessions (each idle one costs about 15 KiB)")
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
	fs.DurationVar(&cfg.MSPIdleTimeout, "idle-timeout", cfg.MSPIdleTimeout, "close MSP TCP connections idle this long")
	fs.IntVar(&cfg.MSPMaxConns, "max-conns", cfg.MSPMaxConns, "maximum concurrent MSP TCP connections")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", cfg.DedupWindow, "how long a UDP (address, port, cookie) is remembered")
	fs.DurationVar(&cfg.DeliverTimeout, "deliver-timeout", cfg.DeliverTimeout, "bound on one delivery, including other nodes")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", 0, "bound on waiting for a session client's acknowledgement (default: half of --deliver-timeout)")
	fs.StringVar(&cfg.Offline, "offline", cfg.Offline, "messages for known users who are not signed in: queue (mailbox) or refuse")
	fs.IntVar(&cfg.MailboxMax, "mailbox-max", cfg.MailboxMax, "messages a user's mailbox holds; a full mailbox refuses more")
	fs.DurationVar(&cfg.MailboxAge, "mailbox-age", cfg.MailboxAge, "how long a queued message waits before it expires")
	fs.IntVar(&cfg.MailboxReplicas, "mailbox-replicas", cfg.MailboxReplicas, "replicas of the mailbox stream and known-users bucket (3 with a three-relay cluster)")
	fs.DurationVar(&cfg.MailboxAckWait, "mailbox-ack-wait", cfg.MailboxAckWait, "how long a queued message handed to a node may stay unsettled before another node gets it")
	fs.BoolVar(&cfg.StripControl, "strip-control", false, "strip forbidden control octets instead of rejecting the message")
	fs.BoolVar(&cfg.RequireSender, "require-sender", false, "reject MSP messages with an empty SENDER")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")

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
	logger, err := cliflags.NewLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "node: %v\n", err)
		return 2
	}
	cfg.Logger = logger
	n, err := node.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "node: %v\n", err)
		return 2
	}
	// Type=notify units wait for READY=1, sent once every listener is bound.
	notifier, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		logger.Warn("not notifying the service manager", "err", err)
	}
	return cliflags.RunUntilSignal(logger, "node", func(ctx context.Context) error {
		return notifier.Run(ctx, logger, func(ctx context.Context) (string, error) {
			if err := n.Start(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("MSP on %s, session socket %s", n.Addrs().MSP, n.Addrs().SessionSocket), nil
		}, n.Serve)
	})
}
