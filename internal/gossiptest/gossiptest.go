// Package gossiptest holds a memberlist transport for tests that need a
// member to go silent on gossip while it keeps everything else (its NATS
// connection, its streams): the crash-detection tests of presence and
// node. It is imported by tests only.
package gossiptest

import (
	"io"
	"log"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// MuteTransport is memberlist's own UDP transport whose outgoing packets
// can be dropped: a muted member answers no ping (as when its process is
// stalled or its UDP is lost). Memberlist owns and closes it once Tune has
// handed it over.
type MuteTransport struct {
	*memberlist.NetTransport
	Mute atomic.Bool // drop every outgoing packet while set
}

// WriteTo sends b unless the transport is muted.
func (m *MuteTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if m.Mute.Load() {
		return time.Now(), nil
	}
	return m.NetTransport.WriteTo(b, addr)
}

// WriteToAddress sends b unless the transport is muted.
func (m *MuteTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if m.Mute.Load() {
		return time.Now(), nil
	}
	return m.NetTransport.WriteToAddress(b, a)
}

// Tune returns a memberlist config tuner that binds m on a free loopback
// port and makes memberlist need 1,000 s to declare a silent member dead,
// so that a member dropped within a test was dropped by the NATS signal.
func (m *MuteTransport) Tune(t testing.TB) func(*memberlist.Config) {
	return func(mc *memberlist.Config) {
		var err error
		for range 5 { // the UDP half of a free TCP port may be taken
			m.NetTransport, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
				BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0)})
			if err == nil || !strings.Contains(err.Error(), "address already in use") {
				break
			}
		}
		if err != nil {
			t.Errorf("gossip transport: %v", err)
			return
		}
		mc.Transport = m
		mc.SuspicionMult, mc.SuspicionMaxTimeoutMult = 1000, 1
	}
}
