package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Writers on several goroutines and a reader at once lose nothing (and
// -race finds no race).
func TestConcurrentWritersLoseNothing(t *testing.T) {
	t.Parallel()
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.WriteLine("x")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "x\n"); n != 800 || len(b.Bytes()) != 1600 {
		t.Fatalf("%d lines, %d octets; want 800 and 1600", n, len(b.Bytes()))
	}
}
