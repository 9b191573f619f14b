package broker

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// MaxNameLen bounds server, cluster and gateway names; they appear in logs,
// monitoring output and (for node-embedded servers) NATS subjects.
const MaxNameLen = 64

// DefaultReadyTimeout bounds how long Start waits for the server's listeners.
const DefaultReadyTimeout = 10 * time.Second

// DefaultListen is a standalone relay's client address: the standard NATS
// port on all interfaces.
const DefaultListen = ":4222"

// DefaultConfig returns the defaults of a standalone relay (cmd/relay); the
// caller adds Name and Logger. A node's embedded server starts from the
// zero Config instead: no TCP listener unless asked.
func DefaultConfig() Config {
	return Config{ReadyTimeout: DefaultReadyTimeout, Listen: DefaultListen}
}

// Sentinel errors returned (wrapped) by New, Start, Run and Connect.
var (
	// ErrBadConfig marks a Config that New rejects.
	ErrBadConfig = errors.New("broker: bad config")
	// ErrStarted is returned by Start when the broker is already running.
	ErrStarted = errors.New("broker: already started")
	// ErrNotStarted is returned by Connect before Start has succeeded.
	ErrNotStarted = errors.New("broker: not started")
	// ErrClosed is returned by Start, Run and Connect after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrStopped is returned by Run when nats-server shut down without Close.
	ErrStopped = errors.New("broker: nats-server stopped unexpectedly")
)

// Config describes one nats-server. Addresses are "host:port"; port 0 asks
// for a random free port (read the real one back from Broker.Addrs) and an
// empty host means all interfaces.
//
// ConfigFile, when set, is loaded first (nats-server syntax) and every
// non-zero field below overrides the matching file setting: flags win over
// the file, as with nats-server itself. With a ConfigFile an empty Listen
// keeps the file's listen setting; without one it means "no TCP listener".
type Config struct {
	// Name is the server name, unique within a cluster: letters, digits,
	// '-' and '_' (see ValidName). Required unless ConfigFile sets server_name.
	Name string
	// Logger receives nats-server's log lines, with server=Name added; nil
	// discards them. The caller names the component (component=nats).
	// Debug lines are produced when it is enabled at slog.LevelDebug,
	// protocol traces when it is enabled at LevelTrace.
	Logger *slog.Logger
	// ReadyTimeout bounds Start; zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration

	// JetStream turns on persistence; it needs DataDir (or store_dir in
	// ConfigFile) so that data never lands in a temporary directory.
	JetStream bool
	// DataDir is the JetStream store directory. Setting it without
	// JetStream is an error rather than silently storing nothing.
	DataDir string
	// JetStreamMaxMem and JetStreamMaxStore cap JetStream resources in
	// bytes; zero lets nats-server size them from the host.
	JetStreamMaxMem, JetStreamMaxStore int64
	// Domain is the JetStream domain. Set it when a leafnode and its hub
	// both run JetStream, so that their APIs stay apart.
	Domain string
	// Site names the site (data centre) this relay runs in, for a cluster
	// stretched over several sites: the relay gets the server tag
	// "site:<Site>" (SiteTagPrefix) and JetStream places the replicas of
	// every replicated stream and bucket on relays of distinct sites, so
	// that a three-replica mailbox survives the loss of any one site
	// (docs/FEDERATION.md, Several sites). Empty (the default) adds no tag
	// and leaves placement to nats-server, as before. Give it to every
	// relay of the cluster or to none: with it, relays without a site tag
	// hold no replicas.
	Site string

	// Listen is the client address; "" means no TCP listener (in-process
	// connections only, see Connect).
	Listen string
	// Cluster is the route listen address; "" means not clustered.
	Cluster string
	// ClusterName names the cluster; routes only join servers of one name.
	ClusterName string
	// Routes are seed routes to other cluster members, nats-route://host:port.
	Routes []string
	// Gateway is the gateway listen address; "" means no gateway.
	Gateway string
	// GatewayName names this site; nats-server requires it to equal
	// ClusterName, so it defaults to ClusterName.
	GatewayName string
	// Gateways maps remote site names to their gateway URLs (see ParseGateways).
	Gateways map[string][]string
	// Leafnode is the address accepting leafnode connections; "" means none.
	Leafnode string
	// LeafRemotes are hub URLs (nats-leaf://host:port) this server joins as
	// a leafnode. They form one remote: the server keeps one connection to
	// whichever URL answers, failing over between them.
	LeafRemotes []string
	// Monitor is the HTTP monitoring address (/varz, /connz, /healthz ...).
	Monitor string

	// CertFile and KeyFile turn on TLS for the client port. CAFile, when
	// set, additionally requires and verifies client certificates.
	CertFile, KeyFile, CAFile string
	// User and Password require that pair on the client port.
	User, Password string
	// Token requires this token on the client port (exclusive with User).
	Token string
	// Insecure allows client and leafnode listeners on addresses other than
	// loopback without any credentials (no user, token, nkey or verified
	// client certificate). Without it New refuses such a configuration:
	// whoever reaches the port could read every mailbox and forge
	// deliveries. Start logs a warning when it is used.
	Insecure bool

	// ConfigFile is a nats-server configuration file for everything else
	// (accounts, permissions, cluster TLS ...). Its logging settings are
	// ignored: nats-server logs through Logger.
	ConfigFile string
}

