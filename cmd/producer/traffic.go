package main

import (
	"math"
	"math/rand/v2"
	"time"
)

// Mode is an injected failure.
type Mode string

// The failure modes.
const (
	ModeNone     Mode = "none"
	ModeLatency  Mode = "latency"
	ModeErrors   Mode = "errors"
	ModeMeltdown Mode = "meltdown"
	ModeSpike    Mode = "spike"    // three times the traffic, healthy
	ModeCollapse Mode = "collapse" // traffic falls to a tenth, nothing else changes
	ModeBetter   Mode = "better"   // faster and fewer errors than usual
)

// profile is one test service's healthy behaviour.
type profile struct {
	requests  float64 // requests per minute at the daily mean
	latency   float64 // p95 in ms at the daily mean
	errorRate float64 // typical fraction of failed requests
}

var profiles = map[string]profile{
	"api":  {requests: 1200, latency: 180, errorRate: 0.010},
	"db":   {requests: 3000, latency: 40, errorRate: 0.002},
	"auth": {requests: 400, latency: 90, errorRate: 0.005},
}

// profileFor returns the profile of a known service, or a plausible one derived from the name.
func profileFor(name string) profile {
	if p, ok := profiles[name]; ok {
		return p
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	r := rand.New(rand.NewPCG(h, 7))
	return profile{requests: 200 + 2000*r.Float64(), latency: 30 + 200*r.Float64(), errorRate: 0.001 + 0.01*r.Float64()}
}

// metrics is one generated sample.
type metrics struct {
	ErrorRate    float64
	LatencyP95   float64
	RequestCount float64
}

// service generates one service's samples: a daily traffic cycle (quiet at night, busiest in
// the afternoon), latency that rises a little with load, and noise on everything.
type service struct {
	name string
	emit string // the name published, with any prefix
	p    profile
	rng  *rand.Rand
}

func newService(name string, seed uint64) *service {
	h := seed
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	return &service{name: name, p: profileFor(name), rng: rand.New(rand.NewPCG(h, seed))}
}

// sample returns the metrics at time at for an interval of length interval, with mode
// injected when failing is true.
func (s *service) sample(at time.Time, interval time.Duration, mode Mode, failing bool) metrics {
	hour := float64(at.UTC().Hour()) + float64(at.UTC().Minute())/60
	load := 1 + 0.6*math.Sin(2*math.Pi*(hour-9)/24) // 0.4 at 03:00, 1.6 at 15:00
	perInterval := s.p.requests * interval.Minutes() * load
	reqs := perInterval * (1 + 0.05*s.rng.NormFloat64())
	lat := s.p.latency * (1 + 0.08*(load-1)) * math.Exp(0.07*s.rng.NormFloat64())
	errs := s.p.errorRate * math.Exp(0.25*s.rng.NormFloat64())
	if failing {
		switch mode {
		case ModeLatency:
			lat *= 5 + s.rng.Float64()
		case ModeErrors:
			errs = 0.12 + 0.04*s.rng.Float64()
		case ModeMeltdown:
			errs = 0.35 + 0.15*s.rng.Float64()
			lat *= 8 + 2*s.rng.Float64()
			reqs *= 0.1 + 0.05*s.rng.Float64()
		case ModeSpike:
			reqs *= 3
		case ModeCollapse:
			reqs *= 0.1
		case ModeBetter:
			lat *= 0.5
			errs *= 0.2
		}
	}
	return metrics{
		ErrorRate:    math.Round(min(max(errs, 0), 1)*1e5) / 1e5,
		LatencyP95:   math.Round(max(lat, 1)*10) / 10,
		RequestCount: math.Round(max(reqs, 0)),
	}
}
