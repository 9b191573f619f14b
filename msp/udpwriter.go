package msp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// batchConn reads and writes several datagrams per system call: recvmmsg
// and sendmmsg on Linux (see mmsgConn), where the datagrams' addresses
// are netip.AddrPort values decoded from and encoded into buffers the conn
// keeps, so that no datagram costs an allocation.
type batchConn interface {
	// readBatch reads up to len(ms) datagrams into ms[i].buf, setting
	// ms[i].n and ms[i].from, and returns how many it read.
	readBatch(ms []inDatagram) (int, error)
	// writeBatch sends ds in order and returns how many went out; an
	// error is about ds[n] (the first not sent).
	writeBatch(ds []outDatagram) (int, error)
}

// inDatagram is one datagram read by a batchConn.
type inDatagram struct {
	buf  []byte         // where it is read into, MaxLen+1 octets
	n    int            // its size
	from netip.AddrPort // its source; invalid for an address of another kind
}

// batchConnOf wraps pc for batched I/O when it is a *net.UDPConn, batches
// are bigger than one datagram and the platform has recvmmsg; otherwise it
// returns nil and pc is served one datagram at a time. The wrapper shares
// pc's socket: closing pc (or setting its deadlines) applies to it.
func batchConnOf(pc net.PacketConn, size int) batchConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok || size <= 1 {
		return nil
	}
	if bc := newMmsgConn(uc, size); bc != nil {
		return bc
	}
	return nil
}

// replyBuf holds one outgoing datagram; no reply, echo or refusal is larger.
type replyBuf = [MaxLen + 1]byte

// outDatagram is one datagram to send, to to (or, from a net.PacketConn of
// another kind, to addr, which is then not nil). buf, when not nil, is the
// pooled buffer b lies in, returned to the pool once b is sent; a nil buf
// means b is kept elsewhere (the duplicate filter's stored reply) and never
// modified.
type outDatagram struct {
	b    []byte
	to   netip.AddrPort
	addr net.Addr
	buf  *replyBuf
}

// netAddr is d's destination as a net.Addr, for WriteTo.
func (d *outDatagram) netAddr() net.Addr {
	if d.addr != nil {
		return d.addr
	}
	return net.UDPAddrFromAddrPort(d.to)
}

// packetWriter sends the datagrams a ServePacket call answers with.
//
// With a batchConn, whoever sends (a handler's worker, or the read loop for
// an echo or a repeated reply) writes, unless another sender is writing
// already: then it only queues its datagram, and the sender that is
// writing takes the whole queue for its next WriteBatch once its current
// one returns, until the queue is empty. So a lone reply goes out at once
// on its own goroutine, with no hand-over to a writer goroutine, and under
// load replies pile up while a batch is being written and go out together.
// The queue is bounded: a sender that finds it full waits until the writing
// sender takes it. Nothing outlives the senders, so there is nothing to
// stop.
//
// Without a batchConn, send writes at once with WriteTo, as a
// net.PacketConn of unknown kind expects.
type packetWriter struct {
	pc    net.PacketConn
	batch batchConn // nil: write each datagram at once
	size  int       // datagrams per writeBatch
	log   *slog.Logger
	bufs  sync.Pool // of *replyBuf; has its own lock

	mu      sync.Mutex    // guards queue, spare and writing
	room    sync.Cond     // the writing sender took the queue; L is &mu
	queue   []outDatagram // waiting for the writing sender; at most writeQueue*size
	spare   []outDatagram // the writing sender's, to swap for queue
	writing bool          // a sender is writing; it alone calls batch.writeBatch

}

// writeQueue is how many datagrams may wait for the writing sender, per
// datagram of a batch.
const writeQueue = 8

func newPacketWriter(pc net.PacketConn, bc batchConn, size int, log *slog.Logger) *packetWriter {
	w := &packetWriter{pc: pc, batch: bc, size: size, log: log}
	w.bufs.New = func() any { return new(replyBuf) }
	w.room.L = &w.mu
	return w
}

// buffer lends a buffer for one datagram; send gives it back, or release
// when it was not sent.
func (w *packetWriter) buffer() *replyBuf { return w.bufs.Get().(*replyBuf) }

// release gives back a buffer from buffer that was not sent.
func (w *packetWriter) release(b *replyBuf) { w.bufs.Put(b) }

// send writes d, or queues it for the sender that is writing. With a
// batchConn it returns nil: write errors are logged, as nothing can be
// done about them. d.buf, if not nil, is the buffer from
// [packetWriter.buffer] that d.b lies in.
func (w *packetWriter) send(d outDatagram) error {
	if w.batch == nil {
		var err error
		if uc, ok := w.pc.(*net.UDPConn); ok && d.addr == nil {
			_, err = uc.WriteToUDPAddrPort(d.b, d.to)
		} else {
			_, err = w.pc.WriteTo(d.b, d.netAddr())
		}
		if d.buf != nil {
			w.bufs.Put(d.buf)
		}
		return err
	}
	w.mu.Lock()
	for w.writing && len(w.queue) >= writeQueue*w.size {
		w.room.Wait()
	}
	w.queue = append(w.queue, d)
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	for len(w.queue) > 0 {
		q := w.queue
		w.queue, w.spare = w.spare[:0], nil
		w.room.Broadcast()
		w.mu.Unlock()
		w.write(q)
		w.mu.Lock()
		w.spare = q[:0]
	}
	w.writing = false
	w.mu.Unlock()
	return nil
}

// stop is a no-op: every datagram is written by the time its sender
// returns from send.
func (w *packetWriter) stop() {}

// write sends q in batches of at most size and gives back its buffers; the
// caller is the writing sender.
func (w *packetWriter) write(q []outDatagram) {
	for len(q) > 0 {
		n := min(len(q), w.size)
		w.flush(q[:n])
		for i := range q[:n] {
			if q[i].buf != nil {
				w.bufs.Put(q[i].buf)
			}
			q[i] = outDatagram{}
		}
		q = q[n:]
	}
}

// flush writes ds, skipping a datagram the system refuses (an unreachable
// address, say) and going on with the rest.
func (w *packetWriter) flush(ds []outDatagram) {
	for len(ds) > 0 {
		n, err := w.batch.writeBatch(ds)
		if err == nil && n > 0 {
			ds = ds[n:]
			continue
		}
		n = max(n, 0)
		if n < len(ds) && w.log.Enabled(context.Background(), slog.LevelDebug) {
			w.log.Debug("msp: udp reply not sent", "remote", ds[n].netAddr().String(), "err", err)
		}
		ds = ds[min(n+1, len(ds)):]
	}
}
