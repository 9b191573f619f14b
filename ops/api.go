package ops

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/msprelay/msprelay/presence"
)

// Source is what a node shows through the API. Every method must leave out
// hidden terminals, in lists and in counts alike: the API is read by people
// who may not see them, and a hidden user must look offline.
type Source interface {
	// Who lists the visible terminals in the cluster, ordered by user,
	// node, terminal.
	Who() []WhoEntry
	// Nodes asks every node of the cluster for its status.
	Nodes(ctx context.Context) []NodeStatus
	// User describes one user; ErrNotFound when nothing may be shown.
	User(ctx context.Context, name string) (UserInfo, error)
	// Changes delivers directory changes until cancel is called or the
	// subscription ends (c is closed then: the reader lagged, or the node
	// is closing; a reader resubscribes or stops). The events stream only
	// uses them as a signal to send the who list again.
	Changes() (c <-chan presence.Event, cancel func())
	// Rates are the recent delivery counts.
	Rates() Rates
	// Self is this node's name.
	Self() string
}

// ErrNotFound is what Source.User returns for a user the API may not show.
var ErrNotFound = errors.New("ops: not found")

// WhoEntry is one signed-in terminal, or a signed-out user's last sighting,
// with the same fields and meaning as a line of `msp who --json`.
type WhoEntry struct {
	User       string     `json:"user"`
	Node       string     `json:"node"`
	Term       string     `json:"term"`
	State      string     `json:"state"`
	Aliases    []string   `json:"aliases"`
	Since      *time.Time `json:"since,omitempty"`
	LastActive *time.Time `json:"last_active,omitempty"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	// Kind is "session" or "tty" (a host login's terminal); Idle is a
	// tty's seconds since its last input. As in `msp who --json`.
	Kind string `json:"kind,omitempty"`
	Idle *int64 `json:"idle,omitempty"`
}

// NodeStatus is one node as /api/v1/nodes and `msp status` show it.
type NodeStatus struct {
	Name       string            `json:"name"`
	Self       bool              `json:"self"`                 // the node that answered the request
	Gossip     string            `json:"gossip,omitempty"`     // gossip address; "" when it does not gossip
	MSP        string            `json:"msp,omitempty"`        // its MSP address, host:port
	Principals int               `json:"principals"`           // visible terminals signed in there
	Synced     bool              `json:"synced"`               // this node holds all of its presence
	Reachable  bool              `json:"reachable"`            // it answered over NATS
	Status     string            `json:"status"`               // "ready", "unavailable" or "unreachable"
	Checks     map[string]string `json:"checks,omitempty"`     // its readiness checks
	Version    string            `json:"version,omitempty"`    // its msprelay version
	StartedAt  *time.Time        `json:"started_at,omitempty"` // when it started
	Error      string            `json:"error,omitempty"`      // why it is unreachable
	// Warnings are settings that keep part of a running node from working
	// (a missing utmp file: no tty terminals), in words for the operator.
	Warnings []string `json:"warnings,omitempty"`
}

// UserInfo is /api/v1/users/NAME.
type UserInfo struct {
	User string `json:"user"`
	// Terminals are where she is signed in (visible ones only).
	Terminals []WhoEntry `json:"terminals"`
	// LastSeen is her last sign-in or sign-out anywhere, when the cluster
	// recorded it and it may be shown.
	LastSeen *LastSeen `json:"last_seen,omitempty"`
	// MailboxDepth is how many messages wait in her mailbox while she has
	// a visible terminal; null without one (a hidden user's mail drains,
	// an offline user's waits) or when the store could not be asked.
	MailboxDepth *uint64 `json:"mailbox_depth"`
}

// LastSeen is the known-users record of a user.
type LastSeen struct {
	Time  time.Time `json:"time"`
	Node  string    `json:"node"`
	Term  string    `json:"term"`
	State string    `json:"state"`
}

// Rates are delivery counts over the last minute and five minutes, by
// outcome ("delivered", "queued", "refused", "failed").
type Rates struct {
	LastMinute      map[string]uint64 `json:"last_minute"`
	LastFiveMinutes map[string]uint64 `json:"last_five_minutes"`
}

func (s *Server) apiWho(w http.ResponseWriter, _ *http.Request) {
	who := s.cfg.Source.Who()
	if who == nil {
		who = []WhoEntry{}
	}
	writeJSON(w, http.StatusOK, who)
}

func (s *Server) apiNodes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, s.cfg.Source.Nodes(ctx))
}

func (s *Server) apiUser(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" || len(name) > 256 {
		writeError(w, http.StatusBadRequest, "bad user name")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	u, err := s.cfg.Source.User(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no such user")
	case err != nil:
		writeError(w, http.StatusBadRequest, "%v", err)
	default:
		writeJSON(w, http.StatusOK, u)
	}
}
