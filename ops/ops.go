// Package ops is the operator's HTTP endpoint of an msprelay daemon: one
// http.Server serving Prometheus metrics (/metrics), liveness (/healthz),
// readiness (/readyz), a read-only JSON API (/api/v1/...), server-sent
// presence events (/api/v1/events) and a status page for humans (/).
//
// The daemon owns everything the endpoint shows: it passes its own
// prometheus.Registry (never the global one), its readiness checks and, for
// a node, a Source that answers the API from the presence directory. A
// relay passes no Source and gets metrics and probes only.
//
// Server follows the usual life cycle: New validates and starts nothing,
// Start binds and serves on a goroutine the Server owns, Close stops it and
// waits for that goroutine and every handler.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition: Fn returns nil when it holds, or an
// error saying what is wrong.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address. A bare port (":9180") binds to loopback
	// only: exposing the endpoint beyond the host is a decision the
	// operator makes by naming an address.
	Addr string
	// Registry holds the daemon's metrics; required. New registers the Go
	// runtime and process collectors on it.
	Registry *prometheus.Registry
	// Checks decide /readyz.
	Checks []Check
	// Source answers the API, the events stream and the status page; nil
	// (a relay) serves metrics and probes only.
	Source Source
	// TokenFile, when set, holds the token the API, the events stream and
	// the status page require (see auth.go); Reload re-reads it.
	TokenFile string
	// Daemon and Version name what runs, for the status page.
	Daemon, Version string
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxStreams caps concurrent /api/v1/events streams; zero means 64.
	MaxStreams int
}

// Server is the HTTP endpoint. Start owns the listener and the serving
// goroutine; Close shuts the http.Server down and waits for both.
type Server struct {
	cfg     Config
	log     *slog.Logger
	srv     *http.Server
	auth    *tokenAuth
	streams chan struct{} // semaphore: one slot per open events stream
	quit    chan struct{} // closed by Close; ends events streams
	wg      sync.WaitGroup

	// mu guards addr, started and closed.
	mu      sync.Mutex
	addr    string
	started bool
	closed  bool
}

// ErrConfig marks a configuration New refuses.
var ErrConfig = errors.New("ops: bad config")

// ListenAddr turns a --http value into the address to bind: a bare port
// means loopback.
func ListenAddr(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("%w: --http %q: %v", ErrConfig, a, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// New validates cfg and registers the runtime collectors. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, fmt.Errorf("%w: Registry is required", ErrConfig)
	}
	addr, err := ListenAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	cfg.Addr = addr
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.MaxStreams < 0:
		return nil, fmt.Errorf("%w: MaxStreams %d: want above 0, or 0 for the default", ErrConfig, cfg.MaxStreams)
	case cfg.MaxStreams == 0:
		cfg.MaxStreams = DefaultMaxStreams
	}
	auth, err := newTokenAuth(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	if err := cfg.Registry.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("ops: register go collector: %w", err)
	}
	if err := cfg.Registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("ops: register process collector: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, auth: auth, streams: make(chan struct{}, cfg.MaxStreams), quit: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Source != nil {
		mux.Handle("GET /api/v1/who", s.auth.wrap(http.HandlerFunc(s.apiWho)))
		mux.Handle("GET /api/v1/nodes", s.auth.wrap(http.HandlerFunc(s.apiNodes)))
		mux.Handle("GET /api/v1/users/{name}", s.auth.wrap(http.HandlerFunc(s.apiUser)))
		mux.Handle("GET /api/v1/events", s.auth.wrap(http.HandlerFunc(s.events)))
		mux.Handle("GET /{$}", s.auth.wrap(http.HandlerFunc(s.page)))
		mux.Handle("GET /static/", s.auth.wrap(staticHandler()))
	}
	return mux
}

// Start binds the listener and serves on a goroutine the Server owns.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("ops: Start called twice or after Close")
	}
	s.started = true
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ops: listen %s: %w", s.cfg.Addr, err)
	}
	s.addr = l.Addr().String()
	s.wg.Go(func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http endpoint stopped", "err", err)
		}
	})
	s.log.Info("http endpoint listening", "addr", s.addr, "token", s.cfg.TokenFile != "")
	return nil
}

// Addr is the bound address, valid after Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Reload re-reads the token file. A file that cannot be read keeps the old
// token, so a botched edit does not open the endpoint.
func (s *Server) Reload() (bool, error) { return s.auth.reload() }

// Close stops serving: events streams end, in-flight requests get five
// seconds, then connections are closed. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	close(s.quit)
	if !started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	s.wg.Wait()
	return err
}

// Readiness is the /readyz body.
type Readiness struct {
	Status  string            `json:"status"`            // "ready" or "unavailable"
	Checks  map[string]string `json:"checks"`            // check name -> "ok" or what is wrong
	Failing []string          `json:"failing,omitempty"` // names of the checks that fail
}

// Ready runs every check (each bounded by ctx) and folds the results.
func Ready(ctx context.Context, checks []Check) Readiness {
	r := Readiness{Status: "ready", Checks: map[string]string{}}
	for _, c := range checks {
		if err := c.Fn(ctx); err != nil {
			r.Checks[c.Name] = err.Error()
			r.Failing = append(r.Failing, c.Name)
			continue
		}
		r.Checks[c.Name] = "ok"
	}
	if len(r.Failing) > 0 {
		r.Status = "unavailable"
	}
	return r
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rd := Ready(ctx, s.cfg.Checks)
	code := http.StatusOK
	if rd.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, apiError{Error: strings.TrimSpace(fmt.Sprintf(format, a...))})
}
