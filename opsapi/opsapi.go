// Package opsapi holds the JSON types of the operations API
// (/api/v1/...), shared by the server (package ops) and its readers (msp
// status, msp who --json). It is a leaf: readers link no Prometheus code.
package opsapi

import "time"

// WhoEntry is one signed-in terminal, or a signed-out user's last sighting,
// and one line of `msp who --json` (one type for both). A user who is
// signed in nowhere but known to the cluster appears once with state
// "offline", the node and terminal she last signed out of, and LastSeen
// instead of Since.
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
