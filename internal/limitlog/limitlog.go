// Package limitlog logs limits that trip (a connection refused, a message
// rate-limited, a failed sign-in) at most once per interval per kind, with
// the number of occurrences not logged since, so that a flood of abuse
// cannot turn into a flood of log lines while every occurrence is still
// counted.
package limitlog

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is how often one kind is logged at most.
const DefaultEvery = 10 * time.Second

// Log is a rate-limited warning log. It is safe for concurrent use; mu
// guards last and suppressed.
type Log struct {
	log   *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time // kind -> when it was last logged
	suppressed map[string]uint64    // kind -> occurrences not logged since
}

// New returns a Log writing warnings to log at most once per every per
// kind; every <= 0 means DefaultEvery.
func New(log *slog.Logger, every time.Duration) *Log {
	if every <= 0 {
		every = DefaultEvery
	}
	return &Log{log: log, every: every, last: make(map[string]time.Time), suppressed: make(map[string]uint64)}
}

// Hit records one occurrence of kind (the log message) and logs it with
// args and "suppressed", the count not logged since, if its turn has come.
func (l *Log) Hit(kind string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.last[kind]) < l.every {
		l.suppressed[kind]++
		l.mu.Unlock()
		return
	}
	n := l.suppressed[kind]
	l.last[kind] = now
	l.suppressed[kind] = 0
	l.mu.Unlock()
	l.log.Warn(kind, append(args, "suppressed", n)...)
}

// Suppress records one occurrence of kind and reports true if it is not
// to be logged now; on false the caller logs it with Hit. It spares a
// caller on a flood path building the arguments of a line that is not
// written.
func (l *Log) Suppress(kind string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last[kind]) < l.every {
		l.suppressed[kind]++
		return true
	}
	return false
}

// Suppressed is the number of occurrences of kind not logged since it was
// last logged.
func (l *Log) Suppressed(kind string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.suppressed[kind]
}
