package node

import (
	"errors"
	"strings"
	"testing"
)

// Issue 12: "require --gossip-key for any non-loopback gossip address
// (explicit --gossip-insecure to override, with a warning)", and the
// exposed embedded NATS server's credentials go together.
func TestSecureGossipAndNATSSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"the embedded single-node default needs no flags", func(*Config) {}, ""},
		{"gossip on loopback needs no key", func(c *Config) { c.GossipAddr = "127.0.0.1:0" }, ""},
		{"gossip on every interface needs a key", func(c *Config) { c.GossipAddr = ":7946" }, "--gossip-key"},
		{"gossip on an address beyond loopback needs a key", func(c *Config) { c.GossipAddr = "192.0.2.1:7946" }, "--gossip-key"},
		{"advertising beyond loopback needs a key", func(c *Config) { c.GossipAddr = "127.0.0.1:0"; c.GossipAdvertise = "192.0.2.1:7946" }, "--gossip-key"},
		{"a key allows it", func(c *Config) { c.GossipAddr = ":7946"; c.GossipKeyFile = "k" }, ""},
		{"--gossip-insecure allows it", func(c *Config) { c.GossipAddr = ":7946"; c.GossipInsecure = true }, ""},
		{"--nats-auth needs --nats-listen", func(c *Config) { c.NATSAuthFile = "auth.conf"; c.NATSNkeyFile = "n.nk" }, "needs --nats-listen"},
		{"an exposed server holding nodes to their names needs the users file", func(c *Config) { c.NATSListen = ":4222"; c.NATSNkeyFile = "n.nk"; c.NATSInsecure = true }, "needs --nats-auth"},
		{"--nats-auth needs the node's own credentials", func(c *Config) { c.NATSAuthFile = "auth.conf"; c.NATSListen = ":4222" }, "--nats-nkey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.Name, c.DataDir = "n1", t.TempDir()
			tc.edit(&c)
			err := c.validate()
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("validate: %v, want %q", err, tc.want)
			}
		})
	}
}
