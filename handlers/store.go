package handlers

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/incident-engine/engine/domain/incident"
	"github.com/incident-engine/engine/domain/sample"
	"github.com/incident-engine/engine/domain/silence"
)

// IncidentStore is what the incident stages need from storage. infra/postgres.Store is the
// real one; tests use an in-memory fake that honours the same contract.
type IncidentStore[T IncidentTx] interface {
	// InTx runs fn in one transaction: everything saved and published through the IncidentTx
	// commits together when fn returns nil, and nothing does otherwise.
	InTx(ctx context.Context, fn func(T) error) error
	// ServicesWithOpenIncidents lists the services that have an open incident.
	ServicesWithOpenIncidents(ctx context.Context) ([]string, error)
}

// IncidentTx is one transaction of an IncidentStore.
type IncidentTx interface {
	// LoadWatch locks and returns a service's correlation state (a fresh one if new).
	LoadWatch(service string) (incident.Watch, error)
	// LockWatches locks the watches of several services at once, so that a transaction
	// correlating a batch of samples waits for the database once; LoadWatch of each still
	// returns its watch. LoadWatch alone locks one.
	LockWatches(services ...string) error
	// SaveWatch stores a service's correlation state and appends its pending service-level
	// timeline entries (w.Changes), which belong to no incident. LoadWatch in the same
	// transaction returns what was saved.
	SaveWatch(w incident.Watch) error
	// LoadIncident locks and returns the incident with id, nil for an empty id, or an error
	// wrapping incident.ErrNotFound for an unknown one.
	LoadIncident(id string) (*incident.Incident, error)
	// SaveIncident stores the incident and appends its pending timeline entries, which it
	// returns and clears.
	SaveIncident(inc *incident.Incident) ([]incident.Entry, error)
	// MarkProcessed records that stage handled message id, false if it already had.
	MarkProcessed(stage, id string) (bool, error)
	// Publish writes messages to an outbox topic within the transaction.
	Publish(topic string, msgs ...*message.Message) error
	// SaveSamples keeps scored samples, with their score, threshold and flag, for the
	// dashboard's charts; a sample already kept (same service and time) stays as it was.
	SaveSamples(batch ...sample.Scored) error
	// ActiveSilences returns the service's silences that cover sample time at. It is one
	// indexed query: correlate asks it for every anomalous sample.
	ActiveSilences(service string, at time.Time) ([]silence.Silence, error)
}

// OperatorTx is what the operator API's actions (infra/api.Actions) need from a transaction,
// besides what the incident stages need.
type OperatorTx interface {
	IncidentTx
	// IncidentService returns the service of incident id without locking anything, or an
	// error wrapping incident.ErrNotFound.
	IncidentService(id string) (string, error)
	// LoadSilence locks and returns the silence with id, or an error wrapping
	// silence.ErrNotFound.
	LoadSilence(id string) (silence.Silence, error)
	// SaveSilence stores a new silence or the new end of an existing one.
	SaveSilence(s silence.Silence) error
}
