package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
	"github.com/msprelay/msprelay/principal"
)

// BenchmarkHotPath measures one node's MSP-in to session-out path with a
// real node, a real session client as the (hot) recipient and a pipelining
// TCP sender, so that `-benchmem` and `-memprofile` show what a message
// costs end to end in one process. It is a tool for profiling, not a
// target: mspbench measures the node in its own process against baselines.
func BenchmarkHotPath(b *testing.B) {
	c := testcluster.Start(b, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.SessionInboundRate = -1
	}})
	rcv := c.SignIn(0, "bob", "pts/1", principal.Online)
	go func() {
		for range rcv.Messages() {
		}
	}()
	conn, err := net.DialTimeout("tcp", c.MSPAddr(0), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const window = 16
	replies := make(chan error, window)
	go func() {
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadBytes(0)
			if err != nil {
				replies <- err
				return
			}
			if line[0] != '+' {
				replies <- fmt.Errorf("reply %q", line)
				return
			}
			replies <- nil
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var buf []byte
	inflight := 0
	// await reads replies until at most n are outstanding.
	await := func(n int) {
		for inflight > n {
			select {
			case err := <-replies:
				if err != nil {
					b.Fatal(err)
				}
				inflight--
			case <-ctx.Done():
				b.Fatal("timed out waiting for replies")
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m := msp.Message{Version: msp.Version2, Recipient: "bob", RecipTerm: "pts/1", Sender: "alice", SenderTerm: "pts/2",
			Text: "hello bob", Cookie: fmt.Sprintf("c%d", i)}
		buf, err = m.AppendBinary(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
		inflight++
		await(window - 1)
	}
	await(0)
}
