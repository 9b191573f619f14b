package msp

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn reads and writes several datagrams per system call: recvmmsg
// and sendmmsg on Linux, one datagram per call elsewhere. ipv4.Message and
// ipv6.Message are the same type, so both packages' PacketConn fit.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batchConnOf wraps pc for batched I/O when it is a *net.UDPConn and
// batches are bigger than one datagram; otherwise it returns nil and pc is
// served one datagram at a time. The wrapper shares pc's socket: closing
// pc (or setting its deadlines) applies to it.
func batchConnOf(pc net.PacketConn, size int) batchConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok || size <= 1 {
		return nil
	}
	if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		return ipv4.NewPacketConn(uc)
	}
	return ipv6.NewPacketConn(uc)
}

// replyBuf holds one outgoing datagram; no reply, echo or refusal is larger.
type replyBuf = [MaxLen + 1]byte

// outDatagram is one datagram to send. buf, when not nil, is the pooled
// buffer b lies in, returned to the pool once b is sent; a nil buf means b
// is kept elsewhere (the duplicate filter's stored reply) and never
// modified.
type outDatagram struct {
	b    []byte
	addr net.Addr
	buf  *replyBuf
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
	size  int       // datagrams per WriteBatch
	log   *slog.Logger
	bufs  sync.Pool // of *replyBuf; has its own lock

	mu      sync.Mutex    // guards queue, spare and writing
	room    sync.Cond     // the writing sender took the queue; L is &mu
	queue   []outDatagram // waiting for the writing sender; at most writeQueue*size
	spare   []outDatagram // the writing sender's, to swap for queue
	writing bool          // a sender is writing; it alone uses ms and iov

	ms  []ipv4.Message
	iov [][]byte // ms[i].Buffers is iov[i:i+1]
}

// writeQueue is how many datagrams may wait for the writing sender, per
// datagram of a batch.
const writeQueue = 8

func newPacketWriter(pc net.PacketConn, bc batchConn, size int, log *slog.Logger) *packetWriter {
	w := &packetWriter{pc: pc, batch: bc, size: size, log: log}
	w.bufs.New = func() any { return new(replyBuf) }
	w.room.L = &w.mu
	if bc != nil {
		w.ms = make([]ipv4.Message, size)
		w.iov = make([][]byte, size)
	}
	return w
}

// buffer lends a buffer for one datagram; send gives it back.
func (w *packetWriter) buffer() *replyBuf { return w.bufs.Get().(*replyBuf) }

// send writes b to addr, or queues it for the sender that is writing.
// With a batchConn it returns nil: write errors are logged, as nothing can
// be done about them. buf, if not nil, is the buffer from
// [packetWriter.buffer] that b lies in.
func (w *packetWriter) send(b []byte, addr net.Addr, buf *replyBuf) error {
	if w.batch == nil {
		_, err := w.pc.WriteTo(b, addr)
		if buf != nil {
			w.bufs.Put(buf)
		}
		return err
	}
	w.mu.Lock()
	for w.writing && len(w.queue) >= writeQueue*w.size {
		w.room.Wait()
	}
	w.queue = append(w.queue, outDatagram{b: b, addr: addr, buf: buf})
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
		for i, d := range q[:n] {
			w.iov[i] = d.b
			w.ms[i].Buffers, w.ms[i].Addr = w.iov[i:i+1], d.addr
		}
		w.flush(w.ms[:n])
		for i := range q[:n] {
			if q[i].buf != nil {
				w.bufs.Put(q[i].buf)
			}
			q[i] = outDatagram{}
			w.iov[i], w.ms[i].Buffers, w.ms[i].Addr = nil, nil, nil
		}
		q = q[n:]
	}
}

// flush writes ms, skipping a datagram the system refuses (an unreachable
// address, say) and going on with the rest.
func (w *packetWriter) flush(ms []ipv4.Message) {
	for len(ms) > 0 {
		n, err := w.batch.WriteBatch(ms, 0)
		if err == nil && n > 0 {
			ms = ms[n:]
			continue
		}
		n = max(n, 0)
		if n < len(ms) && w.log.Enabled(context.Background(), slog.LevelDebug) {
			w.log.Debug("msp: udp reply not sent", "remote", ms[n].Addr.String(), "err", err)
		}
		ms = ms[min(n+1, len(ms)):]
	}
}
