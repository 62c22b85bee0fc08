package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/incident-engine/engine/domain/incident"
)

// Payload builds the body receiver r expects for ev.
func Payload(r Receiver, ev incident.Event, dashboard string) ([]byte, error) {
	var v any
	switch r.Kind {
	case KindSlack:
		v = slackMessage(ev, dashboard)
	case KindPagerDuty:
		v = pagerDutyEvent(r, ev, dashboard)
	case KindWebhook:
		v = alertmanagerMessage(r, ev, dashboard)
	default:
		return nil, fmt.Errorf("receiver %s: unknown kind %q", r.Name, r.Kind)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", r.Kind, err)
	}
	return b, nil
}

// IncidentURL returns the dashboard's page of the incident: the dashboard routes by the URL's
// fragment (#/incidents/<id>), the path always serves the page itself.
func IncidentURL(dashboard, incidentID string) string {
	if dashboard == "" {
		return ""
	}
	return strings.TrimRight(dashboard, "/") + "/#/incidents/" + url.PathEscape(incidentID)
}

// drivers renders an explanation as "latency_p95 68%, error_rate 25%".
func drivers(ev incident.Event) string {
	parts := make([]string, 0, len(ev.Details.Explanation))
	for _, c := range ev.Details.Explanation {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", c.Metric, 100*c.Share))
	}
	return strings.Join(parts, ", ")
}

// headline says what happened in one line.
func headline(ev incident.Event) string {
	switch ev.Event {
	case incident.KindOpened:
		return fmt.Sprintf("Incident opened: %s is behaving abnormally (severity %s)", ev.Service, ev.Severity)
	case incident.KindEscalated:
		return fmt.Sprintf("Incident escalated: %s is now %s (rule %s)", ev.Service, ev.Severity, ev.Details.Rule)
	case incident.KindReopened:
		return fmt.Sprintf("Incident reopened: %s is abnormal again (severity %s)", ev.Service, ev.Severity)
	case incident.KindResolved:
		return fmt.Sprintf("Incident resolved: %s has recovered", ev.Service)
	case incident.KindDataStopped:
		return fmt.Sprintf("Data stopped: %s sends no metrics while its incident is open", ev.Service)
	case incident.KindAcknowledged:
		return fmt.Sprintf("Incident acknowledged: %s (by %s)", ev.Service, ev.Details.By)
	}
	return fmt.Sprintf("Incident %s: %s", ev.Event, ev.Service)
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type   string      `json:"type"`
	Text   *slackText  `json:"text,omitempty"`
	Fields []slackText `json:"fields,omitempty"`
}

type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// Slack's limits (Block Kit): a section's text, a field's text, the message's fallback text.
const (
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackTextMax    = 4000
)

// slackEscape makes s plain text in Slack's markup: &, < and > are its control characters
// (a service named "<!here>" would otherwise ping the whole channel).
func slackEscape(s string) string { return slackEscaper.Replace(s) }

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// clip shortens s to at most n bytes, on a character boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func slackMessage(ev incident.Event, dashboard string) slackPayload {
	title := clip(slackEscape(headline(ev)), slackSectionMax-2)
	field := func(name, value string) slackText {
		return slackText{Type: "mrkdwn", Text: clip("*"+name+"*\n"+slackEscape(value), slackFieldMax)}
	}
	fields := []slackText{
		field("Service", ev.Service),
		field("Severity", ev.Severity),
		field("Status", ev.Status),
		field("Anomalies", fmt.Sprintf("%d since %s", ev.OccurrenceCount, ev.FirstSeen.UTC().Format(time.RFC3339))),
	}
	if d := drivers(ev); d != "" {
		fields = append(fields, field("Driven by", d))
	}
	blocks := []slackBlock{
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: "*" + title + "*"}},
		{Type: "section", Fields: fields},
	}
	text := clip(title, slackTextMax-300)
	if l := IncidentURL(dashboard, ev.IncidentID); l != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: fmt.Sprintf("<%s|Open in the dashboard>", l)}})
		text += " " + l
	}
	return slackPayload{Text: text, Blocks: blocks}
}

