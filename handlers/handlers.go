// Package handlers holds the pipeline's stages, one Watermill handler per file: decode, score,
// correlate (which also keeps each sample for the dashboard's charts), escalate, resolve,
// persist (the relay of committed incident events from the outbox to Kafka), notify and
// remediate. Each stage turns one input message into its output messages or state change;
// router/router.go decides which topic feeds which stage and where its output goes.
//
// Handlers are idempotent: a redelivered message changes nothing twice. Stages that change
// incident state do it in one transaction with the events they emit (the outbox). Errors that
// can never succeed on retry (bad input) are marked Permanent so the router sends the message
// to the dead-letter topic at once; every other error is retried. The package does not choose
// topics, retry policies or transports.
//
// The operator API's actions (acknowledge, resolve, reopen, silences) are not a stage: they
// live with the API (infra/api.Actions) and change incidents through the same store contract
// (IncidentStore, OperatorTx) and SaveAndPublish, in the same kind of transaction.
package handlers

import (
	"errors"
	"fmt"

	"github.com/incident-engine/engine/domain/sample"
)

// ErrPermanent marks errors that no retry can fix: the message goes to the dead-letter topic.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// OutboxTopic names a topic carried by the PostgreSQL outbox, which the stages that change
// incidents publish to inside their transactions. It is a type of its own so that a Kafka
// topic cannot be passed for it; router/router.go binds every stage to its topics.
type OutboxTopic string

// MetadataService is the message metadata key that holds the service name (the domain's
// sample.ServiceKey, the one definition). The Kafka marshaler uses it as the partition key,
// so each service's messages stay in order.
const MetadataService = sample.ServiceKey
