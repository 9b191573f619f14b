package session

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// verifiedAuth believes every claim and calls it verified, as peer
// credentials would for the socket's owner; it lets a TCP test stand for
// the socket.
type verifiedAuth struct{}

func (verifiedAuth) Authenticate(_ context.Context, _ *AuthRequest) (Identity, error) {
	return Identity{Method: "secret", Verified: true}, nil
}

// memBlocks is an in-memory BlockStore; mu guards m.
type memBlocks struct {
	mu sync.Mutex
	m  map[string][]string
}

func (b *memBlocks) Blocks(_ context.Context, user string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.m[user]), nil
}

func (b *memBlocks) SetBlocks(_ context.Context, user string, names []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[user] = slices.Clone(names)
	return nil
}

// The user commands by hand, as docs/SESSION.md shows them: a claimed
// (trust) identity may not use them, and WAL needs the local socket.
func TestUserCommandsTranscript(t *testing.T) {
	t.Parallel()
	t.Run("claimed identity", func(t *testing.T) {
		e := newEnv(t, Trust{}, nil)
		a := e.raw(t)
		a.send("VER 1 MSPS1\r\nUSR 2 alice pts/1\r\n")
		a.expect("VER 1 MSPS1")
		a.expect("USR 2 OK alice pts/1 NLN n1 trust")
		a.send("WAL 3 5\r\nhello")
		a.expectPrefix("290 3 ")
		a.send("STA 4 BSY\r\n")
		a.expectPrefix("292 4 ")
		a.send("BLK 5 ADD mallory\r\n")
		a.expectPrefix("292 5 ")
		a.send("ALS 6 ADD desk\r\n")
		a.expectPrefix("292 6 ")
		a.send("BLK 7 FROB mallory\r\n")
		a.expectPrefix("201 7 ")
	})
	t.Run("verified identity", func(t *testing.T) {
		store := &memBlocks{m: map[string][]string{}}
		e := newEnv(t, verifiedAuth{}, func(c *Config) { c.Blocks = store })
		a, b := e.raw(t), e.raw(t)
		a.send("VER 1 MSPS1\r\nUSR 2 alice pts/1\r\n")
		a.expect("VER 1 MSPS1")
		a.expect("USR 2 OK alice pts/1 NLN n1 secret")
		b.send("VER 1 MSPS1\r\nUSR 2 alice *\r\n")
		b.expect("VER 1 MSPS1")
		b.expect("USR 2 OK alice * NLN n1 secret")
		b.send("STA 3 BSY\r\n")
		b.expect("STA 3 BSY 1")
		b.send("STA 4 FLN\r\n")
		b.expectPrefix("201 4 ")
		b.send("BLK 5 ADD mallory\r\n")
		b.expect("BLK 5 ADD mallory")
		b.send("BLK 6 ADD mallory\r\n")
		b.expectPrefix("215 6 ")
		b.send("BLK 7 LST\r\n")
		b.expect("BLK 7 LST mallory")
		if got := store.m["alice"]; !slices.Equal(got, []string{"mallory"}) {
			t.Errorf("stored %v", got)
		}
		// alice's running session took the block at once.
		a.send("LST 3 BL\r\n")
		a.expectPrefix("LST 3 BL ")
		if l := a.line(); l != "mallory" {
			t.Errorf("running session's block list: %q", l)
		}
		b.send("ALS 8 ADD desk\r\n")
		b.expect("ALS 8 ADD desk 1")
		b.send("ALS 9 LST\r\n")
		b.expect("ALS 9 LST desk")
		b.send("BLK 10 DEL mallory\r\n")
		b.expect("BLK 10 DEL mallory")
		b.send("BLK 11 DEL mallory\r\n")
		b.expectPrefix("216 11 ")
	})
}
