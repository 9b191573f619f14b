package broker

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// This file is the NATS side of "who may say what" between msprelay nodes:
// one NATS user per node, with permissions that let a node publish
// deliveries only under its own name, receive only its own, answer only the
// requests it received, and reach the mailbox only through the JetStream
// API subjects the mailbox uses. The subject names mirror those of package
// switchboard (deliver subjects) and its mailbox; they are spelled out here
// because they are the security boundary an operator reviews in the
// generated file.

// Permissions are the subjects one NATS user may publish and subscribe to.
// AllowResponses lets the user answer requests it received (one reply
// each), whatever their reply subject.
type Permissions struct {
	Publish, Subscribe []string
	AllowResponses     bool
}

// InboxPrefix is the reply-subject prefix node uses for its own requests
// (deliveries it forwards, JetStream API calls). A node may subscribe only
// under its own prefix, so no other node can read or answer in its place.
func InboxPrefix(node string) string { return "_INBOX_" + node }

// Stream and bucket names the mailbox and conversations use, for the
// JetStream permissions (mailbox.Stream, mailbox.UsersBucket,
// conversation.Stream, conversation.KVBucket; the tests that run nodes on
// generated users catch a rename).
const (
	mailboxStream = "MSP_MAILBOX"
	usersStream   = "KV_MSP_USERS"
	convStream    = "MSP_CONVERSATIONS"
	convBucket    = "msp_conversations"
	convKVStream  = "KV_" + convBucket
	blocksStream  = "KV_MSP_BLOCKS" // mailbox.BlocksBucket: users' block lists (msp block)
)

// NodePermissions returns what node's NATS user may do. The deliver subject
// of a delivery from src to dst is msp.node.<dst>.deliver.<src>: node may
// publish only those ending in its own name, and subscribe only to those
// addressed to it, so a receiver can take the sending node's authenticated
// name from the subject. Mailbox subjects end in the storing node's name
// (mailbox.NodeSubject, msp.mbox.<user>.<sender>.<node>) the same way, so
// a drainer knows which node vouches for a stored message.
//
// What these permissions cannot bind (users roam, so every node must be
// able to drain, read and acknowledge any user's mailbox, write any user's
// known-user record, and write every conversation) is listed in
// docs/SECURITY.md, "Node credentials".
func NodePermissions(node string) Permissions {
	pub := []string{
		"msp.node.*.deliver." + node,
		"msp.node.*.status", // msp status asks every node
		"msp.mbox.*.*." + node,
		// Conversations: messages and typing notices to every member's
		// node, rings to the invitee's nodes, the roster bucket.
		"msp.conv.msg.*", "msp.conv.ctl.*", "msp.conv.ring.*",
		"$KV." + convBucket + ".>",
		"$KV.MSP_USERS.*",
		"$KV.MSP_BLOCKS.*",
		"$JS.API.INFO",
		"$JS.ACK." + mailboxStream + ".>",
	}
	for _, st := range []string{mailboxStream, usersStream, convStream, convKVStream, blocksStream} {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+st, "$JS.API.STREAM.CREATE."+st, "$JS.API.STREAM.UPDATE."+st,
			"$JS.FC."+st+".>")
	}
	// The mailbox's durable consumers (one per user, shared by every node
	// where she is signed in): create or update, look up, fetch. No
	// DELETE, PAUSE or leader step-down, which no node needs: one node's
	// credentials cannot remove the consumer another node's user drains
	// from.
	pub = append(pub,
		"$JS.API.CONSUMER.CREATE."+mailboxStream+".>", "$JS.API.CONSUMER.DURABLE.CREATE."+mailboxStream+".*",
		"$JS.API.CONSUMER.INFO."+mailboxStream+".*", "$JS.API.CONSUMER.MSG.NEXT."+mailboxStream+".*",
		"$JS.API.CONSUMER.NAMES."+mailboxStream, "$JS.API.CONSUMER.LIST."+mailboxStream)
	// The key-value buckets and the conversation stream read through
	// ordered and watch consumers the client library makes and deletes.
	for _, st := range []string{usersStream, convStream, convKVStream, blocksStream} {
		pub = append(pub, "$JS.API.CONSUMER.*."+st, "$JS.API.CONSUMER.*."+st+".>", "$JS.API.CONSUMER.*.*."+st+".>")
	}
	for _, st := range []string{usersStream, convStream, convKVStream, blocksStream} {
		pub = append(pub, "$JS.API.STREAM.MSG.GET."+st, "$JS.API.DIRECT.GET."+st, "$JS.API.DIRECT.GET."+st+".>")
	}
	// An empty conversation's history is purged when it expires; the
	// mailbox stream is never purged by a node.
	pub = append(pub, "$JS.API.STREAM.PURGE."+convStream)
	return Permissions{
		Publish: pub,
		Subscribe: []string{"msp.node." + node + ".deliver.*", "msp.node." + node + ".status", InboxPrefix(node) + ".>", "msp.mbox.>",
			"msp.conv.msg.*", "msp.conv.ctl.*", "msp.conv.ring." + node},
		AllowResponses: true,
	}
}

