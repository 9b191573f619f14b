package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
)

// Scale chart geometry, in SVG user units.
const (
	scaleW     = 760
	scaleH     = 460
	scaleLeft  = 80
	scaleRight = 170 // room for the legend
	scaleTop   = 70
	scaleBot   = 60
)

// scaleColours are the series colours, one per gossip profile.
var scaleColours = map[string]string{"lan": colSubject, "local": "#d2781e", "wan": "#3c9650"}

// WriteScaleChart draws the scale scenario's sign-in visibility (p50 and
// p99) against cluster size, one pair of lines per gossip profile, with
// the targets in red, as an SVG document.
func (r *Report) WriteScaleChart(w io.Writer) error {
	c := &canvas{w: bufio.NewWriter(w)}
	c.printf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"monospace\" font-size=\"%d\" fill=\"%s\">\n",
		scaleW, scaleH, scaleW, scaleH, fontSize, colText)
	c.printf("<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n")
	m := r.Machine
	c.text(chartPad, chartPad, fmt.Sprintf("mspbench %s  %s, %d cores, load %s", r.Started.Format("2006-01-02"), shortCPU(m.CPU), m.Cores, m.LoadBefore), "start")
	c.text(chartPad, chartPad+20, "Sign-in visible on every node process (log scale; solid p50, dashed p99; red: target)", "start")

	// x linear in nodes; y logarithmic in ms, so that 200 ms and a 30 s
	// timeout both read.
	maxN, loMs, hiMs := 100.0, 100.0, 1000.0 // the targets are always on the chart
	var profiles []string
	for _, s := range r.Scale {
		if s.SignInSamples == 0 {
			continue
		}
		maxN = max(maxN, float64(s.Nodes))
		loMs, hiMs = min(loMs, s.SignInP50ms), max(hiMs, s.SignInP99ms)
		if !slices.Contains(profiles, s.Profile) {
			profiles = append(profiles, s.Profile)
		}
	}
	maxN = scaleAxisMax(maxN)
	loMs = math.Pow(10, math.Floor(math.Log10(max(loMs, 1))))
	hiMs = math.Pow(10, math.Ceil(math.Log10(hiMs)))
	x0, x1, y0, y1 := scaleLeft, scaleW-scaleRight, scaleH-scaleBot, scaleTop
	xOf := func(n float64) int { return x0 + int(n/maxN*float64(x1-x0)) }
	yOf := func(ms float64) int {
		ms = min(max(ms, loMs), hiMs)
		return y0 - int((math.Log10(ms)-math.Log10(loMs))/(math.Log10(hiMs)-math.Log10(loMs))*float64(y0-y1))
	}
	for v := loMs; v <= hiMs*1.001; v *= 10 {
		y := yOf(v)
		c.fill(x0, y, x1, y+1, colGrid)
		c.text(x0-8, y-fontSize/2, fmtMicros(v*1000), "end")
	}
	for i := 0; i <= 5; i++ {
		n := maxN * float64(i) / 5
		x := xOf(n)
		c.fill(x, y1, x+1, y0, colGrid)
		c.text(x, y0+6, fmt.Sprintf("%.0f", n), "middle")
	}
	c.text((x0+x1)/2, y0+28, "nodes", "middle")
	for _, t := range []struct{ n, ms float64 }{{30, 300}, {100, 1000}} {
		x, y := xOf(t.n), yOf(t.ms)
		c.fill(x-6, y-1, x+7, y+2, colTarget)
		c.text(x+9, y-fontSize/2-8, fmt.Sprintf("%.0f ms at %.0f", t.ms, t.n), "start")
	}
	for i, prof := range profiles {
		col := scaleColours[prof]
		if col == "" {
			col = colBaseline
		}
		var pts []ScaleResult
		for _, s := range r.Scale {
			if s.Profile == prof && s.SignInSamples > 0 {
				pts = append(pts, s)
			}
		}
		slices.SortFunc(pts, func(a, b ScaleResult) int { return a.Nodes - b.Nodes })
		for _, q := range []struct {
			of   func(ScaleResult) float64
			dash string
		}{{func(s ScaleResult) float64 { return s.SignInP50ms }, ""}, {func(s ScaleResult) float64 { return s.SignInP99ms }, " stroke-dasharray=\"6 4\""}} {
			path := ""
			for j, s := range pts {
				cmd := "L"
				if j == 0 {
					cmd = "M"
				}
				path += fmt.Sprintf("%s%d %d ", cmd, xOf(float64(s.Nodes)), yOf(q.of(s)))
			}
			if path != "" {
				c.printf("<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", path, col, q.dash)
			}
			for _, s := range pts {
				c.printf("<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n", xOf(float64(s.Nodes)), yOf(q.of(s)), col)
				c.text(xOf(float64(s.Nodes))+7, yOf(q.of(s))-fontSize, fmt.Sprintf("%.0f", q.of(s)), "start")
			}
		}
		ly := scaleTop + i*22
		c.fill(x1+20, ly+5, x1+44, ly+8, col)
		c.text(x1+50, ly, prof, "start")
	}
	c.printf("</svg>\n")
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
