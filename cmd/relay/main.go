// Command relay runs a standalone NATS relay for msprelay clusters: the
// nats-server that nodes reach with --nats, meshed by routes inside a site,
// joined by gateways between sites, accepting leafnodes, optionally with
// JetStream. Everything not covered by a flag goes in a nats-server config
// file (--config); flags override the file.
//
// Every flag can also be set through the environment as
// MSPRELAY_RELAY_<FLAG>, with dashes as underscores
// (MSPRELAY_RELAY_CLUSTER_NAME=east); a flag on the command line wins.
//
// The relay refuses to listen for clients or leafnodes beyond loopback
// without credentials unless --insecure is given. `relay gen-creds --nodes
// a,b,c --out DIR` writes DIR/auth.conf (one NATS user per node with
// per-subject permissions, for --config) and one 0600 secret per node
// (DIR/<node>.nk, or DIR/<node>.pass with --passwords).
//
// SIGHUP re-reads --log-level-file and --http-token-file and never stops
// the relay.
//
// Exit status: 0 after SIGTERM or SIGINT (clean shutdown) and for --help or
// --version, 1 if the server fails to start or stops on its own, 2 for bad
// flags or settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/internal/cliflags"
	"github.com/msprelay/msprelay/internal/sdnotify"
	"github.com/nats-io/nats-server/v2/server"
)

// defaultListen is the client address when neither --listen nor a config
// file says otherwise: the standard NATS port on all interfaces.
const defaultListen = ":4222"

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// settings is what the command line asks for.
type settings struct {
	cfg          broker.Config
	logLevel     string
	logFormat    string
	logLevelFile string
	httpAddr     string
	httpToken    string
	showVersion  bool
}

// errUsage marks a usage error already reported by the flag package.
var errUsage = errors.New("usage")

