package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// FuzzOpenMessage feeds the envelope decoder (what NotifyMsg and
// MergeRemoteState run first on bytes from the network). No input may
// panic it; what it accepts must be a message of a known type whose body
// re-encodes to the same bytes, with a signature exactly when the type
// needs one, which verifies only with the key that made it.
func FuzzOpenMessage(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
	for _, m := range sampleMessages() {
		b := encodeMessage(m)
		f.Add(b)
		f.Add(seal(key, b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := openMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(encodeMessage(s.wireMsg), s.body) {
			t.Fatalf("body %x does not re-encode to itself", s.body)
		}
		if signedType(s.typ) != (len(s.sig) == sigLen) {
			t.Fatalf("type %d with a %d-byte signature", s.typ, len(s.sig))
		}
		if s.sig != nil && s.origin() == "" {
			t.Fatal("a signed message names no origin")
		}
		if s.sig != nil && verify(&s, key.Public().(ed25519.PublicKey)) == nil &&
			verify(&s, other.Public().(ed25519.PublicKey)) == nil {
			t.Fatal("one signature verified with two keys")
		}
	})
}
