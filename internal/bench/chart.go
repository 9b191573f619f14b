package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart geometry, in SVG user units (pixels at 100%).
const (
	chartW     = 1100
	chartPad   = 20
	labelW     = 300 // left column: scenario and arm
	barX       = chartPad + labelW
	barW       = chartW - barX - 150 // room for the value on the right
	rowH       = 22
	barH       = 14
	fontSize   = 13
	charW      = 8 // a generous monospace advance at fontSize, for truncating labels
	titleH     = 30
	panelGap   = 26
	groupGap   = 8
	tickLabelH = 20
)

// Chart colours.
const (
	colText     = "#1e1e1e"
	colBaseline = "#a0a0a0"
	colSubject  = "#286ec8"
	colP99      = "#96beeb"
	colP99Base  = "#d2d2d2"
	colGrid     = "#e1e1e1"
	colTarget   = "#d22828"
)

// canvas writes SVG elements; the first write error sticks and is
// returned by end.
type canvas struct {
	w   *bufio.Writer
	err error
}

func (c *canvas) printf(format string, a ...any) {
	if c.err == nil {
		_, c.err = fmt.Fprintf(c.w, format, a...)
	}
}

func (c *canvas) fill(x0, y0, x1, y1 int, col string) {
	if x1 <= x0 || y1 <= y0 {
		return
	}
	c.printf("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", x0, y0, x1-x0, y1-y0, col)
}

// text writes s with its top left corner at (x, y); anchor is "start" or
// "middle".
func (c *canvas) text(x, y int, s, anchor string) {
	var esc strings.Builder
	_ = xml.EscapeText(&esc, []byte(s)) // writes to a strings.Builder cannot fail
	c.printf("<text x=\"%d\" y=\"%d\" text-anchor=\"%s\">%s</text>\n", x, y+fontSize-2, anchor, esc.String())
}

// chartRow is one bar row: a label and the arm or ratio it shows.
type chartRow struct {
	label string
	arm   *Arm
	ratio *Ratio
	group int
}

