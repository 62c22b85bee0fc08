package incident

import "time"

// Event is one change of an incident as the world outside the engine sees it: the timeline
// entry with the incident's state right after it. The engine publishes one per entry, and
// notifiers and other systems consume them. EventID is derived from the change itself, so a
// replay of the same stream produces the same ids and receivers can deduplicate on it.
type Event struct {
	EventID         string     `json:"event_id"`
	IncidentID      string     `json:"incident_id"`
	Service         string     `json:"service"`
	Event           Kind       `json:"event"`
	OccurredAt      time.Time  `json:"occurred_at"`
	Severity        string     `json:"severity"`
	Status          string     `json:"status"`
	OccurrenceCount int        `json:"occurrence_count"`
	FirstSeen       time.Time  `json:"first_seen"`
	LastSeen        time.Time  `json:"last_seen"`
	ResolvedAt      *time.Time `json:"resolved_at,omitempty"`
	EpisodeStart    time.Time  `json:"episode_start"`
	PeakExcess      float64    `json:"peak_excess"`
	Reopens         int        `json:"reopen_count"`
	// AckedBy and AckedAt name the operator who acknowledged the current episode, if one did.
	AckedBy string     `json:"acknowledged_by,omitempty"`
	AckedAt *time.Time `json:"acknowledged_at,omitempty"`
	Details Details    `json:"details"`
}

// Facts returns the snapshot of the incident this event was emitted with, for the severity
// policy.
func (e Event) Facts() Facts {
	return Facts{
		Active:      e.LastSeen.Sub(e.EpisodeStart),
		Occurrences: e.OccurrenceCount,
		Reopens:     e.Reopens,
		PeakExcess:  e.PeakExcess,
	}
}

// Timeline kinds written by the notify stage. They record who was told about a change; they
// change nothing about the incident.
const (
	KindNotified           Kind = "notified"
	KindNotificationFailed Kind = "notification_failed"
)

// Entry returns the timeline entry that records the delivery, dated at the change it told of.
func (d Delivery) Entry() Entry {
	kind := KindNotified
	if d.Err != "" {
		kind = KindNotificationFailed
	}
	at := d.DeliveredAt.UTC()
	return Entry{Kind: kind, At: d.Event.OccurredAt, Details: Details{
		Receiver: d.Receiver, Event: d.Event.Event, EventID: d.Event.EventID, Attempts: d.Attempts, Error: d.Err, DeliveredAt: &at,
	}}
}

// Delivery is the outcome of notifying one receiver of one event.
type Delivery struct {
	Receiver string
	Event    Event
	Attempts int
	// Err is empty when the receiver took the notification.
	Err string
	// DeliveredAt is when the last attempt ended (wall-clock time).
	DeliveredAt time.Time
}
