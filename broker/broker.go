// Package broker runs nats-server, the transport that federates msprelay
// nodes, with the project's conventions: slog logging, validated names,
// "host:port" addresses with port 0 meaning random, Start that waits until
// the server takes connections, and an idempotent Close that waits for it.
//
// A node embeds one Broker (in-process, JetStream on, store in its data
// dir) so that one command is a complete single-host service; cmd/relay
// runs one as a standalone relay with routes, gateways and leafnodes. Dial
// is the client side for nodes that connect to external relays instead.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// inProcessURL only seeds nats.go's server pool; with nats.InProcessServer
// every (re)connect goes through the in-process pipe, never to this address.
const inProcessURL = "nats://in-process:4222"

type state int

const (
	stateNew state = iota
	stateStarted
	stateClosed
)

// Addrs are the addresses a started Broker listens on, "" for the ones it
// does not. Ports are the bound ones, also when the Config asked for 0.
type Addrs struct {
	Client, Cluster, Gateway, Leafnode, Monitor string
}

// Broker owns one nats-server. Start launches it; Close (or the end of
// Run's context) shuts it down and waits for all of its goroutines, and for
// the one goroutine of ours that watches for shutdown. Connections made
// with Connect belong to the caller, who closes them.
type Broker struct {
	cfg        Config
	log        *slog.Logger
	srv        *server.Server
	natsLog    *slogAdapter
	tls        bool     // client port requires TLS, so ClientURL says tls://
	warnings   []string // what the configuration leaves open, logged by Start
	listenHost string   // configured client host, to pick loopback for wildcards
	// down is closed by the watcher goroutine (started by Start) once
	// nats-server has shut down, for whatever reason.
	down      chan struct{}
	closeOnce sync.Once

	// mu guards state, addrs, clientURL and lock. Start holds it while the
	// server comes up, so Close waits for a Start in progress.
	mu        sync.Mutex
	state     state
	addrs     Addrs
	clientURL string
	lock      *DirLock // the JetStream store's lock, held from Start to Close; nil without a store
}

// New validates cfg and prepares the server; nothing listens or runs yet.
func New(cfg Config) (*Broker, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("broker: new: %w", err)
	}
	cfg.Name = opts.ServerName
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: new server %s: %w: %w", cfg.Name, ErrBadConfig, err)
	}
	b := &Broker{
		cfg:        cfg,
		log:        cfg.Logger.With("server", cfg.Name),
		srv:        srv,
		tls:        opts.TLSConfig != nil,
		listenHost: opts.Host,
		warnings:   cfg.exposureWarnings(opts),
		down:       make(chan struct{}),
	}
	b.natsLog = newSlogAdapter(b.log)
	debug, trace := b.natsLog.levels()
	srv.SetLoggerV2(b.natsLog, debug, trace, false)
	return b, nil
}

// Start launches nats-server and returns once it accepts connections on
// every configured listener, or an error after Config.ReadyTimeout or as
// soon as nats-server reports a fatal error (a port in use, an unusable
// store). A Broker that failed to start is closed.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateStarted:
		return ErrStarted
	case stateClosed:
		return ErrClosed
	}
	if b.cfg.JetStream && b.cfg.DataDir != "" {
		// Before the store is opened: two servers on one store corrupt it.
		if err := os.MkdirAll(b.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("broker: start %s: %w", b.cfg.Name, err)
		}
		lock, err := LockDir(b.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("broker: start %s: store %w", b.cfg.Name, err)
		}
		b.lock = lock
	}
	b.srv.Start()
	if err := b.waitReady(); err != nil {
		b.state = stateClosed
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.lock.Release()
		return fmt.Errorf("broker: start %s: %w", b.cfg.Name, err)
	}
	b.state = stateStarted
	go func() {
		b.srv.WaitForShutdown()
		close(b.down)
	}()
	b.addrs = b.readAddrs()
	if b.addrs.Client != "" {
		b.clientURL = b.urlFor(b.addrs.Client)
	}
	for _, w := range b.warnings {
		b.log.Warn("INSECURE: "+w, "client", b.clientURL)
	}
	b.log.Info("nats-server ready",
		"client", b.clientURL, "cluster", b.addrs.Cluster, "gateway", b.addrs.Gateway,
		"leafnode", b.addrs.Leafnode, "monitor", b.addrs.Monitor,
		"jetstream", b.srv.JetStreamEnabled())
	return nil
}