// WriteChart draws the throughput, reply latency and ratio of every
// comparison in the report as an SVG document.
func (r *Report) WriteChart(w io.Writer) error {
	var rows []chartRow
	for i, c := range r.Comparisons {
		for _, a := range c.Arms {
			rows = append(rows, chartRow{label: c.Scenario + " " + a.Name, arm: a, group: i})
		}
	}
	var ratios []chartRow
	for i, c := range r.Comparisons {
		for j := range c.Ratios {
			q := &c.Ratios[j]
			ratios = append(ratios, chartRow{label: c.Scenario + " " + q.Of + "/" + q.To, ratio: q, group: i})
		}
	}
	groups := len(r.Comparisons)
	panel := func(n int) int { return titleH + n*rowH + groups*groupGap + tickLabelH }
	h := chartPad + 40 + panel(len(rows))*2 + panel(len(ratios)) + 2*panelGap + 2*chartPad
	c := &canvas{w: bufio.NewWriter(w)}
	c.printf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"monospace\" font-size=\"%d\" fill=\"%s\">\n",
		chartW, h, chartW, h, fontSize, colText)
	c.printf("<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n")

	m := r.Machine
	y := chartPad
	c.text(chartPad, y, fmt.Sprintf("mspbench %s  %s, %d cores, %s", r.Started.Format("2006-01-02"), shortCPU(m.CPU), m.Cores, m.Go), "start")
	y += 22
	c.text(chartPad, y, "grey: baseline   blue: node or cross-node   light: p99   red: target", "start")
	y += 18 + 22

	// Throughput, linear.
	maxRate := 1.0
	for _, row := range rows {
		maxRate = math.Max(maxRate, row.arm.Rate)
	}
	y = c.panel(y, "Throughput, msg/s (median of rounds)", rows, func(row chartRow, by int) {
		col := colBaseline
		if row.arm.Role == "subject" {
			col = colSubject
		}
		x1 := barX + int(row.arm.Rate/maxRate*barW)
		c.fill(barX, by, x1, by+barH, col)
		c.text(x1+6, by, fmt.Sprintf("%.0f", row.arm.Rate), "start")
	}, nil)
	y += panelGap

	// Reply latency, log scale: p99 light, p50 dark on top.
	lo, hi := math.Inf(1), 0.0
	for _, row := range rows {
		if row.arm.Reply.P50us > 0 {
			lo = math.Min(lo, row.arm.Reply.P50us)
		}
		hi = math.Max(hi, row.arm.Reply.P99us)
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	xOf := func(v float64) int {
		if v <= lo {
			return barX
		}
		return barX + int((math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*barW)
	}
	var ticks []tick
	for v := lo; v <= hi*1.001; v *= 10 {
		ticks = append(ticks, tick{x: xOf(v), label: fmtMicros(v)})
	}
	y = c.panel(y, "Reply latency p50 and p99 (log scale)", rows, func(row chartRow, by int) {
		dark, light := colBaseline, colP99Base
		if row.arm.Role == "subject" {
			dark, light = colSubject, colP99
		}
		c.fill(barX, by, xOf(row.arm.Reply.P99us), by+barH, light)
		c.fill(barX, by, xOf(row.arm.Reply.P50us), by+barH, dark)
		c.text(xOf(row.arm.Reply.P99us)+6, by, fmtMicros(row.arm.Reply.P50us)+" / "+fmtMicros(row.arm.Reply.P99us), "start")
	}, ticks)
	y += panelGap

	// Ratios, linear, with the 1.0 line and each target.
	maxRatio := 1.2
	for _, row := range ratios {
		maxRatio = math.Max(maxRatio, row.ratio.Rate*1.1)
	}
	rx := func(v float64) int { return barX + int(v/maxRatio*barW) }
	ticks = nil
	for v := 0.0; v <= maxRatio; v += 0.2 {
		ticks = append(ticks, tick{x: rx(v), label: fmt.Sprintf("%.1f", v)})
	}
	c.panel(y, "Rate ratio to baseline (target in red)", ratios, func(row chartRow, by int) {
		q := *row.ratio
		col := colBaseline
		if q.Of == "node" || q.Of == "cross" {
			col = colSubject
		}
		c.fill(barX, by, rx(q.Rate), by+barH, col)
		labelX := rx(q.Rate) + 6
		if t := rateFloor(r.Comparisons[row.group].Scenario, q); t > 0 {
			c.fill(rx(t)-1, by-3, rx(t)+2, by+barH+3, colTarget)
			if rx(t) >= rx(q.Rate)-2 && rx(t) < labelX+6*charW {
				labelX = rx(t) + 8 // keep the value clear of the target mark
			}
		}
		c.text(labelX, by, fmt.Sprintf("%.2f×", q.Rate), "start")
	}, ticks)
	c.printf("</svg>\n")
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// tick is a labelled vertical grid line.
type tick struct {
	x     int
	label string
}

// panel draws a titled panel of bar rows, grouped by comparison, and
// returns the y below it.
func (c *canvas) panel(y int, title string, rows []chartRow, bar func(chartRow, int), ticks []tick) int {
	c.text(chartPad, y, title, "start")
	y += titleH
	top := y
	bottom := top + len(rows)*rowH + groupsIn(rows)*groupGap
	for _, t := range ticks {
		c.fill(t.x, top-4, t.x+1, bottom, colGrid)
		c.text(t.x, bottom+4, t.label, "middle")
	}
	group := -1
	for _, row := range rows {
		if row.group != group && group >= 0 {
			y += groupGap
		}
		group = row.group
		label := row.label
		if max := labelW/charW - 1; len(label) > max {
			label = label[:max]
		}
		c.text(chartPad, y+1, label, "start")
		bar(row, y)
		y += rowH
	}
	return bottom + tickLabelH
}

func groupsIn(rows []chartRow) int {
	n, last := 0, -1
	for _, r := range rows {
		if r.group != last {
			n++
			last = r.group
		}
	}
	return n
}

// fmtMicros formats microseconds as "850µs", "1.2ms" or "2.0s".
func fmtMicros(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

// shortCPU drops the vendor noise from a /proc/cpuinfo model name.
func shortCPU(s string) string {
	for _, junk := range []string{"(R)", "(TM)", "(tm)", " CPU", " Processor"} {
		s = strings.ReplaceAll(s, junk, "")
	}
	return strings.Join(strings.Fields(s), " ")
}
