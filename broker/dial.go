package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnect policy of Dial. After an outage's n-th round through the URL
// list Dial waits a random time in [d/2, d], d = DialBackoffMin*2^(n-1)
// capped at DialBackoffMax: quick at first, and jittered so that many
// nodes losing one relay do not come back in lockstep.
const (
	DialBackoffMin = 250 * time.Millisecond
	DialBackoffMax = 10 * time.Second
	// DialReconnectBuffer is how many bytes of publishes are buffered while
	// disconnected; beyond it Publish fails with nats.ErrReconnectBufExceeded.
	DialReconnectBuffer = 8 << 20
)

// ErrNoURLs is returned by Dial when it is given no relay URL.
var ErrNoURLs = errors.New("broker: dial: no URLs")

// Dial connects to external relays as client name. It never gives up: a
// relay that is not reachable yet (or goes away) is retried forever with
// backoff (see DialBackoffMin), publishes made meanwhile are buffered (see
// DialReconnectBuffer), and the returned connection may therefore still be
// connecting. log (name=name added; the caller names the component) gets
// one line per state change (connected, disconnected, the first failed
// attempt of an outage, reconnected, closed) and per async error; further
// failed attempts go to debug level. opts are applied after
// ours, e.g. nats.UserInfo or nats.RootCAs, or nats.RetryOnFailedConnect(false)
// to fail at once when no relay answers. The caller owns and closes the
// connection.
func Dial(urls []string, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if len(urls) == 0 {
		return nil, ErrNoURLs
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("name", name)
	// failing is set once an outage's first failed attempt has been logged.
	var failing atomic.Bool
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(DialReconnectBuffer),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			failing.Store(false)
			log.Info("nats: connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close was called; ClosedHandler reports it
			}
			log.Warn("nats: disconnected, reconnecting", "err", err)
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if failing.CompareAndSwap(false, true) {
				log.Warn("nats: connect attempt failed, retrying with backoff", "err", err)
				return
			}
			log.Debug("nats: connect attempt failed", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			failing.Store(false)
			log.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted(),
				"server", nc.ConnectedServerName(), "reconnects", nc.Stats().Reconnects)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats: connection closed", "err", nc.LastError())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats: async error", "subject", subject, "err", err)
		}),
	}
	nc, err := nats.Connect(strings.Join(urls, ","), append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("broker: dial %s as %s: %w", redacted(urls), name, err)
	}
	return nc, nil
}

// redacted hides passwords embedded in URLs before they reach an error.
func redacted(urls []string) string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		out[i] = raw
		if u, err := url.Parse(raw); err == nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ",")
}

// reconnectDelay implements the backoff documented at DialBackoffMin; n is
// nats.go's count of full rounds through the URL list, starting at 1.
func reconnectDelay(n int) time.Duration {
	d := DialBackoffMax
	if shift := max(n, 1) - 1; shift < 6 {
		d = min(DialBackoffMin<<shift, DialBackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}
