// Package domain is the pure core of the incident engine: the rules for samples, anomaly
// detection and the incident lifecycle, written against the standard library only.
//
// Its sub-packages take time and randomness as inputs (the metric's own timestamp and a seeded
// source), never read the clock, never log and never touch a broker or a database. Adapters in
// infra and stages in handlers depend on it; it depends on nothing of theirs. Purity is checked
// by TestDomainImportsStandardLibraryOnly.
package domain
