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

	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/internal/cliflags"
	"github.com/msprelay/msprelay/internal/flagtable"
	"github.com/msprelay/msprelay/internal/sdnotify"
	"github.com/msprelay/msprelay/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	s := flagtable.NodeDefaults()
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: node [flags]\n\nRuns an msprelay node. Flags (env MSPRELAY_<FLAG> also works; man msprelay-node):\n")
		flagtable.Node.Usage(stderr, fs)
	}
	if err := flagtable.Node.Parse(fs, &s, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if !fs.Parsed() {
			// The environment, not the command line, was wrong.
			fmt.Fprintf(stderr, "node: %v\n", err)
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "node: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if s.ShowVersion {
		fmt.Fprintln(os.Stdout, "msprelay node", buildinfo.Version())
		return 0
	}
	cfg := s.Config
	if len(cfg.Join) > 0 && cfg.GossipAddr == "" {
		cfg.GossipAddr = ":7946"
	}
	logging, err := cliflags.NewLogging(stderr, s.LogLevel, s.LogFormat, s.LogLevelFile)
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
	// A node that could not start (a port, socket or data directory held
	// by another node, a missing privilege) is a setting to change, like a
	// bad flag: exit 2, as for one. A node that started and then failed
	// exits 1.
	startFailed := false
	// Type=notify units wait for READY=1, sent once every listener is bound.
	notifier, err := sdnotify.New(os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		logger.Warn("not notifying the service manager", "err", err)
	}
	run := func(ctx context.Context) error {
		return inFlagTerms(notifier.Run(ctx, logger, func(ctx context.Context) (string, error) {
			if err := n.Start(ctx); err != nil {
				startFailed = true
				return "", err
			}
			return fmt.Sprintf("MSP on %s, session socket %s", n.Addrs().MSP, n.Addrs().SessionSocket), nil
		}, n.Serve))
	}
	// SIGHUP: the log level, then the node's secrets, gossip keys and
	// HTTP token; each logs what it reloaded, and failures keep old values.
	code := cliflags.RunUntilSignal(logger, "node", run, logging.ReloadAndLog, func() { _ = n.Reload() })
	if code != 0 && startFailed {
		return 2
	}
	return code
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
	flag := flagtable.Node.FlagFor(fe.Field)
	switch {
	case flag == "":
		return err
	case errors.Is(err, node.ErrConfig) && len(fe.Fix) > 0:
		var fix []string
		for _, f := range fe.Fix {
			if ff := flagtable.Node.FlagFor(f); ff != "" {
				fix = append(fix, ff)
			}
		}
		return fmt.Errorf("%s: %w (see %s)", flag, fe.Err, strings.Join(fix, ", "))
	case errors.Is(err, node.ErrConfig):
		return fmt.Errorf("%s: %w", flag, fe.Err)
	case errors.Is(err, node.ErrDataDirInUse):
		return fmt.Errorf("%s: %w: stop that node, or give this one its own directory with %s DIR", flag, fe.Err, flag)
	case fe.Field == "DataDir":
		// Not held by a node (that is the case above): a directory this
		// user cannot create or use.
		return fmt.Errorf("%s: %w", flag, fe.Err)
	case fe.Field == "MSPAddr" && errors.Is(err, os.ErrPermission):
		// Issue 20: the advice about "another node" sent a user without
		// root looking for a node that was not there.
		return fmt.Errorf("%s: %w: ports below 1024 need root or the CAP_NET_BIND_SERVICE capability "+
			"(setcap cap_net_bind_service=+ep on this program); or listen on a higher port, e.g. %s :1818", flag, fe.Err, flag)
	}
	return fmt.Errorf("%s: %w (if another node runs on this host, give this one its own with %s)", flag, fe.Err, flag)
}
