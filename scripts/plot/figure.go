package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/test/results"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The figure: 1400 × 980 pixels, four panels.
const (
	figureWidth  = 14 * vg.Inch
	figureHeight = 9.8 * vg.Inch
	figureDPI    = 100
)

var (
	black = color.RGBA{30, 30, 30, 255}
	grey  = color.RGBA{150, 150, 150, 255}
	// The colour of each login kind, the same in every panel.
	colors = map[string]color.RGBA{
		results.KindJWT:    {214, 69, 65, 255},
		results.KindScram:  {52, 120, 190, 255},
		results.KindNoop:   {60, 160, 80, 255},
		results.KindGoNoop: {230, 150, 40, 255},
		results.KindTrust:  {130, 130, 130, 255},
	}
	controlColor = colors[results.KindScram]
)

func colorOf(kind string) color.RGBA {
	if c, ok := colors[kind]; ok {
		return c
	}
	return black
}

// lighter mixes c with two parts white.
func lighter(c color.RGBA) color.RGBA {
	f := func(v uint8) uint8 { return uint8((int(v) + 2*255) / 3) }
	return color.RGBA{f(c.R), f(c.G), f(c.B), 255}
}

// writeFigure draws the four panels of one major's run into a PNG file.
func writeFigure(path string, r run) error {
	panels, err := panels(r)
	if err != nil {
		return err
	}
	img := vgimg.NewWith(vgimg.UseWH(figureWidth, figureHeight), vgimg.UseDPI(figureDPI))
	dc := draw.New(img)
	title := "oauth_jwt under load, PostgreSQL " + r.Major
	if m, ok := r.machine(); ok {
		title = fmt.Sprintf("oauth_jwt under load: PostgreSQL %s, %s, %s, %d cores", m.Postgres, m.Date, m.CPU, m.Cores)
	}
	dc.FillText(draw.TextStyle{Color: black, Font: font.From(plot.DefaultFont, 15), Handler: plot.DefaultTextHandler,
		XAlign: draw.XCenter, YAlign: draw.YTop}, vg.Point{X: figureWidth / 2, Y: figureHeight - 10}, title)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: 0.5 * vg.Inch, PadY: 0.4 * vg.Inch,
		PadTop: 0.45 * vg.Inch, PadBottom: 0.15 * vg.Inch, PadLeft: 0.15 * vg.Inch, PadRight: 0.25 * vg.Inch}
	canvases := plot.Align(panels, tiles, dc)
	for i := range panels {
		for j := range panels[i] {
			panels[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// panels are A (latency under load), B (throughput over time),
// C (uncontended latency) and D (soak memory), in two rows.
func panels(r run) ([][]*plot.Plot, error) {
	a, err := latencyCDF(r.Load)
	if err != nil {
		return nil, err
	}
	b, err := throughput(r.Load)
	if err != nil {
		return nil, err
	}
	c, err := uncontended(r.Bench)
	if err != nil {
		return nil, err
	}
	d, err := soakMemory(r.Soak)
	if err != nil {
		return nil, err
	}
	return [][]*plot.Plot{{a, b}, {c, d}}, nil
}

func newPanel(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 13
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = 8, -8
	p.Legend.TextStyle.Font.Size = 11
	p.Legend.Padding = 2
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.TickerFunc(plainTicks), plot.TickerFunc(plainTicks)
	p.Add(plotter.NewGrid())
	return p
}

// missing is a panel saying which results the run lacks.
func missing(title, file string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title + " – no " + file + " in this run"
	p.HideAxes()
	return p
}

func line(p *plot.Plot, xys plotter.XYs, c color.Color, width vg.Length, legend string) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, width
	p.Add(l)
	if legend != "" {
		p.Legend.Add(legend, l)
	}
	return nil
}

// latencyCDF is panel A: the distribution of connect latencies per kind
// in the load test's mixed run, on a log scale.
func latencyCDF(load *results.Load) (*plot.Plot, error) {
	const title = "A. Connect latency, mixed run"
	if load == nil {
		return missing(title, "load results"), nil
	}
	p := newPanel(fmt.Sprintf("%s (%.0f s, all kinds at once)", title, load.DurationS), "connect latency, ms (log scale)", "percentile")
	lo, hi := math.Inf(1), 1.0
	for _, k := range load.Kinds {
		var xys plotter.XYs
		for i, ms := range k.CDF {
			xys = append(xys, plotter.XY{X: math.Max(ms, 0.01), Y: 100 * float64(i+1) / float64(len(k.CDF))})
		}
		if len(xys) == 0 {
			continue
		}
		lo, hi = math.Min(lo, xys[0].X), math.Max(hi, xys[len(xys)-1].X)
		if err := line(p, xys, colorOf(k.Name), 2, fmt.Sprintf("%s (%d clients)", k.Name, k.Clients)); err != nil {
			return nil, err
		}
	}
	if math.IsInf(lo, 1) {
		lo = 1
	}
	p.X.Scale = plot.LogScale{}
	p.X.Min, p.X.Max = lo/1.2, hi*1.2
	p.X.Tick.Marker = plot.TickerFunc(logTicks)
	p.Y.Min, p.Y.Max = 0, 100
	p.Y.Tick.Marker = plot.ConstantTicks(ticks(0, 25, 50, 75, 90, 100))
	return p, nil
}

// throughput is panel B: logins per second per kind over the mixed run,
// with the key cache's refresh interval marked.
func throughput(load *results.Load) (*plot.Plot, error) {
	const title = "B. Logins per second, mixed run"
	if load == nil || len(load.Timeline) < 2 {
		return missing(title, "load results"), nil
	}
	p := newPanel(title+" (key cache refreshes dashed)", "seconds since the start", "logins/s")
	secs := load.Timeline[:len(load.Timeline)-1] // the last second is partial
	peak := 1.0
	for _, k := range load.Kinds {
		var xys plotter.XYs
		for _, s := range secs {
			xys = append(xys, plotter.XY{X: float64(s.T) + 0.5, Y: float64(s.Logins[k.Name])})
			peak = math.Max(peak, float64(s.Logins[k.Name]))
		}
		if err := line(p, xys, colorOf(k.Name), 2, fmt.Sprintf("%s (%d clients)", k.Name, k.Clients)); err != nil {
			return nil, err
		}
	}
	end := float64(len(load.Timeline))
	for t, first := load.RefreshS, true; load.RefreshS > 0 && t < end; t, first = t+load.RefreshS, false {
		l, err := plotter.NewLine(plotter.XYs{{X: t, Y: 0}, {X: t, Y: peak * 1.25}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Dashes = grey, []vg.Length{4, 4}
		p.Add(l)
		if first {
			p.Legend.Add(fmt.Sprintf("cache_refresh_interval (%.0f s)", load.RefreshS), l)
		}
	}
	p.X.Min, p.X.Max = 0, end
	p.Y.Min, p.Y.Max = 0, peak*1.25 // room for the legend
	return p, nil
}

// uncontended is panel C: the benchmark's p50 and p99 per kind, one login
// at a time, with each kind's ratios and its throughput under the bars.
func uncontended(bench *results.Bench) (*plot.Plot, error) {
	const title = "C. One login at a time (benchmark)"
	if bench == nil || len(bench.Kinds) == 0 {
		return missing(title, "benchmark results"), nil
	}
	p := newPanel(title+": p50 solid, p99 light", fmt.Sprintf("p50 ÷ C no-op, ÷ Go no-op; logins/s with %d clients", bench.Clients), "connect latency, ms")
	const w = 26
	var names []string
	top := 1.0
	var labels plotter.XYLabels
	for i, k := range bench.Kinds {
		for _, bar := range []struct {
			v      float64
			c      color.RGBA
			offset vg.Length
		}{{k.P50ms, colorOf(k.Name), -w / 2}, {k.P99ms, lighter(colorOf(k.Name)), w / 2}} {
			b, err := plotter.NewBarChart(plotter.Values{bar.v}, w)
			if err != nil {
				return nil, err
			}
			b.XMin, b.Color, b.Offset, b.LineStyle.Width = float64(i), bar.c, bar.offset, 0
			p.Add(b)
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: float64(i), Y: k.P50ms})
		labels.Labels = append(labels.Labels, fmt.Sprintf("%.1f", k.P50ms))
		top = math.Max(top, k.P99ms)
		name := strings.TrimPrefix(k.Name, "oauth ")
		names = append(names, fmt.Sprintf("%s\n%.2f×, %.2f×\n%.0f/s", name, k.VsNoop, k.VsGoNoop, k.LoginsPerS))
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	l.Offset = vg.Point{X: -w - 2, Y: 3}
	p.Add(l)
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, top*1.15
	return p, nil
}

// soakMemory is panel D: the private dirty memory of every long-lived
// backend over the soak, oauth_jwt sessions and the controls.
func soakMemory(soak *results.Soak) (*plot.Plot, error) {
	const title = "D. Soak: long-lived backends' private dirty memory"
	if soak == nil || len(soak.SampleTimesS) < 2 {
		return missing(title, "soak results"), nil
	}
	threads := countsString(soak.ThreadsEnd)
	p := newPanel(fmt.Sprintf("%s (threads: %s)", title, threads), "seconds since the start", "private dirty memory, kB")
	lo, hi := math.Inf(1), math.Inf(-1)
	legend := map[bool]string{false: fmt.Sprintf("oauth_jwt sessions (%d)", soak.Sessions), true: fmt.Sprintf("trust controls, no module (%d)", soak.Controls)}
	for _, b := range soak.Backends {
		var xys plotter.XYs
		for i, s := range b.Samples {
			if i < len(soak.SampleTimesS) {
				xys = append(xys, plotter.XY{X: soak.SampleTimesS[i], Y: float64(s.PrivateDirtyKB)})
				lo, hi = math.Min(lo, float64(s.PrivateDirtyKB)), math.Max(hi, float64(s.PrivateDirtyKB))
			}
		}
		if len(xys) == 0 {
			continue
		}
		c := colorOf(results.KindJWT)
		if b.Control {
			c = controlColor
		}
		if err := line(p, xys, c, 1, legend[b.Control]); err != nil {
			return nil, err
		}
		delete(legend, b.Control) // one legend entry per group
	}
	if !math.IsInf(lo, 1) {
		p.Y.Min, p.Y.Max = math.Max(0, lo-400), hi+600
	}
	p.X.Min, p.X.Max = 0, soak.SampleTimesS[len(soak.SampleTimesS)-1]
	return p, nil
}

func ticks(vs ...float64) []plot.Tick {
	var t []plot.Tick
	for _, v := range vs {
		t = append(t, plot.Tick{Value: v, Label: ff(v)})
	}
	return t
}

// plainTicks are gonum's default ticks, labelled without trailing zeros.
func plainTicks(min, max float64) []plot.Tick {
	t := plot.DefaultTicks{}.Ticks(min, max)
	for i := range t {
		if t[i].Label != "" {
			t[i].Label = ff(t[i].Value)
		}
	}
	return t
}

// logTicks labels 1, 2 and 5 times the powers of ten in [min, max].
func logTicks(min, max float64) []plot.Tick {
	var t []plot.Tick
	for d := math.Pow(10, math.Floor(math.Log10(min))); d <= max; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v >= min*0.999 && v <= max*1.001 {
				t = append(t, plot.Tick{Value: v, Label: ff(v)})
			}
		}
	}
	return t
}

// ff formats a tick value: at most six decimals, no trailing zeros.
func ff(v float64) string { return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64) }
