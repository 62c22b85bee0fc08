package handlers

import (
	"github.com/ThreeDotsLabs/watermill/message"
)

// PersistHandler is the persist stage, the outbox's relay. correlate, escalate and resolve
// commit each incident change (row, timeline entry and event) in one PostgreSQL transaction,
// writing the event to the outbox table; persist moves those committed events, in order, to
// the durable incident log on Kafka, keyed by service, where notifiers and other systems read
// them. Delivery is at least once; the event id (stable across replays) lets receivers
// deduplicate.
type PersistHandler struct{}

// NewPersistHandler returns the persist stage.
func NewPersistHandler() *PersistHandler { return &PersistHandler{} }

// Handle passes one committed event on, with its id and service key.
func (PersistHandler) Handle(msg *message.Message) ([]*message.Message, error) {
	if _, err := decodeJSON[IncidentEvent](msg.Payload, "incident event"); err != nil {
		return nil, err
	}
	out := message.NewMessage(msg.UUID, msg.Payload)
	out.Metadata.Set(MetadataService, msg.Metadata.Get(MetadataService))
	return []*message.Message{out}, nil
}
