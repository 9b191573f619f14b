package node

import (
	"errors"
	"slices"
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
		want string // "" = valid, else a field FieldError.Fix names
	}{
		{"the embedded single-node default needs no flags", func(*Config) {}, ""},
		{"gossip on loopback needs no key", func(c *Config) { c.GossipAddr = "127.0.0.1:0" }, ""},
		{"gossip on every interface needs a key", func(c *Config) { c.GossipAddr = ":7946" }, "GossipKeyFile"},
		{"gossip on an address beyond loopback needs a key", func(c *Config) { c.GossipAddr = "192.0.2.1:7946" }, "GossipKeyFile"},
		{"advertising beyond loopback needs a key", func(c *Config) { c.GossipAddr = "127.0.0.1:0"; c.GossipAdvertise = "192.0.2.1:7946" }, "GossipKeyFile"},
		{"a key allows it", func(c *Config) { c.GossipAddr = ":7946"; c.GossipKeyFile = "k" }, ""},
		{"--gossip-insecure allows it", func(c *Config) { c.GossipAddr = ":7946"; c.GossipInsecure = true }, ""},
		{"--nats-auth needs --nats-listen", func(c *Config) { c.NATSAuthFile = "auth.conf"; c.NATSNkeyFile = "n.nk" }, "NATSListen"},
		{"an exposed server holding nodes to their names needs the users file", func(c *Config) { c.NATSListen = ":4222"; c.NATSNkeyFile = "n.nk"; c.NATSInsecure = true }, "NATSAuthFile"},
		{"--nats-auth needs the node's own credentials", func(c *Config) { c.NATSAuthFile = "auth.conf"; c.NATSListen = ":4222" }, "NATSNkeyFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.Name, c.DataDir = "n1", t.TempDir()
			tc.edit(&c)
			err := c.validate()
			var fe *FieldError
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrConfig) || !errors.As(err, &fe) || !slices.Contains(fe.Fix, tc.want)) {
				t.Fatalf("validate: %v, want a fix naming %q", err, tc.want)
			}
		})
	}
}
