package main

import (
	"context"
	"fmt"
	"image/color"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// runSweep measures sluice exactly-once at every commit interval, on one
// input per scenario.
func runSweep(ctx context.Context, e *env, c *Config, sc *scenario, sys system, cis []time.Duration) ([]Result, error) {
	in, err := loadScenario(ctx, e, c, sc, "sweep")
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, ci := range cis {
		rs, err := measureAll(ctx, e, c, sc, []system{sys}, in, ci, "sweep")
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// drawSweep draws throughput and p99 latency against the commit interval,
// one line per scenario, into a PNG.
func drawSweep(path string, rs []Result, broker string) error {
	colors := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	}
	thr := plot.New()
	thr.Title.Text = "sluice exactly-once: throughput vs commit interval"
	thr.X.Label.Text = "commit interval (ms, log scale)"
	thr.Y.Label.Text = "input records/s (log scale)"
	thr.X.Scale = plot.LogScale{}
	thr.X.Tick.Marker = intervalTicks(rs)
	thr.Y.Scale = plot.LogScale{}
	thr.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	thr.Add(plotter.NewGrid())
	lat := plot.New()
	lat.Title.Text = "end-to-end latency (p50, p99), paced producer at " + pacing(rs)
	lat.X.Label.Text = "commit interval (ms, log scale)"
	lat.Y.Label.Text = "latency (ms, log scale)"
	lat.X.Scale = plot.LogScale{}
	lat.X.Tick.Marker = intervalTicks(rs)
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.Add(plotter.NewGrid())

	for i, sc := range scenarioNames {
		var tp, lp, mp plotter.XYs
		for _, r := range rs {
			if r.Kind != "sweep" || r.Scenario != sc || !r.Correct {
				continue
			}
			tp = append(tp, plotter.XY{X: r.CommitIntervalMs, Y: r.RecordsPerS})
			if r.LatencyRecords > 0 && r.P99Ms > 0 {
				lp = append(lp, plotter.XY{X: r.CommitIntervalMs, Y: r.P99Ms})
				mp = append(mp, plotter.XY{X: r.CommitIntervalMs, Y: max(r.P50Ms, 1)})
			}
		}
		if len(tp) == 0 {
			continue
		}
		col := colors[i%len(colors)]
		l, p, err := plotter.NewLinePoints(tp)
		if err != nil {
			return err
		}
		l.Color, p.Color = col, col
		thr.Add(l, p)
		thr.Legend.Add(sc, l, p)
		if len(lp) > 0 {
			l, p, err := plotter.NewLinePoints(lp)
			if err != nil {
				return err
			}
			l.Color, p.Color = col, col
			lat.Add(l, p)
			lat.Legend.Add(sc+" p99", l, p)
			ml, mpts, err := plotter.NewLinePoints(mp)
			if err != nil {
				return err
			}
			ml.Color, mpts.Color = col, col
			ml.Width = vg.Points(0.5)
			mpts.Shape = draw.TriangleGlyph{}
			lat.Add(ml, mpts)
			lat.Legend.Add(sc+" p50", ml, mpts)
			// The target: stages x commit interval + 100 ms.
			var bound plotter.XYs
			for _, pt := range lp {
				bound = append(bound, plotter.XY{X: pt.X, Y: float64(scenarios[sc].stages)*pt.X + 100})
			}
			bl, err := plotter.NewLine(bound)
			if err != nil {
				return err
			}
			bl.Color = col
			bl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			lat.Add(bl)
			lat.Legend.Add(fmt.Sprintf("%s target (%d x interval + 100 ms)", sc, scenarios[sc].stages), bl)
		}
	}
	thr.Title.Text += " (broker " + broker + ")"
	thr.Legend.Top = false
	lat.Legend.Top = true
	lat.Legend.Left = true

	const w, h = 22 * vg.Centimeter, 24 * vg.Centimeter
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	plots := [][]*plot.Plot{{thr}, {lat}}
	canvases := plot.Align(plots, tiles, dc)
	thr.Draw(canvases[0][0])
	lat.Draw(canvases[1][0])
	png := vgimg.PngCanvas{Canvas: img}
	f, err := createFile(path)
	if err != nil {
		return err
	}
	if _, err := png.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// intervalTicks labels the commit intervals that were measured.
func intervalTicks(rs []Result) plot.Ticker {
	seen := map[float64]bool{}
	var ticks plot.ConstantTicks
	for _, r := range rs {
		if r.Kind == "sweep" && !seen[r.CommitIntervalMs] {
			seen[r.CommitIntervalMs] = true
			ticks = append(ticks, plot.Tick{Value: r.CommitIntervalMs, Label: fmt.Sprintf("%g", r.CommitIntervalMs)})
		}
	}
	return ticks
}

// pacing describes the paced producer's rates of the sweep: a fixed rate per
// scenario (-latency-rate), or a fraction of each point's throughput.
func pacing(rs []Result) string {
	fixed := map[string]float64{}
	var order []string
	load, isFixed := 0.0, true
	for _, r := range rs {
		if r.Kind != "sweep" || r.LatencyTarget <= 0 {
			continue
		}
		if r.RecordsPerS > 0 {
			load = r.LatencyTarget / r.RecordsPerS
		}
		if f, ok := fixed[r.Scenario]; !ok {
			fixed[r.Scenario] = r.LatencyTarget
			order = append(order, r.Scenario)
		} else if f != r.LatencyTarget {
			isFixed = false
		}
	}
	if !isFixed || len(order) == 0 {
		return fmt.Sprintf("%.0f%% of each point's throughput", 100*load)
	}
	var parts []string
	for _, sc := range order {
		parts = append(parts, fmt.Sprintf("%s %.0f/s", sc, fixed[sc]))
	}
	return "a fixed rate (" + strings.Join(parts, ", ") + ")"
}
