package cliflags

import (
	"context"
	"log/slog"
	"slices"
)

// ComponentKey is the attribute that names the part of a daemon a line
// comes from. Loggers are handed down with With("component", ...) at each
// level (node, then switchboard, then its mailbox), so the dedup handler
// joins nested components with "." instead of repeating the key.
const ComponentKey = "component"

// DetailGroup is the group that takes a line's own attribute when its key
// is already set by the logger's context (node=n1 ... detail.node=n2).
const DetailGroup = "detail"

// dedupHandler keeps every top-level key of a line once, so JSON logs stay
// valid objects for tools that reject repeated keys and text logs stay
// unambiguous. It holds the context attributes itself until a group is
// opened; after WithGroup everything goes to the inner handler as is, since
// keys inside a group cannot collide with those outside.
type dedupHandler struct {
	inner   slog.Handler
	attrs   []slog.Attr // context attributes, each key once
	grouped bool
}

// NewDedupHandler wraps h so that no line carries a top-level key twice:
// nested "component" values are joined ("switchboard.mailbox"), a context
// key set again by With takes the newer value, and a line attribute whose
// key the context or the handler itself (time, level, msg, source)
// already set moves into the DetailGroup group.
func NewDedupHandler(h slog.Handler) slog.Handler { return &dedupHandler{inner: h} }

func (d *dedupHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return d.inner.Enabled(ctx, l)
}

func (d *dedupHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if d.grouped {
		return &dedupHandler{inner: d.inner.WithAttrs(as), grouped: true}
	}
	attrs := slices.Clone(d.attrs)
	for _, a := range as {
		if builtin(a.Key) {
			a.Key = DetailGroup + "_" + a.Key
		}
		i := slices.IndexFunc(attrs, func(b slog.Attr) bool { return b.Key == a.Key })
		switch {
		case i < 0:
			attrs = append(attrs, a)
		case a.Key == ComponentKey:
			attrs[i] = slog.String(ComponentKey, attrs[i].Value.String()+"."+a.Value.String())
		default:
			attrs[i] = a
		}
	}
	return &dedupHandler{inner: d.inner, attrs: attrs}
}

func (d *dedupHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return d
	}
	if d.grouped {
		return &dedupHandler{inner: d.inner.WithGroup(name), grouped: true}
	}
	return &dedupHandler{inner: d.inner.WithAttrs(d.attrs).WithGroup(name), grouped: true}
}

func (d *dedupHandler) Handle(ctx context.Context, r slog.Record) error {
	if d.grouped {
		return d.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(d.attrs...)
	var clash []any
	r.Attrs(func(a slog.Attr) bool {
		if builtin(a.Key) || slices.ContainsFunc(d.attrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			clash = append(clash, a)
		} else {
			out.AddAttrs(a)
		}
		return true
	})
	if len(clash) > 0 {
		out.AddAttrs(slog.Group(DetailGroup, clash...))
	}
	return d.inner.Handle(ctx, out)
}

// builtin reports whether key is one the handler writes itself.
func builtin(key string) bool {
	return key == slog.TimeKey || key == slog.LevelKey || key == slog.MessageKey || key == slog.SourceKey
}
