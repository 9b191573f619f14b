package sockowner

import (
	"errors"
	"net/netip"
	"testing"
)

// TestUDPOwnerRefusesAmbiguity: "Where the lookup is not possible ... fall
// back to unverified": sockets of two users able to have sent the datagram
// (a port shared with SO_REUSEADDR) name nobody; sockets that could not
// have sent it (another address, connected elsewhere) do not count.
func TestUDPOwnerRefusesAmbiguity(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	sender, server := ap("127.0.0.5:4000"), ap("[::]:18")
	sock := func(src, dst string, uid uint32) diagMsg { return diagMsg{src: ap(src), dst: ap(dst), uid: uid} }
	tests := []struct {
		name string
		msgs []diagMsg
		uid  uint32
		err  error
	}{
		{"one unconnected socket", []diagMsg{sock("127.0.0.5:4000", "0.0.0.0:0", 7)}, 7, nil},
		{"wildcard-bound socket", []diagMsg{sock("0.0.0.0:4000", "0.0.0.0:0", 7)}, 7, nil},
		{"connected to the server", []diagMsg{sock("127.0.0.5:4000", "127.0.0.1:18", 7)}, 7, nil},
		{"two sockets of one user", []diagMsg{sock("127.0.0.5:4000", "0.0.0.0:0", 7), sock("0.0.0.0:4000", "0.0.0.0:0", 7)}, 7, nil},
		{"two users share the port", []diagMsg{sock("127.0.0.5:4000", "0.0.0.0:0", 7), sock("0.0.0.0:4000", "0.0.0.0:0", 8)}, 0, ErrAmbiguous},
		{"other address does not count", []diagMsg{sock("127.0.0.5:4000", "0.0.0.0:0", 7), sock("127.0.0.6:4000", "0.0.0.0:0", 8)}, 7, nil},
		{"connected elsewhere does not count", []diagMsg{sock("127.0.0.5:4000", "0.0.0.0:0", 7), sock("127.0.0.5:4000", "127.0.0.1:19", 8)}, 7, nil},
		{"other port does not count", []diagMsg{sock("127.0.0.5:4001", "0.0.0.0:0", 8)}, 0, ErrNotFound},
		{"none", nil, 0, ErrNotFound},
	}
	for _, tc := range tests {
		uid, err := udpOwner(tc.msgs, sender, server)
		if uid != tc.uid || !errors.Is(err, tc.err) {
			t.Errorf("%s: uid %d, err %v; want %d, %v", tc.name, uid, err, tc.uid, tc.err)
		}
	}
}

// TestTCPOwnerOnlyTheConnection: an exact lookup falls back to a listener
// on the sender's port, and a TIME_WAIT entry reports uid 0; neither may
// name the sender.
func TestTCPOwnerOnlyTheConnection(t *testing.T) {
	t.Parallel()
	ap := netip.MustParseAddrPort
	sender, server := ap("127.0.0.5:4000"), ap("127.0.0.1:18")
	for _, tc := range []struct {
		name string
		m    diagMsg
		ok   bool
	}{
		{"established", diagMsg{state: tcpEstablished, src: sender, dst: server, uid: 7}, true},
		{"fin-wait-2", diagMsg{state: tcpFinWait2, src: sender, dst: server, uid: 7}, true},
		{"listener on the port", diagMsg{state: 10, src: ap("0.0.0.0:4000"), dst: ap("0.0.0.0:0"), uid: 8}, false},
		{"time-wait", diagMsg{state: 6, src: sender, dst: server}, false},
		{"other peer", diagMsg{state: tcpEstablished, src: sender, dst: ap("127.0.0.1:19"), uid: 8}, false},
	} {
		uid, err := tcpOwner([]diagMsg{tc.m}, sender, server)
		if got := err == nil && uid == 7; got != tc.ok {
			t.Errorf("%s: uid %d, err %v; want found=%v", tc.name, uid, err, tc.ok)
		}
	}
}

// TestDiagRoundTrip: a request's socket id reads back as written.
func TestDiagRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		family   uint8
		src, dst string
	}{
		{afINET, "127.0.0.5:4000", "127.0.0.1:18"},
		{afINET6, "[::1]:4000", "[::1]:18"},
	} {
		r := diagReq{family: tc.family, protocol: protoTCP, src: netip.MustParseAddrPort(tc.src), dst: netip.MustParseAddrPort(tc.dst)}
		b := r.marshal()
		if len(b) != sizeofReq {
			t.Fatalf("request is %d octets, want %d", len(b), sizeofReq)
		}
		msg := make([]byte, sizeofMsg)
		msg[0], msg[1] = tc.family, tcpEstablished
		copy(msg[4:], b[8:])
		m, err := parseDiagMsg(msg)
		if err != nil {
			t.Fatal(err)
		}
		if m.src != r.src || m.dst != r.dst {
			t.Errorf("read back %v → %v, want %v → %v", m.src, m.dst, r.src, r.dst)
		}
	}
}

// FuzzParseDiagMsg: a reply of any shape is decoded or refused, never a
// panic, and a decoded one re-encodes to the same socket id.
func FuzzParseDiagMsg(f *testing.F) {
	f.Add(make([]byte, sizeofMsg))
	f.Add(append([]byte{afINET, 1, 0, 0}, make([]byte, sizeofMsg-4)...))
	f.Add(append([]byte{afINET6, 7, 0, 0}, make([]byte, sizeofMsg)...))
	f.Add([]byte{afINET})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseDiagMsg(b)
		if err != nil {
			return
		}
		if m.family != afINET && m.family != afINET6 {
			t.Fatalf("accepted family %d", m.family)
		}
		if !m.src.Addr().IsValid() || !m.dst.Addr().IsValid() {
			t.Fatalf("invalid address from %x", b)
		}
	})
}