// NodeCredentials are one node's secret: an nkey seed (SU...) or a
// password, whichever the credentials were generated with.
type NodeCredentials struct {
	Node     string
	Seed     []byte // nkey seed; nil for a password user
	Password string // "" for an nkey user
}

// Credentials are generated users for a set of nodes: AuthConf is the
// nats-server configuration (an authorization block) for the relays or a
// node's exposed server, Nodes the matching secrets, one per node.
type Credentials struct {
	AuthConf []byte
	Nodes    []NodeCredentials
}

// ErrBadNodeList marks a GenerateCredentials call with no nodes, a name
// that is not valid, or a name given twice.
var ErrBadNodeList = errors.New("broker: credentials: bad node list")

// GenerateCredentials makes one NATS user per node with NodePermissions:
// an nkey pair, or with passwords a random 24-byte password stored in
// AuthConf only as a bcrypt hash.
func GenerateCredentials(nodes []string, passwords bool) (*Credentials, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrBadNodeList)
	}
	seen := map[string]bool{}
	c := &Credentials{}
	var conf strings.Builder
	conf.WriteString("# msprelay NATS users, one per node (generated by relay gen-creds).\n" +
		"# Each node may publish deliveries and store mail only under its own name, read only\n" +
		"# its own deliveries, and delete no stream or mailbox consumer.\n" +
		"authorization {\n  users = [\n")
	for _, n := range nodes {
		if err := checkName("node name", n); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadNodeList, err)
		}
		if seen[n] {
			return nil, fmt.Errorf("%w: node %s given twice", ErrBadNodeList, n)
		}
		seen[n] = true
		nc := NodeCredentials{Node: n}
		var who string
		if passwords {
			raw := make([]byte, 24)
			_, _ = rand.Read(raw)
			nc.Password = base64.RawURLEncoding.EncodeToString(raw)
			// The password is 192 random bits, beyond any guessing, so the
			// hash needs no extra cost; a high cost would only slow every
			// node's connect (seconds per attempt on a small relay).
			hash, err := bcrypt.GenerateFromPassword([]byte(nc.Password), bcrypt.MinCost)
			if err != nil {
				return nil, fmt.Errorf("broker: credentials: %w", err)
			}
			who = "user: " + strconv.Quote(n) + ", password: " + strconv.Quote(string(hash))
		} else {
			kp, err := nkeys.CreateUser()
			if err != nil {
				return nil, fmt.Errorf("broker: credentials: %w", err)
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return nil, fmt.Errorf("broker: credentials: %w", err)
			}
			seed, err := kp.Seed()
			if err != nil {
				return nil, fmt.Errorf("broker: credentials: %w", err)
			}
			nc.Seed = slices.Clone(seed) // Wipe clears the key pair's own copy
			kp.Wipe()
			who = "nkey: " + strconv.Quote(pub)
		}
		p := NodePermissions(n)
		fmt.Fprintf(&conf, "    # node %s\n    { %s,\n      permissions: {\n        publish: { allow: %s }\n        subscribe: { allow: %s }\n        allow_responses: %t\n      } }\n",
			n, who, quoteList(p.Publish), quoteList(p.Subscribe), p.AllowResponses)
		c.Nodes = append(c.Nodes, nc)
	}
	conf.WriteString("  ]\n}\n")
	c.AuthConf = []byte(conf.String())
	return c, nil
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Credential file names written by WriteCredentials.
const (
	AuthConfFile = "auth.conf"
	NkeySuffix   = ".nk"
	PassSuffix   = ".pass"
)

// WriteCredentials writes c into dir (created 0700 if missing): AuthConfFile
// and, per node, <node>.nk (the nkey seed) or <node>.pass (the password),
// every file 0600. It refuses to overwrite existing files, so that running
// it twice cannot silently lock the running nodes out.
func WriteCredentials(dir string, c *Credentials) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("broker: credentials dir: %w", err)
	}
	files := map[string][]byte{AuthConfFile: c.AuthConf}
	for _, n := range c.Nodes {
		if n.Seed != nil {
			files[n.Node+NkeySuffix] = append(slices.Clone(n.Seed), '\n')
		} else {
			files[n.Node+PassSuffix] = []byte(n.Password + "\n")
		}
	}
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("broker: credentials: %s already exists; remove it or choose another directory", filepath.Join(dir, name))
		}
	}
	var written []string
	for _, name := range names {
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return written, fmt.Errorf("broker: credentials: %w", err)
		}
		_, err = f.Write(files[name])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return written, fmt.Errorf("broker: credentials: write %s: %w", p, err)
		}
		written = append(written, p)
	}
	return written, nil
}
