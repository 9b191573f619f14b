package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// relayWith starts a relay on loopback using the generated users of nodes.
func relayWith(t *testing.T, nodes []string, passwords bool) (*Broker, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := GenerateCredentials(nodes, passwords)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	return started(t, Config{Name: "relay", Listen: "127.0.0.1:0", ConfigFile: filepath.Join(dir, AuthConfFile)}), dir
}

func TestWriteCredentialsFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "creds")
	c, err := GenerateCredentials([]string{"a", "b"}, false)
	if err != nil {
		t.Fatal(err)
	}
	files, err := WriteCredentials(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("wrote %q, want auth.conf and two seeds", files)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600 (it holds secrets)", f, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", st.Mode().Perm())
	}
	seed, _ := os.ReadFile(filepath.Join(dir, "a"+NkeySuffix))
	if conf, _ := os.ReadFile(filepath.Join(dir, AuthConfFile)); strings.Contains(string(conf), strings.TrimSpace(string(seed))) {
		t.Error("auth.conf holds a node's seed; it must hold only public keys")
	}
	if _, err := WriteCredentials(dir, c); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second write: %v, want a refusal to overwrite", err)
	}
	for _, bad := range [][]string{nil, {"a", "a"}, {"a.b"}, {"*"}} {
		if _, err := GenerateCredentials(bad, false); !errors.Is(err, ErrBadNodeList) {
			t.Errorf("GenerateCredentials(%q): %v, want ErrBadNodeList", bad, err)
		}
	}
}

// Issue 12: "a node may publish to other nodes' deliver subjects and its own
// replies, subscribe only to its own".
func TestNodePermissionsAreEnforced(t *testing.T) {
	t.Parallel()
	for _, passwords := range []bool{false, true} {
		b, dir := relayWith(t, []string{"a", "b"}, passwords)
		conn := func(node string) (*nats.Conn, chan error) {
			a := ClientAuth{Node: node, NkeyFile: filepath.Join(dir, node+NkeySuffix)}
			if passwords {
				a = ClientAuth{Node: node, PasswordFile: filepath.Join(dir, node+PassSuffix)}
			}
			opts, err := a.Options()
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 16)
			opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
			nc, err := dialTCP(t, b.ClientURL(), opts...)
			if err != nil {
				t.Fatalf("passwords=%v: connect as %s: %v", passwords, node, err)
			}
			return nc, errs
		}
		if nc, err := dialTCP(t, b.ClientURL()); err == nil {
			nc.Close()
			t.Fatalf("passwords=%v: connected without credentials", passwords)
		}
		na, errsA := conn("a")
		nb, _ := conn("b")
		serve(t, nb, "msp.node.b.deliver.*", "b got")
		if got := requestEventually(t, na, "msp.node.b.deliver.a", "hi"); got != "b got:hi" {
			t.Fatalf("passwords=%v: a -> b: %q", passwords, got)
		}
		expectViolation := func(what string, act func() error) {
			t.Helper()
			if err := act(); err != nil {
				return // refused at once is fine too
			}
			select {
			case err := <-errsA:
				if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
					t.Errorf("passwords=%v: %s: error %v, want a permissions violation", passwords, what, err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("passwords=%v: %s: allowed", passwords, what)
			}
		}
		expectViolation("publish in b's name", func() error { return na.Publish("msp.node.b.deliver.b", nil) })
		expectViolation("subscribe to b's deliveries", func() error { _, err := na.SubscribeSync("msp.node.b.deliver.*"); return err })
		expectViolation("subscribe to b's replies", func() error { _, err := na.SubscribeSync(InboxPrefix("b") + ".>"); return err })
		expectViolation("delete the mailbox stream", func() error { return na.Publish("$JS.API.STREAM.DELETE.MSP_MAILBOX", nil) })
		// Issue 18 item 8: "a node cannot make another node's user's
		// mailbox undrainable or forge another node's origin".
		expectViolation("store mail in b's name", func() error { return na.Publish("msp.mbox.alice.0123456789abcdef.b", nil) })
		expectViolation("delete a mailbox consumer", func() error { return na.Publish("$JS.API.CONSUMER.DELETE.MSP_MAILBOX.mbox-alice", nil) })
		// "Conversation messages ... are writable by any node the same
		// way": room messages and typing notices go on subjects ending in
		// the publishing node (conversation's msgSubject, ctlSubject).
		expectViolation("post a room message in b's name", func() error { return na.Publish("msp.conv.msg.lobby.b", nil) })
		expectViolation("post a room message on the subject without a node", func() error { return na.Publish("msp.conv.msg.lobby", nil) })
		expectViolation("send a typing notice in b's name", func() error { return na.Publish("msp.conv.ctl.lobby.b", nil) })
	}
}

// "nkeys or user/password files, and TLS when configured": a node's
// ClientAuth reaches a relay that requires TLS with client certificates
// and a generated user; without the client certificate it cannot.
func TestClientAuthOverTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	dir := t.TempDir()
	c, err := GenerateCredentials([]string{"a"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	b := started(t, Config{Name: "tlsrelay", Listen: "127.0.0.1:0", ConfigFile: filepath.Join(dir, AuthConfFile),
		CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CA})
	if !strings.HasPrefix(b.ClientURL(), "tls://") {
		t.Fatalf("ClientURL %q, want tls://", b.ClientURL())
	}
	auth := ClientAuth{Node: "a", NkeyFile: filepath.Join(dir, "a"+NkeySuffix), CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey}
	opts, err := auth.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialTCP(t, b.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("with CA, client certificate and nkey: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("connection is not TLS")
	}
	auth.CertFile, auth.KeyFile = "", ""
	if opts, err = auth.Options(); err != nil {
		t.Fatal(err)
	}
	if nc, err := dialTCP(t, b.ClientURL(), opts...); err == nil {
		nc.Close()
		t.Fatal("connected without the client certificate")
	}
	if _, err := (ClientAuth{Node: "a", CertFile: p.ClientCert}).Options(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("certificate without key: %v, want ErrBadConfig", err)
	}
	if _, err := (ClientAuth{Node: "a", NkeyFile: "x", Token: "t"}).Options(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("two kinds of credentials: %v, want ErrBadConfig", err)
	}
}
