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
// With a batchConn, send only queues: one goroutine, started by
// newPacketWriter and owned by ServePacket (which calls stop after the read
// loop and every handler have ended), takes what is queued, up to a batch,
// and writes it with one WriteBatch. It writes as soon as the queue is
// empty rather than waiting for a batch to fill, so a lone reply is not
// delayed; under load replies pile up while a batch is being written and
// go out together. The queue is bounded: when it is full, send waits.
//
// Without a batchConn, send writes at once with WriteTo on the caller's
// goroutine, as a net.PacketConn of unknown kind expects.
type packetWriter struct {
	pc    net.PacketConn
	batch batchConn // nil: write each datagram at once
	size  int       // datagrams per WriteBatch
	log   *slog.Logger
	queue chan outDatagram // closed by stop; nil without batch
	done  chan struct{}    // closed when the writer goroutine ends
	bufs  sync.Pool        // of *replyBuf; has its own lock
}

// writeQueue is how many datagrams may wait for the writer, per datagram
// of a batch.
const writeQueue = 8

func newPacketWriter(pc net.PacketConn, bc batchConn, size int, log *slog.Logger) *packetWriter {
	w := &packetWriter{pc: pc, batch: bc, size: size, log: log}
	w.bufs.New = func() any { return new(replyBuf) }
	if bc != nil {
		w.queue = make(chan outDatagram, writeQueue*size)
		w.done = make(chan struct{})
		go w.loop()
	}
	return w
}

// buffer lends a buffer for one datagram; send gives it back.
func (w *packetWriter) buffer() *replyBuf { return w.bufs.Get().(*replyBuf) }

// send writes b to addr, or queues it for the writer (then it returns nil:
// write errors are logged, as nothing can be done about them). buf, if not
// nil, is the buffer from [packetWriter.buffer] that b lies in.
func (w *packetWriter) send(b []byte, addr net.Addr, buf *replyBuf) error {
	if w.batch == nil {
		_, err := w.pc.WriteTo(b, addr)
		if buf != nil {
			w.bufs.Put(buf)
		}
		return err
	}
	w.queue <- outDatagram{b: b, addr: addr, buf: buf}
	return nil
}

// stop writes what is queued and ends the writer; nothing may be sent
// after.
func (w *packetWriter) stop() {
	if w.batch == nil {
		return
	}
	close(w.queue)
	<-w.done
}

// loop is the writer goroutine: it gathers what is queued, up to a batch,
// and writes it, until stop closes the queue.
func (w *packetWriter) loop() {
	defer close(w.done)
	ms := make([]ipv4.Message, w.size)
	iov := make([][]byte, w.size) // ms[i].Buffers is iov[i:i+1]
	held := make([]*replyBuf, w.size)
	for d := range w.queue {
		n := 0
		for {
			iov[n], ms[n].Addr, held[n] = d.b, d.addr, d.buf
			ms[n].Buffers = iov[n : n+1]
			n++
			if n == w.size {
				break
			}
			var ok bool
			select {
			case d, ok = <-w.queue:
			default:
			}
			if !ok {
				break
			}
		}
		w.flush(ms[:n])
		for i := range n {
			if held[i] != nil {
				w.bufs.Put(held[i])
			}
			iov[i], ms[i].Addr, ms[i].Buffers, held[i] = nil, nil, nil, nil
		}
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
