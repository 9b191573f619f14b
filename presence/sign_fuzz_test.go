package presence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
)

// FuzzOpenMessage feeds the envelope decoder (what NotifyMsg and
// MergeRemoteState run first on bytes from the network). No input may
// panic it; what it accepts must be a message of a known type whose
// meaning survives re-encoding (decoding what it re-encodes to gives the
// same message, and encoding that is a fixed point; the bytes themselves
// may differ, since an entry's extension block may hold fields from a
// newer version that this one skips, and the signature covers the bytes
// sent), with a signature exactly when the type needs one, which verifies
// only with the key that made it.
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
		again := encodeMessage(s.wireMsg)
		m, err := decodeMessage(again)
		if err != nil || !reflect.DeepEqual(m, s.wireMsg) || !bytes.Equal(encodeMessage(m), again) {
			t.Fatalf("body %x re-encodes to %x, which decodes to %+v (%v), not %+v", s.body, again, m, err, s.wireMsg)
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
