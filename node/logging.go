package node

import (
	"context"
	"log/slog"
	"unicode/utf8"

	"github.com/msprelay/msprelay/msp"
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

// namesHandler gives names in the node's log one encoding (issue 20: some
// lines showed a Latin-1 name as UTF-8, others as Go escapes of its raw
// octets). Names on the wire are ISO 8859-1 octets (RFC 1312); every string
// value that is not UTF-8 is such octets and is logged as their UTF-8 text,
// what msp.Latin1ToUTF8 gives and what the status page and API show. The
// handler below it then escapes control characters as it does for any text.
type namesHandler struct{ slog.Handler }

func (h namesHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.NumAttrs() == 0 {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(latin1Attr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h namesHandler) WithAttrs(as []slog.Attr) slog.Handler {
	conv := make([]slog.Attr, len(as))
	for i, a := range as {
		conv[i] = latin1Attr(a)
	}
	return namesHandler{h.Handler.WithAttrs(conv)}
}

func (h namesHandler) WithGroup(name string) slog.Handler {
	return namesHandler{h.Handler.WithGroup(name)}
}

// latin1Attr converts a's string values that are not UTF-8, in groups too.
func latin1Attr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); !utf8.ValidString(s) {
			return slog.String(a.Key, msp.Latin1ToUTF8(s))
		}
	case slog.KindGroup:
		g := a.Value.Group()
		conv := make([]slog.Attr, len(g))
		for i, ga := range g {
			conv[i] = latin1Attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(conv...)}
	}
	return a
}

// withNames wraps l so that names are logged in one encoding.
func withNames(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(namesHandler); ok {
		return l
	}
	return slog.New(namesHandler{l.Handler()})
}
