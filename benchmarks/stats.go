package main

import (
	"math"
	"slices"
)

// spread is the distribution of one measure over the rounds of a row: what a
// reader needs next to a median to judge it.
type spread struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Q1 and Q3 are the quartiles (linear interpolation between the
	// order statistics, R's type 7), so Q3-Q1 is the interquartile range.
	Q1 float64 `json:"q1"`
	Q3 float64 `json:"q3"`
}

// spreadOf returns the spread of xs (any order); the zero spread for none.
func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return spread{N: len(s), Median: quantile(s, 0.5), Min: s[0], Max: s[len(s)-1],
		Q1: quantile(s, 0.25), Q3: quantile(s, 0.75)}
}

// quantile returns the q-quantile of sorted s by linear interpolation (type
// 7: the median of an even count is the mean of the middle two).
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	h := q * float64(len(s)-1)
	lo := math.Floor(h)
	i := int(lo)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (h-lo)*(s[i+1]-s[i])
}

// relSpread is (max-min)/median: how far apart the rounds were.
func (s spread) relSpread() float64 {
	if s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / s.Median
}
