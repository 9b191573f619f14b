package flagtable

import (
	"fmt"

	"github.com/msprelay/msprelay/internal/cliflags"
)

// Generated file paths, relative to the repository root.
const (
	ReadmePath   = "README.md"
	NodeManPath  = "deploy/man/msprelay-node.8"
	RelayManPath = "deploy/man/msprelay-relay.8"
)

// Sections of README.md the generator owns (see cliflags.BeginMarker).
const (
	nodeSection  = "node flags"
	relaySection = "relay flags"
)

// Generate returns every file the tables generate, by path: the man pages
// whole, and README.md with its flag tables replaced. read returns a file's
// current contents (README.md, to splice into).
func Generate(read func(path string) ([]byte, error)) (map[string][]byte, error) {
	nd := NodeDefaults()
	nodeRows, err := Node.Rows(&nd)
	if err != nil {
		return nil, err
	}
	rd := RelayDefaults()
	relayRows, err := Relay.Rows(&rd)
	if err != nil {
		return nil, err
	}
	readme, err := read(ReadmePath)
	if err != nil {
		return nil, fmt.Errorf("flagtable: %w", err)
	}
	if readme, err = cliflags.Splice(readme, nodeSection, cliflags.Markdown(nodeRows)); err != nil {
		return nil, fmt.Errorf("flagtable: %s: %w", ReadmePath, err)
	}
	if readme, err = cliflags.Splice(readme, relaySection, cliflags.Markdown(relayRows)); err != nil {
		return nil, fmt.Errorf("flagtable: %s: %w", ReadmePath, err)
	}
	return map[string][]byte{
		ReadmePath:   readme,
		NodeManPath:  []byte(cliflags.Roff(nodeMan, nodeRows)),
		RelayManPath: []byte(cliflags.Roff(relayMan, relayRows)),
	}, nil
}

// numberRule is the one rule for numbers, as the docs state it.
const numberRule = "A number flag set to 0 means its default. A negative value turns a " +
	"setting off only where its range says \"negative for off\"; any other value " +
	"outside the range is refused at start with a message naming the flag and " +
	"the range, never changed silently."

var nodeMan = cliflags.ManPage{
	Name:     "msprelay-node",
	Section:  "8",
	Summary:  "msprelay node: Message Send Protocol relay with sessions, presence and federation",
	Synopsis: []string{"[flags]"},
	Description: []string{
		"msprelay-node runs one node of an msprelay cluster. It serves the Message Send Protocol " +
			"(RFC 1312) on port 18, TCP and UDP, holds sessions for the users signed in on this host " +
			"(through a Unix socket whose peer credentials authenticate them, or a TCP listener), " +
			"publishes the host's logins as terminals, gossips presence with the other nodes and " +
			"federates deliveries through NATS: an embedded nats-server by default, or external relays " +
			"(msprelay-relay(8)). Messages for users who are not signed in wait in a mailbox kept in " +
			"JetStream.",
		numberRule,
	},
	Sections: []cliflags.ManSection{
		{Title: "Environment", Paragraphs: []string{
			"Every flag can also be set as MSPRELAY_<FLAG>, upper case with dashes as underscores " +
				"(MSPRELAY_SESSION_SOCKET=/run/x.sock); the command line wins. The packaged systemd unit " +
				"reads these variables from /etc/default/msprelay.",
		}},
		{Title: "Signals", Paragraphs: []string{
			"SIGTERM and SIGINT stop the node cleanly: it stops accepting, finishes replies under way, " +
				"tells sessions OUT SSD and leaves the gossip cluster.",
			"SIGHUP re-reads the session secrets, gossip key, log level file and HTTP token file, " +
				"logs what it reloaded, keeps the old values on error, and never stops the node.",
		}},
		{Title: "Exit status", Paragraphs: []string{
			"0 after a clean stop and for --help and --version; 1 if the node fails; 2 for bad flags " +
				"or settings.",
		}},
		{Title: "Files", Paragraphs: []string{
			"/var/lib/msprelay: the data directory of a node run by root (--data).",
			"/run/msprelay/session.sock: the session socket of a node run by root (--session-socket).",
			"/etc/default/msprelay: the packaged unit's environment.",
		}},
		{Title: "See also", Paragraphs: []string{
			"msprelay-relay(8), msp(1), write(1), utmp(5)",
		}},
	},
}

var relayMan = cliflags.ManPage{
	Name:     "msprelay-relay",
	Section:  "8",
	Summary:  "standalone NATS relay for msprelay clusters",
	Synopsis: []string{"[flags]", "gen-creds --nodes a,b,c --out DIR [--passwords]"},
	Description: []string{
		"msprelay-relay runs the nats-server that msprelay nodes reach with --nats: meshed by routes " +
			"inside a site, joined by gateways between sites, accepting leafnodes, optionally with " +
			"JetStream (the mailbox store). Everything not covered by a flag goes in a nats-server " +
			"configuration file (--config); flags override the file.",
		"The relay refuses to listen for clients or leafnodes beyond loopback without credentials " +
			"unless --insecure is given. gen-creds writes DIR/auth.conf (one NATS user per node with " +
			"per-subject permissions, for --config) and one 0600 secret per node (DIR/<node>.nk, or " +
			"DIR/<node>.pass with --passwords).",
	},
	Sections: []cliflags.ManSection{
		{Title: "Environment", Paragraphs: []string{
			"Every flag can also be set as MSPRELAY_RELAY_<FLAG>, upper case with dashes as " +
				"underscores (MSPRELAY_RELAY_CLUSTER_NAME=east); the command line wins. The packaged " +
				"systemd unit reads these variables from /etc/default/msprelay-relay.",
		}},
		{Title: "Signals", Paragraphs: []string{
			"SIGTERM and SIGINT stop the relay cleanly. SIGHUP re-reads --log-level-file and " +
				"--http-token-file and never stops it.",
		}},
		{Title: "Exit status", Paragraphs: []string{
			"0 after SIGTERM or SIGINT and for --help and --version; 1 if the server fails to start " +
				"or stops on its own; 2 for bad flags or settings.",
		}},
		{Title: "See also", Paragraphs: []string{
			"msprelay-node(8), msp(1), nats-server(8)",
		}},
	},
}
