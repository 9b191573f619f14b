package node

import (
	"context"
	"log/slog"
)

// quietHandler raises the floor of a handler: the embedded nats-server
// announces its whole configuration at notice level on every start, which
// drowns a node's own log; operators who want it run with --log-level debug.
type quietHandler struct {
	slog.Handler
	min slog.Level
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as), h.min}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name), h.min}
}

// embeddedNATSLogger is the node's logger for its embedded nats-server:
// warnings and errors only, unless the node logs at debug level.
func embeddedNATSLogger(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(quietHandler{l.Handler(), slog.LevelWarn})
}
