package bench

import (
	"math"
	"slices"
	"time"
)

// Latency summarises samples. Figures are microseconds so that the JSON
// report needs no duration parsing.
type Latency struct {
	N     int     `json:"n"`
	P50us float64 `json:"p50_us"`
	P90us float64 `json:"p90_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`
}

// summarize sorts samples in place and reads the percentiles (nearest rank).
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	return Latency{
		N:     len(samples),
		P50us: us(percentile(samples, 50)),
		P90us: us(percentile(samples, 90)),
		P99us: us(percentile(samples, 99)),
		MaxUs: us(samples[len(samples)-1]),
	}
}

// percentile is the nearest-rank percentile of sorted samples: with 20
// samples p99 is the largest, which is what a reader should assume.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }

// median of xs (not modified); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Round is one arm's run of one round.
type Round struct {
	Sent   int64 `json:"sent"`
	OK     int64 `json:"ok"`     // '+' replies
	Failed int64 `json:"failed"` // '-' replies, lost datagrams, I/O errors, Queued
	// Queued counts '+' replies for messages the node stored in the
	// recipient's mailbox because the live delivery failed (the session
	// not reading fast enough): counted in Failed, not in OK.
	Queued    int64   `json:"queued,omitempty"`
	Delivered int64   `json:"delivered"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"` // '+' replies per second
}

// Arm is one side of a comparison over all its rounds.
type Arm struct {
	Name     string  `json:"name"`
	Role     string  `json:"role"` // "baseline" or "subject"
	Mode     string  `json:"mode"`
	Rounds   []Round `json:"rounds"`
	Rate     float64 `json:"rate"` // median of the rounds' rates
	Reply    Latency `json:"reply"`
	Delivery Latency `json:"delivery"` // zero when nothing is delivered (baselines)
	Failed   int64   `json:"failed"`
	Queued   int64   `json:"queued,omitempty"` // of Failed: '+' replies saying the message was queued in the mailbox
	// Undelivered counts '+' replies whose message had not reached its
	// receiving session 3 s after the round ended (delivering arms only).
	Undelivered int64 `json:"undelivered"`
	delivers    bool

	reply, delivery []time.Duration // pooled samples, summarised by finish
}

func (a *Arm) add(r Round, reply, delivery []time.Duration) {
	a.Rounds = append(a.Rounds, r)
	a.Failed += r.Failed
	a.Queued += r.Queued
	if a.delivers {
		a.Undelivered += max(r.OK-r.Delivered, 0)
	}
	a.reply = append(a.reply, reply...)
	a.delivery = append(a.delivery, delivery...)
}

func (a *Arm) finish() {
	rates := make([]float64, len(a.Rounds))
	for i, r := range a.Rounds {
		rates[i] = r.Rate
	}
	a.Rate = math.Round(median(rates))
	a.Reply = summarize(a.reply)
	a.Delivery = summarize(a.delivery)
	a.reply, a.delivery = nil, nil
}

// Ratio compares a subject arm with a baseline arm of the same comparison.
type Ratio struct {
	Of string `json:"of"` // subject arm
	To string `json:"to"` // baseline arm
	// Rate is the median over rounds of subject rate / baseline rate in
	// the same round; RateMin and RateMax show the spread.
	Rate    float64 `json:"rate"`
	RateMin float64 `json:"rate_min"`
	RateMax float64 `json:"rate_max"`
	// P50 and P99 are subject / baseline reply latency (pooled samples).
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func ratio(of, to *Arm) Ratio {
	r := Ratio{Of: of.Name, To: to.Name}
	var per []float64
	for i := range min(len(of.Rounds), len(to.Rounds)) {
		if to.Rounds[i].Rate > 0 {
			per = append(per, of.Rounds[i].Rate/to.Rounds[i].Rate)
		}
	}
	if len(per) > 0 {
		r.Rate = round3(median(per))
		r.RateMin, r.RateMax = round3(slices.Min(per)), round3(slices.Max(per))
	}
	if to.Reply.P50us > 0 {
		r.P50 = round3(of.Reply.P50us / to.Reply.P50us)
	}
	if to.Reply.P99us > 0 {
		r.P99 = round3(of.Reply.P99us / to.Reply.P99us)
	}
	return r
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
