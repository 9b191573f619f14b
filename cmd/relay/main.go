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

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/internal/cliflags"
	"github.com/msprelay/msprelay/internal/flagtable"
	"github.com/msprelay/msprelay/internal/sdnotify"
	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// settings is what the command line asks for.
type settings = flagtable.RelaySettings

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
	if s.ShowVersion {
		fmt.Fprintf(stdout, "msprelay relay %s (nats-server %s)\n", buildinfo.Version(), server.VERSION)
		return 0
	}
	logging, err := cliflags.NewLogging(stderr, s.LogLevel, s.LogFormat, s.LogLevelFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	logger := logging.Logger
	s.Config.Logger = logger.With("component", "nats")
	b, err := broker.New(s.Config)
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
	if s.HTTPAddr == "" {
		return cliflags.RunUntilSignal(logger, "relay", serve, logging.ReloadAndLog)
	}
	web, err := newOps(s.HTTPAddr, s.HTTPTokenFile, b, s.Config.JetStream, logger)
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	reloadToken := func() {
		if s.HTTPTokenFile == "" {
			return
		}
		if changed, err := web.Reload(); err != nil {
			logger.Error("http token not reloaded; keeping the old one", "err", err)
		} else {
			logger.Info("reloaded http token", "file", s.HTTPTokenFile, "changed", changed)
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
	s := flagtable.RelayDefaults()
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: relay [flags]\n       relay gen-creds --nodes a,b,c --out DIR [--passwords]\n\n"+
			"Runs a standalone NATS relay for msprelay nodes. Every flag may also be set\n"+
			"as env MSPRELAY_RELAY_<FLAG> (dashes as underscores); the command line wins.\n"+
			"A relay listening beyond loopback needs credentials (--config DIR/auth.conf from\n"+
			"gen-creds, --user/--password or --token) unless --insecure is given.\n\n")
		flagtable.Relay.Usage(stderr, fs)
	}
	if err := flagtable.Relay.Parse(fs, &s, args, lookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) || !fs.Parsed() {
			// A bad environment variable is reported by the caller; a bad
			// flag the flag package has reported already.
			return s, err
		}
		return s, errUsage
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if s.HTTPTokenFile != "" && s.HTTPAddr == "" {
		return s, errors.New("--http-token-file needs --http ADDR")
	}
	c := &s.Config
	if c.ConfigFile != "" && !isSet(fs, "listen") {
		c.Listen = ""
	}
	c.JetStream = c.DataDir != ""
	return s, nil
}

// isSet reports whether a flag was given on the command line or in the
// environment.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
