package presence

import (
	"errors"
	"fmt"
)

// ErrNoEncryption is returned by SetGossipKeys when gossip runs without
// encryption: memberlist can only encrypt if it started with a key, so
// turning encryption on needs a restart.
var ErrNoEncryption = errors.New("presence: gossip started without a key; enabling encryption needs a restart")

// SetGossipKeys makes keys the gossip keyring: keys[0] encrypts from now
// on, every key decrypts. A rolling key change installs the new key as a
// second key on every node, then makes it the first everywhere, then
// drops the old one, so that no two nodes ever lack a common key.
func (d *Directory) SetGossipKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("presence: no gossip keys")
	}
	for _, k := range keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("presence: gossip key is %d bytes: want 16, 24 or 32", n)
		}
	}
	if d.g == nil {
		return ErrNotRunning
	}
	g := d.g
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.ml == nil || g.stopped {
		return ErrNotRunning
	}
	ring := g.mlc.Keyring // set by memberlist.Create when it was given a key
	if ring == nil {
		return ErrNoEncryption
	}
	for _, k := range keys {
		if err := ring.AddKey(k); err != nil {
			return fmt.Errorf("presence: gossip keyring: %w", err)
		}
	}
	if err := ring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("presence: gossip keyring: %w", err)
	}
	for _, old := range ring.GetKeys() {
		keep := false
		for _, k := range keys {
			keep = keep || string(k) == string(old)
		}
		if !keep {
			if err := ring.RemoveKey(old); err != nil {
				return fmt.Errorf("presence: gossip keyring: %w", err)
			}
		}
	}
	return nil
}
