package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/msp"
)

const (
	// ioTimeout bounds every dial, read and write of the load generator,
	// so a stuck server costs a round at most this much extra.
	ioTimeout = 5 * time.Second
	// udpTimeout is how long a UDP worker waits for a reply before it
	// counts the datagram as lost and sends the next one.
	udpTimeout = 500 * time.Millisecond
	// textPrefix starts every message text; the round and the send time
	// follow, so that a receiver can tell the delivery latency.
	textPrefix = "mspbench r="
)

// clock is the harness's monotonic time base. Send times travel in message
// texts as offsets from it; the receivers, in the same process, subtract.
type clock struct{ base time.Time }

func (c clock) now() time.Duration { return time.Since(c.base) }

// appendMessage appends a revision 'B' message for rcpt at terminal rterm
// ("" for "the right terminal") whose text carries
// the round and the send time. Its cookie (round "." term "." seq) is
// unique over the whole run: the node takes (sender, sender term, cookie,
// source address) as a message's identity and answers a repeat within its
// duplicate window with '+' without delivering it again, and source ports
// recur across rounds.
func appendMessage(dst []byte, rcpt, rterm, term string, round int, seq uint64, sent time.Duration) []byte {
	dst = append(dst, msp.Version2)
	dst = append(dst, rcpt...)
	dst = append(dst, 0)
	dst = append(dst, rterm...)
	dst = append(dst, 0)
	dst = append(dst, textPrefix...)
	dst = strconv.AppendInt(dst, int64(round), 10)
	dst = append(dst, " t="...)
	dst = strconv.AppendInt(dst, int64(sent), 10)
	dst = append(dst, 0)
	dst = append(dst, "mspbench"...)
	dst = append(dst, 0)
	dst = append(dst, term...)
	dst = append(dst, 0)
	dst = strconv.AppendInt(dst, int64(round), 10)
	dst = append(dst, '.')
	dst = append(dst, term...)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, 0, 0) // COOKIE, empty SIGNATURE
}

