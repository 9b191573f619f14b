package broker

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// ClientAuth is how a node proves who it is to NATS: per-node credentials
// from GenerateCredentials (NkeyFile, or PasswordFile with User defaulting
// to the node name), or a shared User/Password or Token, plus TLS settings
// for tls:// relays. The zero value sends nothing.
type ClientAuth struct {
	// Node is the node's name: the default user for PasswordFile and the
	// owner of the reply-subject prefix (InboxPrefix).
	Node string
	// NkeyFile holds the node's nkey seed (<node>.nk from gen-creds).
	NkeyFile string
	// PasswordFile holds the node's password (<node>.pass from gen-creds).
	PasswordFile string
	// User, Password and Token are shared credentials given directly.
	User, Password, Token string
	// CAFile verifies the relays' certificates; CertFile and KeyFile are
	// this node's client certificate when the relays require one.
	CAFile, CertFile, KeyFile string
}

// PerNode reports whether a identifies this node alone (an nkey or its own
// password file), which is what lets the relays hold it to NodePermissions.
func (a ClientAuth) PerNode() bool { return a.NkeyFile != "" || a.PasswordFile != "" }

// Options returns the nats.go options for a: credentials, TLS and the
// node's own reply-subject prefix, which NodePermissions requires.
func (a ClientAuth) Options() ([]nats.Option, error) {
	set := 0
	for _, s := range []string{a.NkeyFile, a.PasswordFile, a.Token} {
		if s != "" {
			set++
		}
	}
	if a.User != "" && a.PasswordFile == "" {
		set++
	}
	if set > 1 {
		return nil, fmt.Errorf("%w: use one of nkey file, password file, user/password or token", ErrBadConfig)
	}
	var opts []nats.Option
	if a.Node != "" {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(a.Node)))
	}
	switch {
	case a.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey file %s: %w", ErrBadConfig, a.NkeyFile, err)
		}
		opts = append(opts, o)
	case a.PasswordFile != "":
		b, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: password file: %w", ErrBadConfig, err)
		}
		pw := strings.TrimSpace(string(b))
		if pw == "" {
			return nil, fmt.Errorf("%w: password file %s is empty", ErrBadConfig, a.PasswordFile)
		}
		user := a.User
		if user == "" {
			user = a.Node
		}
		opts = append(opts, nats.UserInfo(user, pw))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return nil, fmt.Errorf("%w: client certificate and key go together", ErrBadConfig)
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}
