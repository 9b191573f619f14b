package ops

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/msprelay/msprelay/opsapi"
)

// Events stream tuning: a burst of sign-ins is folded into one "who" event
// every whoEvery at most; "rates" go out every ratesEvery, and a comment
// line keeps idle proxies from closing the stream.
const (
	whoEvery   = 200 * time.Millisecond
	ratesEvery = 2 * time.Second
)

// events serves /api/v1/events: server-sent events "who" (the full visible
// who list, sent first and after every change that shows in it) and
// "rates". The stream
// ends when the client goes, the server closes, or the source ends.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, "too many event streams")
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	changes, cancel := s.cfg.Source.Changes()
	defer func() { cancel() }()
	who := s.whoList()
	last := whoKey(who)
	if !send("who", who) || !send("rates", s.cfg.Source.Rates()) {
		return
	}
	rates := time.NewTicker(ratesEvery)
	defer rates.Stop()
	var pending <-chan time.Time // set while a who update waits to go out
	var resubscribed time.Time
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		case _, ok := <-changes:
			if !ok {
				// The subscription lagged or ended: start over with a fresh
				// one and a full list, unless the source itself has ended.
				if time.Since(resubscribed) < time.Second {
					return
				}
				resubscribed = time.Now()
				cancel()
				changes, cancel = s.cfg.Source.Changes()
			}
			if pending == nil {
				pending = time.After(whoEvery)
			}
		case <-pending:
			pending = nil
			// A change the list does not show (a hidden terminal signing
			// in, out or changing) sends nothing: an event with the same
			// list would still tell a watcher that a hidden user moved
			// (issue 18: "SSE emits nothing for a hidden change").
			who := s.whoList()
			if k := whoKey(who); k != last {
				last = k
				if !send("who", who) {
					return
				}
			}
		case <-rates.C:
			if !send("rates", s.cfg.Source.Rates()) {
				return
			}
		}
	}
}

func (s *Server) whoList() []opsapi.WhoEntry {
	who := s.cfg.Source.Who()
	if who == nil {
		who = []opsapi.WhoEntry{}
	}
	return who
}

// whoKey is what a who list shows, for telling whether it changed: the
// list in JSON without the idle seconds, which grow with the clock rather
// than with a change.
func whoKey(who []opsapi.WhoEntry) string {
	c := make([]opsapi.WhoEntry, len(who))
	for i, w := range who {
		w.Idle = nil
		c[i] = w
	}
	b, _ := json.Marshal(c)
	return string(b)
}