// SiteTagPrefix starts the server tag Config.Site sets; it is also the
// JetStream unique tag, so that no two replicas share a site.
const SiteTagPrefix = "site:"

// ValidName reports whether s may be used as a server, cluster or gateway
// name: 1..MaxNameLen letters, digits, '-' or '_'. Dots, spaces and
// wildcards are excluded because names end up in subjects.
func ValidName(s string) error { return checkName("name", s) }

// checkName is ValidName with the role of the name in the message.
func checkName(what, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s %q: length must be 1..%d", ErrBadConfig, what, s, MaxNameLen)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return !nameRune(r) }); i >= 0 {
		return fmt.Errorf("%w: %s %q: byte %d: only letters, digits, - and _ are allowed", ErrBadConfig, what, s, i)
	}
	return nil
}

// SanitizeName turns an arbitrary string (a host name, say) into a valid
// name: the part before the first dot, other characters replaced by '-',
// cut to MaxNameLen. It returns fallback if nothing usable is left.
func SanitizeName(s, fallback string) string {
	s, _, _ = strings.Cut(s, ".")
	s = strings.Map(func(r rune) rune {
		if nameRune(r) {
			return r
		}
		return '-'
	}, s)
	s = s[:min(len(s), MaxNameLen)]
	if strings.Trim(s, "-") == "" {
		return fallback
	}
	return s
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// ParseGateways parses the gateway list syntax used by cmd/relay:
// "NAME=URL[,URL...][;NAME=URL[,URL...]...]", for example
// "east=nats://e1:7222,nats://e2:7222;west=nats://w1:7222".
// Blank entries are skipped; a name given twice accumulates its URLs.
func ParseGateways(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for entry := range strings.SplitSeq(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, list, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("%w: gateway %q: want NAME=URL[,URL]", ErrBadConfig, entry)
		}
		name = strings.TrimSpace(name)
		if err := checkName("gateway name", name); err != nil {
			return nil, err
		}
		for raw := range strings.SplitSeq(list, ",") {
			raw = strings.TrimSpace(raw)
			if _, err := parseURL(raw); err != nil {
				return nil, fmt.Errorf("gateway %s: %w", name, err)
			}
			out[name] = append(out[name], raw)
		}
	}
	return out, nil
}

// parseURL accepts URLs with a scheme and a host:port, which is what every
// nats-server URL list needs; a bare "host:port" would parse as a scheme.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %w", ErrBadConfig, raw, err)
	}
	if u.Scheme == "" || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%w: url %q: want scheme://host:port", ErrBadConfig, raw)
	}
	return u, nil
}

