package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/cliflags"
)

// genCreds is `relay gen-creds`: it writes the relays' users file and one
// secret per node. Exit status 0 on success, 1 if writing fails, 2 for
// bad flags.
func genCreds(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay gen-creds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: relay gen-creds --nodes a,b,c --out DIR [--passwords]\n\n"+
			"Writes DIR/auth.conf, the NATS users of the nodes with per-subject permissions\n"+
			"(give it to every relay with --config, or include it in their config file,\n"+
			"or to a node exposing its server with --nats-auth), and one secret per node,\n"+
			"mode 0600: DIR/<node>.nk for --nats-nkey, or DIR/<node>.pass for\n"+
			"--nats-password-file. Existing files are never overwritten.\n\n")
		fs.PrintDefaults()
	}
	var nodes, out string
	var passwords bool
	fs.StringVar(&nodes, "nodes", "", "comma-separated node names (required)")
	fs.StringVar(&out, "out", "", "directory to write into, created 0700 (required)")
	fs.BoolVar(&passwords, "passwords", false, "generate passwords (stored bcrypt-hashed in auth.conf) instead of nkeys")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	list := cliflags.SplitList(nodes)
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "relay gen-creds: unexpected argument %q\n", fs.Arg(0))
		return 2
	case len(list) == 0 || out == "":
		fmt.Fprintln(stderr, "relay gen-creds: --nodes and --out are required")
		return 2
	}
	c, err := broker.GenerateCredentials(list, passwords)
	if err != nil {
		fmt.Fprintf(stderr, "relay gen-creds: %v\n", err)
		return 2
	}
	files, err := broker.WriteCredentials(out, c)
	if err != nil {
		fmt.Fprintf(stderr, "relay gen-creds: %v\n", err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	flagName, suffix := "--nats-nkey", broker.NkeySuffix
	if passwords {
		flagName, suffix = "--nats-password-file", broker.PassSuffix
	}
	fmt.Fprintf(stdout, "\nrelays: relay --config %s ...\nnode n: node --nats URL %s %s ...\n",
		filepath.Join(out, broker.AuthConfFile), flagName, filepath.Join(out, "n"+suffix))
	return 0
}