// pagerDutySeverity maps the engine's four severities onto PagerDuty's four levels.
func pagerDutySeverity(s string) string {
	switch s {
	case "critical":
		return "critical"
	case "high":
		return "error"
	case "medium":
		return "warning"
	}
	return "info"
}

type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp"`
	Component     string         `json:"component"`
	Group         string         `json:"group"`
	Class         string         `json:"class"`
	CustomDetails map[string]any `json:"custom_details"`
}

type pdLink struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"`
	Links       []pdLink   `json:"links,omitempty"`
}

func pagerDutyEvent(r Receiver, ev incident.Event, dashboard string) pdEvent {
	e := pdEvent{RoutingKey: r.RoutingKey, DedupKey: ev.IncidentID}
	switch ev.Event {
	case incident.KindResolved:
		e.EventAction = "resolve"
		return e
	case incident.KindAcknowledged:
		e.EventAction = "acknowledge"
		return e
	}
	e.EventAction = "trigger"
	e.Payload = &pdPayload{
		Summary: headline(ev), Source: ev.Service, Severity: pagerDutySeverity(ev.Severity),
		Timestamp: ev.OccurredAt.UTC().Format(time.RFC3339), Component: ev.Service, Group: "incident-engine", Class: string(ev.Event),
		CustomDetails: map[string]any{
			"incident_id": ev.IncidentID, "engine_severity": ev.Severity, "occurrence_count": ev.OccurrenceCount,
			"first_seen": ev.FirstSeen.UTC().Format(time.RFC3339), "score": ev.Details.Score, "threshold": ev.Details.Threshold,
			"driven_by": drivers(ev),
		},
	}
	if l := IncidentURL(dashboard, ev.IncidentID); l != "" {
		e.Links = []pdLink{{Href: l, Text: "Incident in the dashboard"}}
	}
	return e
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

// alertmanagerMessage is the Prometheus Alertmanager webhook body (version 4) with one alert
// per incident: firing while open, resolved once resolved, labelled so receivers can group
// and route it like any Alertmanager alert.
func alertmanagerMessage(r Receiver, ev incident.Event, dashboard string) amMessage {
	status := "firing"
	var ends time.Time
	if ev.Status == incident.StatusResolved.String() {
		status = "resolved"
		if ev.ResolvedAt != nil {
			ends = ev.ResolvedAt.UTC()
		}
	}
	// Labels are an alert's identity in Alertmanager: they stay the same for the incident's
	// whole life, so a receiver keyed on them sees one alert that changes, never a "low"
	// alert left firing once it became "high". What changes goes in the annotations.
	labels := map[string]string{
		"alertname": "IncidentEngineAnomaly", "service": ev.Service, "incident_id": ev.IncidentID,
	}
	annotations := map[string]string{
		"summary":             headline(ev),
		"description":         fmt.Sprintf("%d anomalies since %s; last change: %s", ev.OccurrenceCount, ev.FirstSeen.UTC().Format(time.RFC3339), ev.Event),
		"severity":            ev.Severity,
		"notification_reason": string(ev.Event),
	}
	if d := drivers(ev); d != "" {
		annotations["driven_by"] = d
	}
	l := IncidentURL(dashboard, ev.IncidentID)
	return amMessage{
		Version: "4", GroupKey: fmt.Sprintf("{}:{service=%q}", ev.Service), Status: status, Receiver: r.Name,
		GroupLabels:       map[string]string{"service": ev.Service},
		CommonLabels:      labels,
		CommonAnnotations: annotations,
		ExternalURL:       strings.TrimRight(dashboard, "/"),
		Alerts: []amAlert{{
			Status: status, Labels: labels, Annotations: annotations, StartsAt: ev.FirstSeen.UTC(), EndsAt: ends,
			GeneratorURL: l, Fingerprint: fingerprint(ev.IncidentID),
		}},
	}
}
