package main

import (
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Topology builds the enrichment: the users topic is read as a table (user
// id -> country); each page view (user id -> page) is joined with it (views
// of unknown users are dropped), re-keyed by country through a repartition
// topic, and counted per country in tumbling windows of one minute of event
// time (the records' timestamps) with the given grace. Every update of a
// window's count goes to output with the key "country@start" (the window's
// start in RFC 3339, UTC) and the count as decimal text, so the last record
// of a key is the window's final count.
func Topology(views, users, output string, grace time.Duration) (*stream.Topology, error) {
	b := stream.NewBuilder()
	pageViews := stream.Source(b, views, codec.String{}, codec.String{}, stream.Named("views"))
	userCountry := stream.SourceTable(b, users, codec.String{}, codec.String{}, stream.Named("users"))
	countries := stream.Join(pageViews, userCountry, func(_, _, country string) string { return country },
		stream.Named("enrich"))
	byCountry := stream.GroupBy(countries, func(_, country string) string { return country },
		codec.String{}, codec.String{}, stream.Named("by-country"))
	counts := stream.WindowedCount(stream.WindowedBy(byCountry, stream.Tumbling(time.Minute).Grace(grace)),
		stream.Named("views-per-minute"))
	stream.To(stream.Map(counts.ToStream(), func(w stream.Windowed[string], n int64) (string, int64) {
		return WindowKey(w.Key, w.Window.Start), n
	}, stream.Named("window-key")), output, codec.String{}, codec.Int64Text{}, stream.Named("write-counts"))
	return b.Build()
}

// WindowKey is the output key of a country's window starting at start.
func WindowKey(country string, start time.Time) string {
	return country + "@" + start.UTC().Format(time.RFC3339)
}
