package broker

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNoCredentials marks a Config that would accept clients from the
// network without authenticating them; Config.Insecure overrides it.
var ErrNoCredentials = fmt.Errorf("%w: listening beyond loopback without credentials", ErrBadConfig)

// exposure refuses client and leafnode listeners on non-loopback addresses
// when nothing authenticates the peers, unless cfg.Insecure. It runs last,
// when the options hold the config file's settings and the flags'.
func (cfg *Config) exposure(o *server.Options) error {
	if cfg.Insecure {
		return nil
	}
	if !o.DontListen && !isLoopback(o.Host) && !clientAuth(o) {
		return fmt.Errorf("%w: client port %s: configure users (relay gen-creds), a token or verified TLS client certificates, or pass --insecure",
			ErrNoCredentials, shown(o.Host, o.Port))
	}
	if o.LeafNode.Port != 0 && !isLoopback(o.LeafNode.Host) && !clientAuth(o) && !leafAuth(o) {
		return fmt.Errorf("%w: leafnode port %s: configure users or leafnodes authorization, or pass --insecure",
			ErrNoCredentials, shown(o.LeafNode.Host, o.LeafNode.Port))
	}
	return nil
}

// exposureWarnings names what an Insecure or route/gateway configuration
// leaves open, for Start to log loudly.
func (cfg *Config) exposureWarnings(o *server.Options) []string {
	var w []string
	if cfg.Insecure && !o.DontListen && !isLoopback(o.Host) && !clientAuth(o) {
		w = append(w, "client port accepts anyone without credentials (--insecure): anyone who reaches it can read every mailbox and forge deliveries")
	}
	if cfg.Insecure && o.LeafNode.Port != 0 && !isLoopback(o.LeafNode.Host) && !clientAuth(o) && !leafAuth(o) {
		w = append(w, "leafnode port accepts anyone without credentials (--insecure)")
	}
	if o.Cluster.Port != 0 && !isLoopback(o.Cluster.Host) && o.Cluster.Username == "" && !verifiesPeers(o.Cluster.TLSConfig) {
		w = append(w, "route port has no authorization and no verified TLS: set cluster authorization in --config")
	}
	if o.Gateway.Port != 0 && !isLoopback(o.Gateway.Host) && o.Gateway.Username == "" && !verifiesPeers(o.Gateway.TLSConfig) {
		w = append(w, "gateway port has no authorization and no verified TLS: set gateway authorization in --config")
	}
	return w
}

// clientAuth reports whether the client port authenticates every client.
func clientAuth(o *server.Options) bool {
	return o.Username != "" || o.Authorization != "" || len(o.Users) > 0 || len(o.Nkeys) > 0 ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.CustomClientAuthentication != nil ||
		o.TLSVerify && o.TLSMap
}

func leafAuth(o *server.Options) bool {
	return o.LeafNode.Username != "" || len(o.LeafNode.Users) > 0 || o.LeafNode.Nkey != "" ||
		o.LeafNode.TLSMap && verifiesPeers(o.LeafNode.TLSConfig)
}

// verifiesPeers reports whether tc requires and verifies peer certificates.
func verifiesPeers(tc *tls.Config) bool {
	return tc != nil && tc.ClientAuth == tls.RequireAndVerifyClientCert
}

// isLoopback reports whether host (a listen host) accepts only local
// connections. An empty host or a wildcard listens everywhere; a name other
// than localhost may resolve anywhere.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// shown writes a listen address for a message; port -1 is nats-server's "random".
func shown(host string, port int) string {
	p := fmt.Sprint(port)
	if port == server.RANDOM_PORT {
		p = "0"
	}
	return net.JoinHostPort(host, p)
}
