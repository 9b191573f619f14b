package bench

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress writes what the harness is doing. On a terminal (live) a load
// round redraws one line with its running count and rate; otherwise only
// whole lines are written, one per finished step, which suits logs.
//
// Ownership: track starts one ticker goroutine per call; the stop function
// it returns ends that goroutine and waits for it.
type progress struct {
	w    io.Writer
	live bool

	// mu guards writes to w and dirty.
	mu    sync.Mutex
	dirty bool // a live line is on screen and must be cleared first
}

func (p *progress) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, format+"\n", a...)
}

func (p *progress) clearLocked() {
	if p.dirty {
		fmt.Fprint(p.w, "\r\033[K")
		p.dirty = false
	}
}

// track redraws "label: N replies, R/s" every 200 ms while a round runs.
func (p *progress) track(label string, n *atomic.Int64) (stop func()) {
	if !p.live {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				v := n.Load()
				p.mu.Lock()
				fmt.Fprintf(p.w, "\r\033[K%s: %d replies, %.0f/s", label, v, float64(v)/time.Since(start).Seconds())
				p.dirty = true
				p.mu.Unlock()
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		p.mu.Lock()
		p.clearLocked()
		p.mu.Unlock()
	}
}