func run(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "gen-creds" {
		return genCreds(args[1:], stdout, stderr)
	}
	s, err := parseArgs(args, lookupEnv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	if s.showVersion {
		fmt.Fprintf(stdout, "msprelay relay %s (nats-server %s)\n", buildinfo.Version(), server.VERSION)
		return 0
	}
	logging, err := cliflags.NewLogging(stderr, s.logLevel, s.logFormat, s.logLevelFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	logger := logging.Logger
	s.cfg.Logger = logger
	b, err := broker.New(s.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	// Type=notify units wait for READY=1, sent once nats-server accepts
	// connections on every listener.
	notifySocket, _ := lookupEnv("NOTIFY_SOCKET")
	notifier, err := sdnotify.New(notifySocket)
	if err != nil {
		logger.Warn("not notifying the service manager", "err", err)
	}
	serve := func(ctx context.Context) error {
		return notifier.Run(ctx, logger, func(context.Context) (string, error) {
			if err := b.Start(); err != nil {
				return "", err
			}
			return "NATS clients on " + b.Addrs().Client, nil
		}, b.Run)
	}
	if s.httpAddr == "" {
		return cliflags.RunUntilSignal(logger, "relay", serve, logging.ReloadAndLog)
	}
	web, err := newOps(s.httpAddr, s.httpToken, b, s.cfg.JetStream, logger)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	reloadToken := func() {
		if s.httpToken == "" {
			return
		}
		if changed, err := web.Reload(); err != nil {
			logger.Error("http token not reloaded; keeping the old one", "err", err)
		} else {
			logger.Info("reloaded http token", "file", s.httpToken, "changed", changed)
		}
	}
	run := func(ctx context.Context) error {
		// The endpoint comes up first, so that /readyz answers 503 while
		// nats-server starts.
		if err := web.Start(); err != nil {
			return err
		}
		defer web.Close()
		return serve(ctx)
	}
	return cliflags.RunUntilSignal(logger, "relay", run, logging.ReloadAndLog, reloadToken)
}

func parseArgs(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (settings, error) {
	var s settings
	c := &s.cfg
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: relay [flags]\n       relay gen-creds --nodes a,b,c --out DIR [--passwords]\n\n"+
			"Runs a standalone NATS relay for msprelay nodes. Every flag may also be set\n"+
			"as env MSPRELAY_RELAY_<FLAG> (dashes as underscores); the command line wins.\n"+
			"A relay listening beyond loopback needs credentials (--config DIR/auth.conf from\n"+
			"gen-creds, --user/--password or --token) unless --insecure is given.\n\n")
		fs.PrintDefaults()
	}
	host, _ := os.Hostname()
	var routes, leafRemotes string
	gateways := gatewayList{}
	fs.StringVar(&c.Name, "name", broker.SanitizeName(host, "relay"), "server name, unique in the cluster (letters, digits, - and _)")
	fs.StringVar(&c.Listen, "listen", defaultListen, "client listen address; with --config and no --listen the file's setting is kept")
	fs.StringVar(&c.DataDir, "data", "", "JetStream store directory; JetStream is off unless given")
	fs.StringVar(&c.Cluster, "cluster", "", "route listen address for a cluster within a site, e.g. :6222")
	fs.StringVar(&c.ClusterName, "cluster-name", "", "cluster (site) name; also the gateway name unless --gateway-name")
	fs.StringVar(&routes, "routes", "", "comma-separated seed routes, nats-route://host:6222,...")
	fs.StringVar(&c.Gateway, "gateway", "", "gateway listen address for links between sites, e.g. :7222")
	fs.StringVar(&c.GatewayName, "gateway-name", "", "this site's gateway name (default --cluster-name)")
	fs.Var(gateways, "gateways", "remote sites: NAME=URL[,URL][;NAME=URL[,URL]]; may be repeated")
	fs.StringVar(&c.Leafnode, "leafnode", "", "leafnode listen address, e.g. :7422")
	fs.StringVar(&leafRemotes, "leaf-remotes", "", "comma-separated hub URLs to join as a leafnode, nats-leaf://host:7422,...")
	fs.StringVar(&c.Monitor, "monitor", "", "HTTP monitoring address (/healthz, /varz), e.g. 127.0.0.1:8222")
	fs.StringVar(&c.CertFile, "tls-cert", "", "client port TLS certificate (PEM)")
	fs.StringVar(&c.KeyFile, "tls-key", "", "client port TLS key (PEM)")
	fs.StringVar(&c.CAFile, "tls-ca", "", "CA (PEM) that client certificates must chain to; requires client certificates")
	fs.StringVar(&c.User, "user", "", "client user name (with --password)")
	fs.StringVar(&c.Password, "password", "", "client password (prefer env MSPRELAY_RELAY_PASSWORD)")
	fs.StringVar(&c.Token, "token", "", "client token instead of user and password (prefer env MSPRELAY_RELAY_TOKEN)")
	fs.StringVar(&c.ConfigFile, "config", "", "nats-server config file for everything else; flags override it")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow client/leafnode ports beyond loopback without credentials (warns loudly: anyone reaching them reads all mail)")
	fs.StringVar(&s.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.StringVar(&s.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&s.logLevelFile, "log-level-file", "", "file holding the log level (wins over --log-level); SIGHUP re-reads it")
	fs.StringVar(&s.httpAddr, "http", "", "serve /metrics, /healthz and /readyz here (a bare :PORT binds to loopback); off unless given")
	fs.StringVar(&s.httpToken, "http-token-file", "", "token file for the HTTP endpoint's protected paths; SIGHUP re-reads it")
	fs.BoolVar(&s.showVersion, "version", false, "print the version and exit")

	if err := cliflags.FromEnv(fs, "MSPRELAY_RELAY_", lookupEnv); err != nil {
		return s, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return s, err
		}
		return s, errUsage
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if s.httpToken != "" && s.httpAddr == "" {
		return s, errors.New("--http-token-file needs --http ADDR")
	}
	if c.ConfigFile != "" && !isSet(fs, "listen") {
		c.Listen = ""
	}
	c.JetStream = c.DataDir != ""
	c.Routes = cliflags.SplitList(routes)
	c.LeafRemotes = cliflags.SplitList(leafRemotes)
	if len(gateways) > 0 {
		c.Gateways = gateways
	}
	return s, nil
}

// gatewayList is the --gateways flag: every use adds to the map.
type gatewayList map[string][]string

func (g gatewayList) String() string {
	var parts []string
	for name, urls := range g {
		parts = append(parts, name+"="+strings.Join(urls, ","))
	}
	return strings.Join(parts, ";")
}

func (g gatewayList) Set(v string) error {
	m, err := broker.ParseGateways(v)
	if err != nil {
		return err
	}
	for name, urls := range m {
		g[name] = append(g[name], urls...)
	}
	return nil
}

// isSet reports whether a flag was given on the command line or in the
// environment.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