// parseStamp reads the round and send time from a text appendMessage made.
func parseStamp(text string) (round int, sent time.Duration, ok bool) {
	rest, found := strings.CutPrefix(text, textPrefix)
	if !found {
		return 0, 0, false
	}
	r, t, found := strings.Cut(rest, " t=")
	if !found {
		return 0, 0, false
	}
	round, err1 := strconv.Atoi(r)
	ns, err2 := strconv.ParseInt(strings.TrimRight(t, "\r\n"), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return round, time.Duration(ns), true
}

// load is one way of sending: a mode, a target and a shape.
type load struct {
	mode    string
	addr    string     // MSP address (TCP or UDP)
	nc      *nats.Conn // modeNATS: the requesting connection
	subject string     // modeNATS: the responder's subject
	workers int        // goroutines (pipelined: connections)
	depth   int        // pipelined: messages in flight per connection
	recips  []string   // recipients, one per worker in turn
	rterm   string     // RECIP-TERM of every message; "" for the node's choice
}

// run is one round of a load: its bounds and its live counter.
type run struct {
	round    int
	clock    clock
	deadline time.Time
	max      int64
	issued   atomic.Int64
	done     atomic.Int64 // replies so far, for the progress line
}

// next reports whether one more message may be sent: the round is bounded
// by time and by count, and ends early when ctx does.
func (r *run) next(ctx context.Context) bool {
	return ctx.Err() == nil && time.Now().Before(r.deadline) && r.issued.Add(1) <= r.max
}

// tally is one worker's results; only that worker writes it.
type tally struct {
	ok, failed, queued int64
	lat                []time.Duration
}

// reply counts one reply: ok for a '+', queued for a '+' saying the node
// stored the message in the mailbox instead of delivering it (a live
// delivery that failed, e.g. "terminal not reading"), which counts as
// failed as well.
func (t *tally) reply(ok, queued bool, lat time.Duration) {
	switch {
	case ok && !queued:
		t.ok++
		t.lat = append(t.lat, lat)
	case queued:
		t.queued++
		t.failed++
	default:
		t.failed++
	}
}

// queuedPrefix starts the text of a '+' reply for a message the node put
// in the recipient's mailbox ("+queued for USER (...)").
const queuedPrefix = "+queued"

// isQueued reports whether reply (from its first octet on) is such a '+'.
func isQueued(reply []byte) bool { return bytes.HasPrefix(reply, []byte(queuedPrefix)) }

// exec runs r with l's workers and returns the round (without rate or
// deliveries) and the reply latencies of the '+' replies.
func (l *load) exec(ctx context.Context, r *run) (Round, []time.Duration) {
	tallies := make([]tally, l.workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range tallies {
		t := &tallies[w]
		rcpt := l.recips[w%len(l.recips)]
		term := "w" + strconv.Itoa(w)
		switch l.mode {
		case ModeTCP1:
			wg.Go(func() { l.tcp1(ctx, r, rcpt, term, t) })
		case ModeTCPPipe, ModeTCPSeq:
			wg.Go(func() { l.pipe(ctx, r, rcpt, term, t) })
		case ModeUDP:
			wg.Go(func() { l.udp(ctx, r, rcpt, term, t) })
		case modeNATS:
			wg.Go(func() { l.request(ctx, r, rcpt, term, t) })
		}
	}
	wg.Wait()
	out := Round{Seconds: time.Since(start).Seconds()}
	var lat []time.Duration
	for _, t := range tallies {
		out.OK += t.ok
		out.Failed += t.failed
		out.Queued += t.queued
		lat = append(lat, t.lat...)
	}
	out.Sent = out.OK + out.Failed
	return out, lat
}

// tcp1 sends one message per connection, as `msp send` does.
func (l *load) tcp1(ctx context.Context, r *run, rcpt, term string, t *tally) {
	d := net.Dialer{Timeout: ioTimeout}
	buf := make([]byte, 0, msp.MaxLen)
	var rb replyReader
	for seq := uint64(0); r.next(ctx); seq++ {
		c, err := d.DialContext(ctx, "tcp", l.addr)
		if err != nil {
			t.failed++
			pause(ctx) // e.g. out of ephemeral ports: do not spin
			continue
		}
		c.SetDeadline(time.Now().Add(ioTimeout))
		sent := r.clock.now()
		buf = appendMessage(buf[:0], rcpt, l.rterm, term, r.round, seq, sent)
		ok, queued := false, false
		if _, err = c.Write(buf); err == nil {
			rb.reset(c)
			ok, queued, err = rb.next()
		}
		c.Close()
		t.reply(err == nil && ok, queued, r.clock.now()-sent)
		r.done.Add(1)
	}
}

// pipe keeps up to l.depth messages in flight on one connection: a writer
// goroutine sends, this goroutine reads the replies, which come in order.
func (l *load) pipe(ctx context.Context, r *run, rcpt, term string, t *tally) {
	c, err := (&net.Dialer{Timeout: ioTimeout}).DialContext(ctx, "tcp", l.addr)
	if err != nil {
		t.failed++
		return
	}
	defer c.Close()
	slots := make(chan struct{}, l.depth)     // the window
	fifo := make(chan time.Duration, l.depth) // send times of messages in flight
	writerDone := make(chan struct{})
	go func() { // owned by pipe, which waits for it below
		defer close(writerDone)
		defer close(fifo)
		buf := make([]byte, 0, msp.MaxLen)
		for seq := uint64(0); r.next(ctx); seq++ {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			sent := r.clock.now()
			fifo <- sent
			buf = appendMessage(buf[:0], rcpt, l.rterm, term, r.round, seq, sent)
			c.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.Write(buf); err != nil {
				c.Close() // ends the reader's wait too
				return
			}
		}
	}()
	var rb replyReader
	rb.reset(c)
	broken := false
	for sent := range fifo {
		ok, queued := false, false
		if !broken {
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			var err error
			if ok, queued, err = rb.next(); err != nil {
				broken = true
				c.Close()
			}
		}
		<-slots
		t.reply(ok && !broken, queued, r.clock.now()-sent)
		r.done.Add(1)
	}
	<-writerDone
}

// udp sends a datagram and waits for its reply (or udpTimeout).
func (l *load) udp(ctx context.Context, r *run, rcpt, term string, t *tally) {
	c, err := (&net.Dialer{Timeout: ioTimeout}).DialContext(ctx, "udp", l.addr)
	if err != nil {
		t.failed++
		return
	}
	defer c.Close()
	buf := make([]byte, 0, msp.MaxLen)
	rb := make([]byte, msp.MaxLen+1)
	for seq := uint64(0); r.next(ctx); seq++ {
		sent := r.clock.now()
		buf = appendMessage(buf[:0], rcpt, l.rterm, term, r.round, seq, sent)
		ok, queued := false, false
		if _, err := c.Write(buf); err == nil {
			c.SetReadDeadline(time.Now().Add(udpTimeout))
			n, err := c.Read(rb)
			ok = err == nil && n > 0 && rb[0] == '+'
			queued = ok && isQueued(rb[:n])
		}
		t.reply(ok, queued, r.clock.now()-sent)
		r.done.Add(1)
	}
}

// request is raw NATS request-reply carrying the same octets as an MSP
// message; the responder answers "+".
func (l *load) request(ctx context.Context, r *run, rcpt, term string, t *tally) {
	buf := make([]byte, 0, msp.MaxLen)
	for seq := uint64(0); r.next(ctx); seq++ {
		sent := r.clock.now()
		buf = appendMessage(buf[:0], rcpt, l.rterm, term, r.round, seq, sent)
		rctx, cancel := context.WithTimeout(ctx, ioTimeout)
		m, err := l.nc.RequestWithContext(rctx, l.subject, buf)
		cancel()
		t.reply(err == nil && len(m.Data) > 0 && m.Data[0] == '+', false, r.clock.now()-sent)
		r.done.Add(1)
	}
}

// pause waits a little after a failed dial, or until ctx ends.
func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
}

// ErrBadReply: the server sent something that is not "+text\0" or "-text\0".
var ErrBadReply = errors.New("bench: malformed reply")

// replyReader splits a TCP stream into NUL-terminated MSP replies without
// allocating.
type replyReader struct {
	c          net.Conn
	buf        [2048]byte
	start, end int
}

func (rr *replyReader) reset(c net.Conn) { rr.c, rr.start, rr.end = c, 0, 0 }

// next returns whether the next reply is '+', and whether it is a '+'
// for a message queued in the mailbox (see isQueued).
func (rr *replyReader) next() (ok, queued bool, err error) {
	for {
		if i := bytes.IndexByte(rr.buf[rr.start:rr.end], 0); i >= 0 {
			reply := rr.buf[rr.start : rr.start+i]
			rr.start += i + 1
			if i == 0 || (reply[0] != '+' && reply[0] != '-') {
				return false, false, ErrBadReply
			}
			return reply[0] == '+', isQueued(reply), nil
		}
		if rr.start > 0 {
			rr.end = copy(rr.buf[:], rr.buf[rr.start:rr.end])
			rr.start = 0
		}
		if rr.end == len(rr.buf) {
			return false, false, ErrBadReply
		}
		n, err := rr.c.Read(rr.buf[rr.end:])
		rr.end += n
		if n == 0 && err != nil {
			return false, false, err
		}
	}
}