func parseURLs(what string, raws []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(raws))
	for _, raw := range raws {
		u, err := parseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// hostPort splits a listen address. Port 0 becomes server.RANDOM_PORT,
// because for nats-server 0 means "default" or "disabled", not "any".
func hostPort(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s address %q: %w", ErrBadConfig, what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: %s address %q: port must be 0..65535", ErrBadConfig, what, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// options turns cfg into nats-server options: the config file (if any) as
// the base, then every set field on top.
func (cfg *Config) options() (*server.Options, error) {
	o := &server.Options{}
	if cfg.ConfigFile != "" {
		fo, err := server.ProcessConfigFile(cfg.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("%w: config file %s: %w", ErrBadConfig, cfg.ConfigFile, err)
		}
		o = fo
	} else if cfg.Listen == "" {
		o.DontListen = true
	}
	// Our process owns signals (cmd/relay, cmd/node); logging goes to
	// Config.Logger, which New installs over whatever the file asked for.
	o.NoSigs = true
	o.DisableJetStreamBanner = true
	if cfg.Name != "" {
		o.ServerName = cfg.Name
	}
	if err := checkName("server name", o.ServerName); err != nil {
		return nil, err
	}

	steps := []func(*server.Options) error{
		cfg.listeners, cfg.jetStream, cfg.cluster, cfg.gateway, cfg.leafnode, cfg.security, cfg.exposure,
	}
	for _, step := range steps {
		if err := step(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (cfg *Config) listeners(o *server.Options) error {
	var err error
	if cfg.Listen != "" {
		o.DontListen = false
		if o.Host, o.Port, err = hostPort("listen", cfg.Listen); err != nil {
			return err
		}
	}
	if cfg.Monitor != "" {
		if o.HTTPHost, o.HTTPPort, err = hostPort("monitor", cfg.Monitor); err != nil {
			return err
		}
	}
	return nil
}

func (cfg *Config) jetStream(o *server.Options) error {
	if cfg.JetStream {
		o.JetStream = true
	}
	if cfg.DataDir != "" {
		if !o.JetStream {
			return fmt.Errorf("%w: DataDir %s given but JetStream is off", ErrBadConfig, cfg.DataDir)
		}
		o.StoreDir = cfg.DataDir
	}
	if o.JetStream && o.StoreDir == "" {
		return fmt.Errorf("%w: JetStream needs DataDir (or store_dir in the config file)", ErrBadConfig)
	}
	if cfg.JetStreamMaxMem < 0 || cfg.JetStreamMaxStore < 0 {
		return fmt.Errorf("%w: JetStream limits must not be negative", ErrBadConfig)
	}
	if cfg.JetStreamMaxMem > 0 {
		o.JetStreamMaxMemory = cfg.JetStreamMaxMem
	}
	if cfg.JetStreamMaxStore > 0 {
		o.JetStreamMaxStore = cfg.JetStreamMaxStore
	}
	if cfg.Domain != "" {
		if err := checkName("JetStream domain", cfg.Domain); err != nil {
			return err
		}
		o.JetStreamDomain = cfg.Domain
	}
	return cfg.site(o)
}

// site tags the server with its site and makes the site JetStream's unique
// tag. A site tag from the config file is replaced, as every flag wins over
// the file. nats-server compares tags in lower case (it lowers those of a
// config file), so the flag's value is lowered too.
func (cfg *Config) site(o *server.Options) error {
	if cfg.Site == "" {
		return nil
	}
	if err := checkName("site", cfg.Site); err != nil {
		return err
	}
	o.Tags = slices.DeleteFunc(o.Tags, func(t string) bool { return strings.HasPrefix(t, SiteTagPrefix) })
	o.Tags = append(o.Tags, SiteTagPrefix+strings.ToLower(cfg.Site))
	o.JetStreamUniqueTag = SiteTagPrefix
	return nil
}

func (cfg *Config) cluster(o *server.Options) error {
	var err error
	if cfg.ClusterName != "" {
		if err := checkName("cluster name", cfg.ClusterName); err != nil {
			return err
		}
		o.Cluster.Name = cfg.ClusterName
	}
	if cfg.Cluster != "" {
		if o.Cluster.Host, o.Cluster.Port, err = hostPort("cluster", cfg.Cluster); err != nil {
			return err
		}
	}
	// nats-server opens the route listener only after the client listener,
	// so a clustered server without one never routes and hangs in Shutdown.
	if o.Cluster.Port != 0 && o.DontListen {
		return fmt.Errorf("%w: Cluster needs a client Listen address", ErrBadConfig)
	}
	if len(cfg.Routes) > 0 {
		if o.Cluster.Port == 0 {
			return fmt.Errorf("%w: Routes need a Cluster listen address", ErrBadConfig)
		}
		if o.Routes, err = parseURLs("route", cfg.Routes); err != nil {
			return err
		}
	}
	// nats-server refuses this at Start with a message about system
	// accounts; say what to do instead.
	if o.JetStream && o.Cluster.Port != 0 && len(o.Routes) == 0 && len(o.LeafNode.Remotes)+len(cfg.LeafRemotes) == 0 {
		return fmt.Errorf("%w: JetStream in a cluster needs Routes: list every member (a route to this server itself is ignored)", ErrBadConfig)
	}
	return nil
}

func (cfg *Config) gateway(o *server.Options) error {
	var err error
	if cfg.Gateway != "" || cfg.GatewayName != "" {
		name := cmp.Or(cfg.GatewayName, cfg.ClusterName)
		if err := checkName("gateway name (GatewayName or ClusterName)", name); err != nil {
			return err
		}
		o.Gateway.Name = name
	}
	if cfg.Gateway != "" {
		if o.Gateway.Host, o.Gateway.Port, err = hostPort("gateway", cfg.Gateway); err != nil {
			return err
		}
	}
	if len(cfg.Gateways) > 0 && o.Gateway.Port == 0 {
		return fmt.Errorf("%w: Gateways need a Gateway listen address", ErrBadConfig)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Gateways)) {
		if err := checkName("remote gateway name", name); err != nil {
			return err
		}
		urls, err := parseURLs("gateway "+name, cfg.Gateways[name])
		if err != nil {
			return err
		}
		if len(urls) == 0 {
			return fmt.Errorf("%w: remote gateway %s has no URLs", ErrBadConfig, name)
		}
		o.Gateway.Gateways = append(o.Gateway.Gateways, &server.RemoteGatewayOpts{Name: name, URLs: urls})
	}
	// nats-server refuses to start JetStream behind a gateway without routes
	// ("JetStream cluster requires configured routes"), which does not say
	// that a single relay can simply route to itself.
	if o.JetStream && o.Gateway.Port != 0 && len(o.Routes) == 0 && len(cfg.LeafRemotes) == 0 {
		return fmt.Errorf("%w: JetStream with a Gateway needs cluster Routes: give the site a cluster (Cluster listen address and Routes listing every relay of the site; a single relay lists its own cluster URL)", ErrBadConfig)
	}
	return nil
}

func (cfg *Config) leafnode(o *server.Options) error {
	var err error
	if cfg.Leafnode != "" {
		if o.LeafNode.Host, o.LeafNode.Port, err = hostPort("leafnode", cfg.Leafnode); err != nil {
			return err
		}
	}
	// nats-server checks this too, but its message does not say where the
	// account can come from. Defining one means defining accounts, which
	// changes how every client authenticates, so we do not invent one.
	if o.LeafNode.Port != 0 && o.Gateway.Name != "" && o.SystemAccount == "" {
		return fmt.Errorf("%w: accepting leafnodes with a Gateway needs a system account: define accounts and system_account in ConfigFile", ErrBadConfig)
	}
	if len(cfg.LeafRemotes) > 0 {
		urls, err := parseURLs("leaf remote", cfg.LeafRemotes)
		if err != nil {
			return err
		}
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: urls})
	}
	return nil
}

func (cfg *Config) security(o *server.Options) error {
	switch {
	case cfg.Token != "" && (cfg.User != "" || cfg.Password != ""):
		return fmt.Errorf("%w: Token and User/Password are exclusive", ErrBadConfig)
	case (cfg.User == "") != (cfg.Password == ""):
		return fmt.Errorf("%w: User and Password go together", ErrBadConfig)
	case cfg.Token != "":
		o.Authorization = cfg.Token
	case cfg.User != "":
		o.Username, o.Password = cfg.User, cfg.Password
	}
	if cfg.CertFile == "" && cfg.KeyFile == "" {
		if cfg.CAFile != "" {
			return fmt.Errorf("%w: CAFile needs CertFile and KeyFile", ErrBadConfig)
		}
		return nil
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: cfg.CertFile,
		KeyFile:  cfg.KeyFile,
		CaFile:   cfg.CAFile,
		Verify:   cfg.CAFile != "",
	})
	if err != nil {
		return fmt.Errorf("%w: client TLS: %w", ErrBadConfig, err)
	}
	o.TLS, o.TLSConfig, o.TLSVerify = true, tc, cfg.CAFile != ""
	o.TLSCert, o.TLSKey, o.TLSCaCert = cfg.CertFile, cfg.KeyFile, cfg.CAFile
	return nil
}
