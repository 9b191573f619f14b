package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/nats-io/nats.go/jetstream"
)

// record queues a sign-in or sign-out record for the writer. Records are
// coalesced per user (the newest wins), so the backlog is bounded by the
// number of users this node has seen while the store was away.
func (m *Mailbox) record(s switchboard.Seen) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.pending[s.User] = s
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// maxRecordBatch bounds how many records one round of recordLoop writes.
const maxRecordBatch = 256

// maxRecordBackoff caps the pause between attempts while the store is away.
// Until her record is written, a user who signed in during an outage and
// has signed out again is unknown to the cluster (mail to her is refused,
// not lost), so the record should land soon after the store is back; one
// small write every few seconds per node costs little.
const maxRecordBackoff = 4 * time.Second

// recordLoop writes sign-in records to the known-users bucket. A record
// that cannot be written stays pending (unless a newer one replaced it) and
// is retried after a pause.
func (m *Mailbox) recordLoop() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0) // zero while writes succeed
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-retry.C:
		}
		m.mu.Lock()
		batch := make([]switchboard.Seen, 0, min(len(m.pending), maxRecordBatch))
		for _, s := range m.pending {
			if len(batch) == maxRecordBatch {
				break
			}
			batch = append(batch, s)
		}
		m.mu.Unlock()
		failed := false
		warned := backoff != 0 // warn once per outage
		for i, err := range m.writeRecords(batch) {
			s := batch[i]
			if err != nil {
				lvl := slog.LevelDebug
				if !warned {
					lvl, warned = slog.LevelWarn, true
				}
				m.log.Log(m.ctx, lvl, "known-users record not written; will retry", "user", s.User, "err", err)
				failed = true
				continue
			}
			if backoff != 0 {
				m.log.Info("known-users records written again")
				backoff = 0
			}
			m.mu.Lock()
			if cur, ok := m.pending[s.User]; ok && cur == s {
				delete(m.pending, s.User)
			}
			m.mu.Unlock()
		}
		m.mu.Lock()
		more, closed := len(m.pending) > 0, m.closed
		if !more {
			// A map keeps the room its largest burst needed (a wave of
			// sign-ins): make it anew once it is empty.
			m.pending = map[string]switchboard.Seen{}
		}
		m.mu.Unlock()
		switch {
		case closed && (failed || !more):
			return // closing: what could be written is written
		case failed:
			backoff = min(max(2*backoff, time.Second), maxRecordBackoff)
			retry.Reset(backoff)
		case more:
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}
}

// writeRecords writes a batch of records (one per user) and returns each
// one's error. The ordinary records go out together, as pipelined
// publishes into the bucket's stream awaited as one (a sign-in wave's
// records cost a round trip per batch, not per user); a hidden record,
// written only if she has none, takes a create of its own.
func (m *Mailbox) writeRecords(batch []switchboard.Seen) []error {
	errs := make([]error, len(batch))
	ctx, cancel := m.storeCtx()
	defer cancel()
	_, kv, err := m.handles(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	futs := make([]jetstream.PubAckFuture, len(batch))
	for i, s := range batch {
		if s.Hidden {
			errs[i] = m.writeHidden(ctx, kv, s)
			continue
		}
		b, err := json.Marshal(wireSeen{User: msp.Latin1ToUTF8(s.User), Time: s.Time.UTC(), Node: s.Node,
			Term: msp.Latin1ToUTF8(s.Term), State: s.State})
		if err == nil {
			futs[i], err = m.js.PublishAsync(usersKeySubject(s.User), b)
		}
		errs[i] = err
	}
	for i, f := range futs {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = fmt.Errorf("known-users record: %w", ctx.Err())
		}
	}
	return errs
}

// usersKeySubject is the subject a put of user's known-users record is
// published on: the bucket's stream stores it as that key's value.
func usersKeySubject(user string) string { return "$KV." + UsersBucket + "." + UserToken(user) }

// writeHidden writes the record of a hidden line: it makes her known (mail
// for her queues) but says nothing of when, so it has no time and is
// written only if she has no record, and a hidden sign-in or sign-out moves
// nothing that "last seen" shows.
func (m *Mailbox) writeHidden(ctx context.Context, kv jetstream.KeyValue, s switchboard.Seen) error {
	b, err := json.Marshal(wireSeen{User: msp.Latin1ToUTF8(s.User), State: "offline"})
	if err != nil {
		return err
	}
	if _, err = kv.Create(ctx, UserToken(s.User), b); errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}
