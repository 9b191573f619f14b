package ops

import (
	"sync"
	"time"

	"github.com/msprelay/msprelay/opsapi"
)

// rateSpan is how far back a RateWindow remembers, in one-second buckets.
const rateSpan = 300

// RateWindow counts events by outcome in one-second buckets over the last
// five minutes, for the status page's "recent delivery rates". Its memory
// is fixed: rateSpan buckets of a few counters. Safe for concurrent use.
type RateWindow struct {
	now func() time.Time
	// mu guards buckets.
	mu      sync.Mutex
	buckets [rateSpan]rateBucket
}

type rateBucket struct {
	sec    int64 // unix second the counts belong to
	counts map[string]uint64
}

// NewRateWindow returns an empty window.
func NewRateWindow() *RateWindow { return &RateWindow{now: time.Now} }

// Add counts one event with the given outcome now.
func (w *RateWindow) Add(outcome string) {
	sec := w.now().Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &w.buckets[sec%rateSpan]
	if b.sec != sec || b.counts == nil {
		b.sec, b.counts = sec, map[string]uint64{}
	}
	b.counts[outcome]++
}

// Rates sums the last minute and the last five minutes.
func (w *RateWindow) Rates() opsapi.Rates {
	now := w.now().Unix()
	r := opsapi.Rates{LastMinute: map[string]uint64{}, LastFiveMinutes: map[string]uint64{}}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.buckets {
		b := &w.buckets[i]
		age := now - b.sec
		if b.counts == nil || age < 0 || age >= rateSpan {
			continue
		}
		for k, v := range b.counts {
			r.LastFiveMinutes[k] += v
			if age < 60 {
				r.LastMinute[k] += v
			}
		}
	}
	return r
}
