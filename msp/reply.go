package msp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
)

// MaxReplyText bounds a reply's explanation so that a whole reply, like a
// message, stays under 512 octets.
const MaxReplyText = MaxLen - 2

// Reply errors returned by [ResponseWriter].
var (
	// ErrReplied: Ack or Nack was already called for this message.
	ErrReplied = errors.New("msp: reply already given")
	// ErrHandlerReturned: Ack or Nack was called after ServeMSP returned.
	ErrHandlerReturned = errors.New("msp: reply after the handler returned")
)

// ResponseWriter answers one message. Only the first Ack or Nack counts.
// What goes on the wire follows the revision and transport:
//
//   - 'B' over TCP: "+text\0" or "-text\0".
//   - 'B' over UDP: "+text\0" only for Ack of a message with a non-empty
//     RECIPIENT, truncated to the request's size; Nack sends nothing. RFC
//     1312: "If the message was directed at any user (i.e., the RECIPIENT
//     part is empty), or if the message could not be delivered for some
//     reason, no reply is sent."
//   - 'A' over TCP: nothing; 'A' over UDP: the server has already echoed the
//     datagram ("an answering datagram is sent back to the client containing
//     exactly the same data").
//
// The text is cleaned before sending: octets other than printable ISO 8859-1
// are dropped and it is cut to [MaxReplyText] octets. Ack and Nack return nil
// when nothing is owed. Over UDP on a *net.UDPConn read in batches (see
// [Server.PacketBatch]) they return nil once the reply is written or handed
// to a write under way; write errors are logged, not returned.
type ResponseWriter interface {
	// Ack reports the message reached a delivery service.
	Ack(text string) error
	// Nack reports the message was not delivered.
	Nack(text string) error
	// RemoteAddr is the sender's address.
	RemoteAddr() net.Addr
	// RemoteAddrString is RemoteAddr().String(), made once per TCP
	// connection rather than once per message.
	RemoteAddrString() string
	// LocalAddr is the address the message arrived on.
	LocalAddr() net.Addr
	// Network is "tcp" or "udp".
	Network() string
	// Context is cancelled when the server is closed (not on graceful
	// Shutdown, which waits for handlers).
	Context() context.Context
	// Peer says which local account owns the sending socket, when the
	// sender is on this host and the server could ask the kernel (see
	// [Server.Identify]); the zero Peer means unknown.
	Peer() Peer
}

// Peer is what the kernel says about a message's sending socket.
type Peer struct {
	// Local: the source address is one of this host's own.
	Local bool
	// Known: the owner was found; UID and User are valid.
	Known bool
	// UID is the socket owner's numeric user id.
	UID uint32
	// User is that account's login name ("" when it has none).
	User string
}

// replySink takes a revision 'B' reply: it decides whether the outcome is
// answered on the wire at all, formats the reply into a buffer it owns
// (see [appendReply]) and sends or keeps it. The connection (TCP, inline),
// the pipelined slot and the datagram's job are the sinks; being pointers
// already held, they make a writer cost no closures.
type replySink interface {
	sendReply(ack bool, text string, limit int) error
}

// responseWriter implements ResponseWriter for both transports. It lives
// inside the per-message struct of its transport (request, slot,
// packetJob), which is allocated once per message and never reused, so a
// handler that keeps w or the message after returning still sees
// ErrHandlerReturned and its own message.
type responseWriter struct {
	ctx     context.Context
	network string
	local   net.Addr
	// remote is the sender; nil for a UDP datagram read with its address
	// as remoteAP, for which RemoteAddr makes it on demand.
	remote   net.Addr
	remoteAP netip.AddrPort
	// remoteStr is remote as a string when the transport made it already
	// (once per TCP connection); "" means make it on demand.
	remoteStr string
	limit     int       // most octets a reply may have
	peer      Peer      // the sending socket's owner, when the transport learned it
	sink      replySink // nil when the revision and transport owe no reply
	order     *slot     // the pipelined slot whose same-recipient successor waits; nil otherwise

	mu       sync.Mutex // guards the fields below; the handler may reply from any goroutine
	replied  bool
	finished bool // ServeMSP returned
}

func (w *responseWriter) Ack(text string) error  { return w.reply(true, text) }
func (w *responseWriter) Nack(text string) error { return w.reply(false, text) }

// RemoteAddr makes the *net.UDPAddr of a datagram's sender only when asked:
// most handlers never ask, and the read loop does not allocate it.
func (w *responseWriter) RemoteAddr() net.Addr {
	if w.remote == nil {
		return net.UDPAddrFromAddrPort(w.remoteAP)
	}
	return w.remote
}
func (w *responseWriter) RemoteAddrString() string {
	switch {
	case w.remoteStr != "":
		return w.remoteStr
	case w.remote == nil:
		return addrPortString(w.remoteAP)
	}
	return AddrString(w.remote)
}
func (w *responseWriter) LocalAddr() net.Addr      { return w.local }
func (w *responseWriter) Network() string          { return w.network }
func (w *responseWriter) Context() context.Context { return w.ctx }
func (w *responseWriter) Peer() Peer               { return w.peer }

// InOrder tells the server that the message holds its place in its
// recipient's order (it is queued for her, behind the ones before it), so
// that the connection's next message for the same recipient may be
// handled before this one is answered. A handler that waits for an
// end-to-end acknowledgement calls it once the message is queued; without
// it the next one starts when ServeMSP returns. Calling it again, or on a
// message that is not pipelined, does nothing.
func (w *responseWriter) InOrder() {
	if w.order != nil {
		w.order.inOrder()
	}
}

func (w *responseWriter) reply(ack bool, text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.finished:
		return ErrHandlerReturned
	case w.replied:
		return ErrReplied
	}
	w.replied = true
	if w.sink == nil {
		return nil
	}
	return w.sink.sendReply(ack, text, w.limit)
}

// finish marks the handler as returned; if it gave no reply, it makes a
// Nack with defaultText for it.
func (w *responseWriter) finish(defaultText string) {
	w.reply(false, defaultText)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
}

// formatReply builds "+text\0" or "-text\0" of at most limit octets, keeping
// only printable ISO 8859-1 in text. limit must be at least 2.
func formatReply(ack bool, text string, limit int) []byte {
	return appendReply(make([]byte, 0, min(len(text)+2, limit, MaxReplyText+2)), ack, text, limit)
}

// appendReply appends what formatReply builds to dst; with room in dst for
// min(limit, MaxReplyText+2) octets it allocates nothing.
func appendReply(dst []byte, ack bool, text string, limit int) []byte {
	limit = min(limit, MaxReplyText+2)
	c := byte('-')
	if ack {
		c = '+'
	}
	dst = append(dst, c)
	n := 1
	for i := 0; i < len(text) && n < limit-1; i++ {
		if allowed(text[i], className) {
			dst = append(dst, text[i])
			n++
		}
	}
	return append(dst, 0)
}

// fitReply returns a stored reply cut to at most limit octets, still ending
// in NUL, so a retransmitted request never draws a larger answer.
func fitReply(reply []byte, limit int) []byte {
	if len(reply) <= limit {
		return reply
	}
	out := make([]byte, limit)
	copy(out, reply[:limit-1])
	return out
}
