// Package flagtable holds the flag tables of the msprelay daemons: for
// msprelay-node and msprelay-relay, one row per flag saying which setting
// it sets, its environment variable, its default and its help. cmd/node
// and cmd/relay parse their command lines with these tables and name the
// flag behind a node.FieldError with them; the generator in mkdocs writes
// the flag tables of README.md and deploy/README.md and the man pages in
// deploy/man from them, and this package's test fails when those files
// and the tables disagree.
//
// Adding a flag is one row: {Name, Field, Help} in Node or Relay (with the
// field in node.Config, broker.Config or the command's settings struct),
// then `go run ./internal/flagtable/mkdocs` to regenerate the docs.
package flagtable

import (
	"flag"
	"os"
	"strings"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/cliflags"
	"github.com/msprelay/msprelay/node"
)

// NodeSettings is what msprelay-node's command line sets: the node's
// Config and the command's own settings.
type NodeSettings struct {
	node.Config
	LogLevel     string
	LogFormat    string
	LogLevelFile string
	ShowVersion  bool
}

// NodeDefaults is NodeSettings before any flag.
func NodeDefaults() NodeSettings {
	return NodeSettings{Config: node.DefaultConfig(), LogLevel: "info", LogFormat: "text"}
}

// Node is msprelay-node's flag table, in the order the docs list it. A
// number's help ends with its valid range from node.Ranges.
var Node = cliflags.Table{
	Command:   "msprelay-node",
	EnvPrefix: "MSPRELAY_",
	Flags: withRanges([]cliflags.Flag{
		{Name: "name", Arg: "NAME", Field: "Name", Default: "host name up to the first dot", Help: "node name in the cluster: letters, digits, - and _"},
		{Name: "msp", Arg: "ADDR", Field: "MSPAddr", Help: "MSP listen address, TCP and UDP"},
		{Name: "session", Arg: "ADDR", Field: "SessionAddr", Help: "TCP session listener address (off unless given)"},
		{Name: "session-socket", Arg: "PATH", Field: "SessionSocket", Default: "/run/msprelay/session.sock (root), else in your private runtime or state directory", Help: "Unix session socket path (peer credentials authenticate); empty disables. Its directory is created 0700 (0755 for root) and must be yours and writable by nobody else"},
		{Name: "session-auth", Arg: "secret|trust", Field: "SessionAuth", Help: "TCP session authentication: secret, or trust (believes the claimed name; loopback only, with a warning)"},
		{Name: "session-auth-insecure", Field: "SessionAuthInsecure", Help: "let --session-auth trust accept clients from non-loopback addresses (anyone who connects is anyone)"},
		{Name: "session-secrets", Arg: "FILE", Field: "SessionSecrets", Help: "file of 'user secret' lines (mode 0600) for --session-auth secret and for checking MSP signatures; read at start (a file that cannot be read stops the start) and again on SIGHUP"},
		{Name: "session-idle", Field: "SessionIdleTimeout", Help: "close sessions silent this long (clients ping)"},
		{Name: "max-sessions", Field: "MaxSessions", Help: "concurrent sessions per kind of listener, Unix socket and TCP (an idle signed-in user costs about 6 KiB)"},
		{Name: "max-pending-sessions", Field: "MaxPendingSessions", Help: "session connections not signed in yet, per kind of listener"},
		{Name: "session-fail-rate", Field: "FailedSignInsPerMinute", Help: "failed session sign-ins a minute one network source may make, sustained; past it and --session-fail-burst it gets 911 without its answer being checked"},
		{Name: "session-fail-burst", Field: "FailedSignInBurst", Help: "failed session sign-ins one network source may make at once"},
		{Name: "session-inbound-rate", Field: "SessionInboundRate", Help: "messages a second one signed-in terminal (session or tty) takes live, sustained; the excess goes to the user's mailbox, or is refused without one"},
		{Name: "session-inbound-burst", Field: "SessionInboundBurst", Help: "messages one signed-in terminal takes at once before --session-inbound-rate applies"},
		{Name: "session-ack-window", Field: "SessionAckWindow", Help: "messages pushed to one acknowledging session (msp listen) and not yet acknowledged; they go out in order without waiting for each other, and past the window a message goes to the mailbox"},
		{Name: "console-group", Arg: "GROUP", Field: "ConsoleGroup", Help: "host group whose members may sign in at terminal console besides root (empty: root only)"},
		{Name: "data", Arg: "DIR", Field: "DataDir", Default: "/var/lib/msprelay (root), else ~/.local/state/msprelay", Help: "data directory (embedded NATS/JetStream store), created 0700; one others may write to is refused, and so is one another running node holds (the node keeps an exclusive lock on msprelay.lock in it, naming its pid)"},
		{Name: "gossip", Arg: "ADDR", Field: "GossipAddr", Default: "off (:7946 when --join is given)", Help: "memberlist gossip bind address, e.g. :7946"},
		{Name: "gossip-advertise", Arg: "ADDR", Field: "GossipAdvertise", Help: "gossip address peers should use, if not the bind address"},
		{Name: "join", Arg: "ADDR,...", Field: "Join", Help: "seed nodes' gossip addresses, comma-separated; re-joined periodically"},
		{Name: "gossip-profile", Arg: "lan|wan|local", Field: "GossipProfile", Help: "gossip timing profile: lan, wan or local"},
		{Name: "gossip-key", Arg: "FILE", Field: "GossipKeyFile", Help: "file holding the gossip encryption key (16, 24 or 32 bytes, raw or base64); required for gossip beyond loopback; SIGHUP re-reads it"},
		{Name: "gossip-insecure", Field: "GossipInsecure", Help: "allow gossip beyond loopback without --gossip-key (warns: anyone reaching it can fake presence)"},
		{Name: "nats", Arg: "URL,...", Field: "NATSURLs", Default: "embedded", Help: "NATS relay URLs, comma-separated; empty runs an embedded nats-server"},
		{Name: "nats-listen", Arg: "ADDR", Field: "NATSListen", Help: "expose the embedded nats-server on this client address for other nodes"},
		{Name: "nats-user", Arg: "USER", Field: "NATSUser", Help: "NATS user (shared credentials: nothing from other nodes is then shown verified)"},
		{Name: "nats-password", Arg: "PASSWORD", Field: "NATSPassword", Help: "NATS password (prefer the environment variable)"},
		{Name: "nats-token", Arg: "TOKEN", Field: "NATSToken", Help: "NATS token (prefer the environment variable)"},
		{Name: "nats-nkey", Arg: "FILE", Field: "NATSNkeyFile", Help: "this node's NATS nkey seed file (<node>.nk from relay gen-creds)"},
		{Name: "nats-password-file", Arg: "FILE", Field: "NATSPasswordFile", Help: "this node's NATS password file (<node>.pass from relay gen-creds --passwords); the user defaults to the node name"},
		{Name: "nats-auth", Arg: "FILE", Field: "NATSAuthFile", Help: "users file (auth.conf from relay gen-creds) for the server exposed with --nats-listen"},
		{Name: "nats-tls-ca", Arg: "FILE", Field: "NATSCAFile", Help: "CA (PEM) that tls:// relays' certificates must chain to"},
		{Name: "nats-tls-cert", Arg: "FILE", Field: "NATSCertFile", Help: "client certificate (PEM) for relays that require one"},
		{Name: "nats-tls-key", Arg: "FILE", Field: "NATSKeyFile", Help: "client key (PEM) for --nats-tls-cert"},
		{Name: "nats-insecure", Field: "NATSInsecure", Help: "allow --nats-listen beyond loopback without credentials (warns: anyone reaching it reads all mail)"},
		{Name: "idle-timeout", Field: "MSPIdleTimeout", Help: "close MSP TCP connections idle this long"},
		{Name: "max-conns", Field: "MSPMaxConns", Help: "concurrent MSP TCP connections (at the cap the longest-idle is evicted first, then a message stalled past --msp-stall-grace)"},
		{Name: "msp-max-conns-per-ip", Field: "MSPMaxConnsPerIP", Help: "MSP TCP connections one source may hold (an IPv4 address or IPv6 /64; for a sender on this host, its local account as the kernel names it)"},
		{Name: "msp-rate", Field: "MSPRatePerIP", Help: "MSP messages a second one source may send, sustained, TCP and UDP together (TCP: - with a reason past it; UDP: silence)"},
		{Name: "msp-rate-burst", Field: "MSPRateBurst", Help: "MSP messages one source may send at once before --msp-rate applies"},
		{Name: "msp-read-timeout", Field: "MSPReadTimeout", Help: "time one MSP TCP message may take to arrive once its first octet came"},
		{Name: "msp-stall-grace", Field: "MSPStallGrace", Help: "at --max-conns, close a connection whose message has been arriving this long to admit a new one"},
		{Name: "dedup-window", Field: "DedupWindow", Help: "how long a message counts as a repeat: UDP (address, port, cookie), ids delivered per user, ids in the mailbox; also the age past which an hm2 signature is refused (the window minus 30 s)"},
		{Name: "deliver-timeout", Field: "DeliverTimeout", Help: "bound on one delivery, other nodes included"},
		{Name: "ack-timeout", Field: "AckTimeout", Default: "half of --deliver-timeout", Help: "wait for an acknowledging session client before the message goes back to the mailbox; shorter than --deliver-timeout"},
		{Name: "offline", Arg: "queue|refuse", Field: "Offline", Help: "messages for known users who are not signed in: queue (mailbox) or refuse"},
		{Name: "mailbox-max", Field: "MailboxMax", Help: "messages a user's mailbox holds, from all senders; a full mailbox refuses new ones, it never drops"},
		{Name: "mailbox-age", Field: "MailboxAge", Help: "how long a queued message waits before it expires"},
		{Name: "mailbox-replicas", Field: "MailboxReplicas", Help: "replicas of the mailbox stream, its buckets and the conversation stream and bucket (3 with a three-relay cluster, or three sites with relay --site)"},
		{Name: "mailbox-ack-wait", Field: "MailboxAckWait", Help: "a queued message handed to a node that then dies goes to another after this"},
		{Name: "mailbox-sweep", Field: "MailboxSweep", Help: "how often to look for mail queued for signed-in users whose notice this node missed (a cut between sites); one store request per sweep; negative: off"},
		{Name: "mailbox-sender-max", Field: "MailboxSenderMax", Help: "queued messages one sender may hold in one user's mailbox (capped at --mailbox-max); past it that sender is refused while others still queue"},
		{Name: "mailbox-max-bytes", Field: "MailboxMaxBytes", Help: "bytes the whole mailbox stream may hold; at the cap new messages are refused, none dropped"},
		{Name: "conversation-history", Field: "ConversationHistory", Help: "messages a conversation keeps for members who join late"},
		{Name: "conversation-idle", Field: "ConversationIdle", Help: "an empty conversation is deleted after this"},
		{Name: "conversations-per-user", Field: "ConversationsPerUser", Help: "conversations one user may have open (created, not expired)"},
		{Name: "conversation-slots-per-user", Field: "ConversationSlotsPerUser", Help: "members (terminals) one user may be in one conversation"},
		{Name: "room-open-bridge", Arg: "NAME,...", Field: "RoomOpenBridge", Help: "conversations whose MSP bridge (#NAME) takes unverified senders, marked as such, comma-separated"},
		{Name: "strip-control", Field: "StripControl", Help: "strip forbidden control octets instead of refusing the message"},
		{Name: "require-sender", Field: "RequireSender", Help: "refuse MSP messages with an empty SENDER"},
		{Name: "log-level", Arg: "LEVEL", Field: "LogLevel", Help: "trace, debug, info, warn or error"},
		{Name: "log-format", Arg: "text|json", Field: "LogFormat", Help: "text or json"},
		{Name: "log-level-file", Arg: "FILE", Field: "LogLevelFile", Help: "file holding the log level (wins over --log-level); SIGHUP re-reads it"},
		{Name: "http", Arg: "ADDR", Field: "HTTPAddr", Help: "serve /metrics, /healthz, /readyz, the API and the status page here (a bare :PORT binds to loopback); off unless given"},
		{Name: "http-token-file", Arg: "FILE", Field: "HTTPTokenFile", Help: "file holding the token the API and status page require (bearer, or basic auth password); SIGHUP re-reads it; accepted and unused without --http (the package sets /etc/msprelay/http.token)"},
		{Name: "terminals", Field: "Terminals", Value: cliflags.OnOff, Help: "on: publish the host's logins as tty terminals and write messages to them; off: disable"},
		{Name: "utmp", Arg: "FILE", Field: "Utmp", Help: "utmp file listing the host's logins"},
		{Name: "tty-idle", Field: "TTYIdle", Help: "a tty with no input this long is shown idle"},
		{Name: "tty-charset", Arg: "CHARSET", Field: "TTYCharset", Help: "charset messages are written to ttys in: UTF-8, ISO-8859-1 or ASCII"},
		{Name: "version", Field: "ShowVersion", NoEnv: true, Help: "print the version and exit"},
	}),
}

