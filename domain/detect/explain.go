package detect

import "fmt"

// Explanation selects how Detector.Explain attributes an anomaly to the metrics. The zero value
// is ExplainDeviation.
type Explanation int

const (
	// ExplainDeviation gives each metric a share that follows how surprising its deviation
	// from its normal is (beyond what one sample in ten shows), so a metric inside its usual
	// range gets next to nothing, which only ranks it; an odd combination of usual values
	// falls back to ExplainIsolation.
	ExplainDeviation Explanation = iota
	// ExplainIsolation follows the forest's own extended decision (forest.Attribute): the
	// probability with which a sample is cut off because one metric lies beyond the training
	// data goes to that metric; the rest is shared along the isolation path as in
	// ExplainPath.
	ExplainIsolation
	// ExplainPath credits every split on a sample's isolation paths, shorter paths more
	// (forest.PathFeatures). It ignores how far outside the training data a value lies.
	ExplainPath
)

// String returns the name ParseExplanation accepts.
func (e Explanation) String() string {
	switch e {
	case ExplainDeviation:
		return "deviation"
	case ExplainIsolation:
		return "isolation"
	case ExplainPath:
		return "path"
	}
	return fmt.Sprintf("Explanation(%d)", int(e))
}

// ParseExplanation returns the explanation method named s ("deviation", "isolation" or
// "path"); the empty string is the default, ExplainDeviation.
func ParseExplanation(s string) (Explanation, error) {
	switch s {
	case "", "deviation":
		return ExplainDeviation, nil
	case "isolation":
		return ExplainIsolation, nil
	case "path":
		return ExplainPath, nil
	}
	return 0, fmt.Errorf("unknown explanation %q: want deviation, isolation or path", s)
}