// waitReady polls in short slices so that a fatal error ends the wait at
// once instead of after the whole timeout.
func (b *Broker) waitReady() error {
	const slice = 50 * time.Millisecond
	deadline := time.Now().Add(b.cfg.ReadyTimeout)
	for {
		select {
		case msg := <-b.natsLog.fatal:
			return fmt.Errorf("nats-server: %s", msg)
		default:
		}
		if b.srv.ReadyForConnections(slice) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready for connections after %s", b.cfg.ReadyTimeout)
		}
	}
}

func (b *Broker) readAddrs() Addrs {
	var a Addrs
	if ad := b.srv.Addr(); ad != nil {
		a.Client = ad.String()
	}
	if ad := b.srv.ClusterAddr(); ad != nil {
		a.Cluster = ad.String()
	}
	if ad := b.srv.GatewayAddr(); ad != nil {
		a.Gateway = ad.String()
	}
	if ad := b.srv.MonitorAddr(); ad != nil {
		a.Monitor = ad.String()
	}
	// nats-server has no accessor for the leafnode listener; varz reports
	// the bound port.
	if vz, err := b.srv.Varz(nil); err == nil && vz.LeafNode.Port > 0 {
		a.Leafnode = net.JoinHostPort(vz.LeafNode.Host, strconv.Itoa(vz.LeafNode.Port))
	}
	return a
}

// urlFor makes a dialable client URL: a wildcard listen address is reached
// through loopback, IPv6 only when the wildcard was written as "::".
func (b *Broker) urlFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
		if b.listenHost == "::" {
			host = "::1"
		}
	}
	scheme := "nats"
	if b.tls {
		scheme = "tls"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Run starts the broker unless Start already did, blocks until ctx is done
// or Close is called, then shuts down. It returns nil after a requested
// shutdown and ErrStopped if nats-server stopped on its own.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Start(); err != nil && !errors.Is(err, ErrStarted) {
		return err
	}
	select {
	case <-ctx.Done():
		return b.Close()
	case <-b.down:
	}
	b.mu.Lock()
	requested := b.state == stateClosed
	b.mu.Unlock()
	if requested {
		return nil
	}
	b.Close()
	return fmt.Errorf("broker: run %s: %w", b.cfg.Name, ErrStopped)
}

// Close shuts nats-server down and waits until it and our watcher goroutine
// have exited. It is idempotent and safe from any goroutine; a second call
// waits for the first to finish.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		started := b.state == stateStarted
		b.state = stateClosed
		b.mu.Unlock()
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		if started {
			<-b.down
			b.log.Info("nats-server stopped")
		}
		b.mu.Lock()
		b.lock.Release() // the store is closed
		b.mu.Unlock()
	})
	return nil
}

// Addrs reports the bound listen addresses; zero before Start.
func (b *Broker) Addrs() Addrs {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs
}

// ClientURL is a URL a client on this host can dial (nats:// or tls://);
// "" before Start and when the broker has no TCP listener.
func (b *Broker) ClientURL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clientURL
}

// Connect opens an in-process client connection, which works with or
// without a TCP listener, skips TLS (nothing leaves the process) and is
// the fastest path. It sends the Config's User/Password or Token; opts
// are applied after ours and may override them. The caller owns and
// closes the connection.
func (b *Broker) Connect(opts ...nats.Option) (*nats.Conn, error) {
	b.mu.Lock()
	st := b.state
	b.mu.Unlock()
	switch st {
	case stateNew:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	base := []nats.Option{nats.InProcessServer(b.srv), nats.Name(b.cfg.Name)}
	switch {
	case b.cfg.Token != "":
		base = append(base, nats.Token(b.cfg.Token))
	case b.cfg.User != "":
		base = append(base, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	nc, err := nats.Connect(inProcessURL, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect in-process to %s: %w", b.cfg.Name, err)
	}
	return nc, nil
}

// Server is the underlying nats-server, for tests and diagnostics. Do not
// shut it down directly; call Close.
func (b *Broker) Server() *server.Server { return b.srv }
