package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
)

// Chart geometry, in pixels.
const (
	chartW     = 1100
	chartPad   = 20
	labelW     = 300 // left column: scenario and arm
	barX       = chartPad + labelW
	barW       = chartW - barX - 150 // room for the value on the right
	rowH       = 22
	barH       = 14
	fontScale  = 2
	charW      = 6 * fontScale // 5 pixels and a gap
	titleH     = 34
	panelGap   = 26
	groupGap   = 8
	tickLabelH = 20
)

// Chart colours, 0xRRGGBB.
const (
	colBackground = 0xffffff
	colText       = 0x1e1e1e
	colBaseline   = 0xa0a0a0
	colSubject    = 0x286ec8
	colP99        = 0x96beeb
	colP99Base    = 0xd2d2d2
	colGrid       = 0xe1e1e1
	colTarget     = 0xd22828
)

func rgb(hex uint32) color.RGBA {
	return color.RGBA{uint8(hex >> 16), uint8(hex >> 8), uint8(hex), 0xff}
}

type canvas struct{ img *image.RGBA }

func (c *canvas) fill(x0, y0, x1, y1 int, hex uint32) {
	col := rgb(hex)
	r := image.Rect(x0, y0, x1, y1).Intersect(c.img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c.img.SetRGBA(x, y, col)
		}
	}
}

// text draws s with its top left corner at (x, y) and returns its width.
func (c *canvas) text(x, y int, s string, col uint32) int {
	cx := x
	for _, r := range s {
		g := glyph(r)
		for row, bits := range g {
			for bit := range 5 {
				if bits&(0x10>>bit) != 0 {
					c.fill(cx+bit*fontScale, y+row*fontScale, cx+(bit+1)*fontScale, y+(row+1)*fontScale, col)
				}
			}
		}
		cx += charW
	}
	return cx - x
}

// chartRow is one bar row: a label and the arm or ratio it shows.
type chartRow struct {
	label string
	arm   *Arm
	ratio *Ratio
	group int
}

// WriteChart draws the throughput, reply latency and ratio of every
// comparison in the report as a PNG.
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
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, chartW, h))}
	c.fill(0, 0, chartW, h, colBackground)

	m := r.Machine
	y := chartPad
	c.text(chartPad, y, fmt.Sprintf("MSPBENCH %s  %s, %d CORES, %s", r.Started.Format("2006-01-02"), shortCPU(m.CPU), m.Cores, m.Go), colText)
	y += 22
	c.text(chartPad, y, "GREY: BASELINE   BLUE: NODE OR CROSS-NODE   LIGHT: P99   RED: TARGET", colText)
	y += 18 + 22

	// Throughput, linear.
	maxRate := 1.0
	for _, row := range rows {
		maxRate = math.Max(maxRate, row.arm.Rate)
	}
	y = c.panel(y, "THROUGHPUT, MSG/S (MEDIAN OF ROUNDS)", rows, func(row chartRow, by int) {
		col := uint32(colBaseline)
		if row.arm.Role == "subject" {
			col = colSubject
		}
		x1 := barX + int(row.arm.Rate/maxRate*barW)
		c.fill(barX, by, x1, by+barH, col)
		c.text(x1+6, by, fmt.Sprintf("%.0f", row.arm.Rate), colText)
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
	y = c.panel(y, "REPLY LATENCY P50 AND P99 (LOG SCALE)", rows, func(row chartRow, by int) {
		dark, light := uint32(colBaseline), uint32(colP99Base)
		if row.arm.Role == "subject" {
			dark, light = colSubject, colP99
		}
		c.fill(barX, by, xOf(row.arm.Reply.P99us), by+barH, light)
		c.fill(barX, by, xOf(row.arm.Reply.P50us), by+barH, dark)
		c.text(xOf(row.arm.Reply.P99us)+6, by, fmtMicros(row.arm.Reply.P50us)+" / "+fmtMicros(row.arm.Reply.P99us), colText)
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
	c.panel(y, "RATE RATIO TO BASELINE (TARGET IN RED)", ratios, func(row chartRow, by int) {
		q := *row.ratio
		col := uint32(colBaseline)
		if q.Of == "node" || q.Of == "cross" {
			col = colSubject
		}
		c.fill(barX, by, rx(q.Rate), by+barH, col)
		c.text(rx(q.Rate)+6, by, fmt.Sprintf("%.2fX", q.Rate), colText)
		if t := ratioTarget(r.Comparisons[row.group].Scenario, q); t > 0 {
			c.fill(rx(t)-1, by-3, rx(t)+2, by+barH+3, colTarget)
		}
	}, ticks)
	return png.Encode(w, c.img)
}

// tick is a labelled vertical grid line.
type tick struct {
	x     int
	label string
}

// panel draws a titled panel of bar rows, grouped by comparison, and
// returns the y below it.
func (c *canvas) panel(y int, title string, rows []chartRow, bar func(chartRow, int), ticks []tick) int {
	c.text(chartPad, y, title, colText)
	y += titleH
	top := y
	bottom := top + len(rows)*rowH + groupsIn(rows)*groupGap
	for _, t := range ticks {
		c.fill(t.x, top-4, t.x+1, bottom, colGrid)
		c.text(t.x-len(t.label)*charW/2, bottom+4, t.label, colText)
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
		c.text(chartPad, y+1, strings.ToUpper(label), colText)
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

// ratioTarget is the target for a ratio, or 0.
func ratioTarget(scenario string, q Ratio) float64 {
	switch {
	case scenario == "local/"+ModeTCP1:
		return 0.8
	case strings.HasPrefix(scenario, "local/"):
		return 0.6
	case strings.HasPrefix(scenario, "cross/") && q.To == "local":
		return 0.5
	}
	return 0
}

// fmtMicros formats microseconds as "850US", "1.2MS" or "2.0S".
func fmtMicros(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fS", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fMS", v/1e3)
	}
	return fmt.Sprintf("%.0fUS", v)
}

// shortCPU drops the vendor noise from a /proc/cpuinfo model name.
func shortCPU(s string) string {
	for _, junk := range []string{"(R)", "(TM)", "(tm)", " CPU", " Processor"} {
		s = strings.ReplaceAll(s, junk, "")
	}
	return strings.Join(strings.Fields(s), " ")
}
