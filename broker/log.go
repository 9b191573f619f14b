package broker

import (
	"context"
	"fmt"
	"log/slog"
)

// LevelTrace is the slog level of nats-server protocol traces (one line per
// protocol message); a logger enabled at this level turns tracing on.
const LevelTrace = slog.LevelDebug - 4

// slogAdapter implements server.Logger on top of slog. nats-server's own
// Fatalf exits the process; an embedded server must not, so Fatalf logs at
// error level and hands the message to Start through fatal instead.
type slogAdapter struct {
	log *slog.Logger
	// fatal holds the first Fatalf message (capacity 1, later ones are
	// dropped). Written by nats-server goroutines, read by Start; never closed.
	fatal chan string
}

func newSlogAdapter(log *slog.Logger) *slogAdapter {
	return &slogAdapter{log: log, fatal: make(chan string, 1)}
}

// levels reports which of nats-server's optional streams the logger wants,
// so that nats-server does not format lines we would drop.
func (a *slogAdapter) levels() (debug, trace bool) {
	ctx := context.Background()
	return a.log.Enabled(ctx, slog.LevelDebug), a.log.Enabled(ctx, LevelTrace)
}

func (a *slogAdapter) logf(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if a.log.Enabled(ctx, level) {
		a.log.Log(ctx, level, fmt.Sprintf(format, v...))
	}
}

// Noticef implements server.Logger.
func (a *slogAdapter) Noticef(format string, v ...any) { a.logf(slog.LevelInfo, format, v) }

// Warnf implements server.Logger.
func (a *slogAdapter) Warnf(format string, v ...any) { a.logf(slog.LevelWarn, format, v) }

// Errorf implements server.Logger.
func (a *slogAdapter) Errorf(format string, v ...any) { a.logf(slog.LevelError, format, v) }

// Debugf implements server.Logger.
func (a *slogAdapter) Debugf(format string, v ...any) { a.logf(slog.LevelDebug, format, v) }

// Tracef implements server.Logger.
func (a *slogAdapter) Tracef(format string, v ...any) { a.logf(LevelTrace, format, v) }

// Fatalf implements server.Logger without exiting; see slogAdapter.
func (a *slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.log.Error(msg, "fatal", true)
	select {
	case a.fatal <- msg:
	default:
	}
}
