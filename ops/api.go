package ops

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/presence"
)

// Source is what a node shows through the API. Every method must leave out
// hidden terminals, in lists and in counts alike: the API is read by people
// who may not see them, and a hidden user must look offline.
type Source interface {
	// Who lists the visible terminals in the cluster, ordered by user,
	// node, terminal.
	Who() []opsapi.WhoEntry
	// Nodes asks every node of the cluster for its status.
	Nodes(ctx context.Context) []opsapi.NodeStatus
	// User describes one user; ErrNotFound when nothing may be shown.
	User(ctx context.Context, name string) (opsapi.UserInfo, error)
	// Changes delivers directory changes until cancel is called or the
	// subscription ends (c is closed then: the reader lagged, or the node
	// is closing; a reader resubscribes or stops). The events stream only
	// uses them as a signal to send the who list again.
	Changes() (c <-chan presence.Event, cancel func())
	// Rates are the recent delivery counts.
	Rates() opsapi.Rates
	// Self is this node's name.
	Self() string
}

// ErrNotFound is what Source.User returns for a user the API may not show.
var ErrNotFound = errors.New("ops: not found")

func (s *Server) apiWho(w http.ResponseWriter, _ *http.Request) {
	who := s.cfg.Source.Who()
	if who == nil {
		who = []opsapi.WhoEntry{}
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