// withRanges appends to the help of each flag setting a number of
// node.Config the field's valid range, so that --help, the docs and the
// man page state the same range the node's errors do.
func withRanges(flags []cliflags.Flag) []cliflags.Flag {
	ranges := node.Ranges()
	for i, f := range flags {
		if r, ok := ranges[f.Field]; ok {
			flags[i].Help = f.Help + " (" + r + ")"
		}
	}
	return flags
}

// RelaySettings is what msprelay-relay's command line sets: the broker's
// Config and the command's own settings.
type RelaySettings struct {
	broker.Config
	LogLevel      string
	LogFormat     string
	LogLevelFile  string
	HTTPAddr      string
	HTTPTokenFile string
	ShowVersion   bool
}

// RelayDefaults is RelaySettings before any flag.
func RelayDefaults() RelaySettings {
	host, _ := os.Hostname()
	c := broker.DefaultConfig()
	c.Name = broker.SanitizeName(host, "relay")
	return RelaySettings{Config: c, LogLevel: "info", LogFormat: "text"}
}

// Relay is msprelay-relay's flag table.
var Relay = cliflags.Table{
	Command:   "msprelay-relay",
	EnvPrefix: "MSPRELAY_RELAY_",
	Flags: []cliflags.Flag{
		{Name: "name", Arg: "NAME", Field: "Name", Default: "host name up to the first dot", Help: "server name, unique in the cluster (letters, digits, - and _)"},
		{Name: "listen", Arg: "ADDR", Field: "Listen", Help: "client listen address; with --config and no --listen the file's setting is kept"},
		{Name: "data", Arg: "DIR", Field: "DataDir", Help: "JetStream store directory; JetStream is off unless given; held with an exclusive lock (msprelay.lock, naming the pid) while the relay runs, so a second relay or node on it is refused"},
		{Name: "cluster", Arg: "ADDR", Field: "Cluster", Help: "route listen address for a cluster within a site, e.g. :6222"},
		{Name: "cluster-name", Arg: "NAME", Field: "ClusterName", Help: "cluster (site) name; also the gateway name unless --gateway-name"},
		{Name: "routes", Arg: "URL,...", Field: "Routes", Help: "comma-separated seed routes, nats-route://host:6222,..."},
		{Name: "site", Arg: "NAME", Field: "Site", Help: "site (data centre) of this relay in a cluster stretched over sites: tags it site:NAME and places the replicas of every replicated stream and bucket in distinct sites (give it to every relay or to none)"},
		{Name: "gateway", Arg: "ADDR", Field: "Gateway", Help: "gateway listen address for links between sites, e.g. :7222"},
		{Name: "gateway-name", Arg: "NAME", Field: "GatewayName", Help: "this site's gateway name (default --cluster-name)"},
		{Name: "gateways", Arg: "NAME=URL,...;...", Field: "Gateways", Value: gateways, Help: "remote sites: NAME=URL[,URL][;NAME=URL[,URL]]; may be repeated"},
		{Name: "leafnode", Arg: "ADDR", Field: "Leafnode", Help: "leafnode listen address, e.g. :7422"},
		{Name: "leaf-remotes", Arg: "URL,...", Field: "LeafRemotes", Help: "comma-separated hub URLs to join as a leafnode, nats-leaf://host:7422,..."},
		{Name: "monitor", Arg: "ADDR", Field: "Monitor", Help: "nats-server HTTP monitoring address (/healthz, /varz), e.g. 127.0.0.1:8222"},
		{Name: "tls-cert", Arg: "FILE", Field: "CertFile", Help: "client port TLS certificate (PEM)"},
		{Name: "tls-key", Arg: "FILE", Field: "KeyFile", Help: "client port TLS key (PEM)"},
		{Name: "tls-ca", Arg: "FILE", Field: "CAFile", Help: "CA (PEM) that client certificates must chain to; requires client certificates"},
		{Name: "user", Arg: "USER", Field: "User", Help: "client user name (with --password)"},
		{Name: "password", Arg: "PASSWORD", Field: "Password", Help: "client password (prefer the environment variable)"},
		{Name: "token", Arg: "TOKEN", Field: "Token", Help: "client token instead of user and password (prefer the environment variable)"},
		{Name: "config", Arg: "FILE", Field: "ConfigFile", Help: "nats-server config file for everything else; flags override it"},
		{Name: "insecure", Field: "Insecure", Help: "allow client/leafnode ports beyond loopback without credentials (warns loudly: anyone reaching them reads all mail)"},
		{Name: "log-level", Arg: "LEVEL", Field: "LogLevel", Help: "trace, debug, info, warn or error"},
		{Name: "log-format", Arg: "text|json", Field: "LogFormat", Help: "text or json"},
		{Name: "log-level-file", Arg: "FILE", Field: "LogLevelFile", Help: "file holding the log level (wins over --log-level); SIGHUP re-reads it"},
		{Name: "http", Arg: "ADDR", Field: "HTTPAddr", Help: "serve /metrics, /healthz and /readyz here (a bare :PORT binds to loopback); off unless given"},
		{Name: "http-token-file", Arg: "FILE", Field: "HTTPTokenFile", Help: "token file for the HTTP endpoint's protected paths; SIGHUP re-reads it"},
		{Name: "version", Field: "ShowVersion", NoEnv: true, Help: "print the version and exit"},
	},
}

// gateways is the Value of --gateways: every use adds to the map.
func gateways(field any) flag.Value { return gatewayList{field.(*map[string][]string)} }

type gatewayList struct{ m *map[string][]string }

func (g gatewayList) String() string {
	if g.m == nil {
		return ""
	}
	var parts []string
	for name, urls := range *g.m {
		parts = append(parts, name+"="+strings.Join(urls, ","))
	}
	return strings.Join(parts, ";")
}

func (g gatewayList) Set(v string) error {
	m, err := broker.ParseGateways(v)
	if err != nil {
		return err
	}
	if *g.m == nil {
		*g.m = map[string][]string{}
	}
	for name, urls := range m {
		(*g.m)[name] = append((*g.m)[name], urls...)
	}
	return nil
}
