package testcluster

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// SendFrom sends m once to node i over network ("tcp" or "udp") from the
// local address ip (on Linux any 127.0.0.0/8 address is this host's) and
// returns the reply: a second sender on another address, for tests of what
// must not depend on the source. It does not retransmit; a UDP message
// that gets no answer within 5 s is an error. m must carry its COOKIE.
func (c *Cluster) SendFrom(i int, network, ip string, m *msp.Message) (msp.Reply, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return msp.Reply{}, err
	}
	var local net.Addr = &net.TCPAddr{IP: net.ParseIP(ip)}
	if network == "udp" {
		local = &net.UDPAddr{IP: net.ParseIP(ip)}
	}
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	nc, err := d.Dial(network, c.MSPAddr(i))
	if err != nil {
		return msp.Reply{}, err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return msp.Reply{}, err
	}
	if _, err := nc.Write(b); err != nil {
		return msp.Reply{}, err
	}
	var reply []byte
	if network == "udp" {
		buf := make([]byte, msp.MaxLen)
		n, err := nc.Read(buf)
		if err != nil {
			return msp.Reply{}, err
		}
		reply = buf[:n]
	} else if reply, err = bufio.NewReader(nc).ReadBytes(0); err != nil {
		return msp.Reply{}, err
	}
	if len(reply) < 2 || (reply[0] != '+' && reply[0] != '-') || bytes.IndexByte(reply, 0) != len(reply)-1 {
		return msp.Reply{}, fmt.Errorf("testcluster: bad reply %q", reply)
	}
	return msp.Reply{OK: reply[0] == '+', Text: string(reply[1 : len(reply)-1])}, nil
}
