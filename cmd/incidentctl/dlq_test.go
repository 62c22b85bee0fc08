package main

import "testing"

// TestPrintableEscapesWhatProducersWrote checks that the dead-letter table shows a producer's
// bytes without letting them act on the terminal: escape sequences, newlines, tabs, invalid
// UTF-8 and invisible or direction-changing characters come out escaped; the rest as is.
func TestPrintableEscapesWhatProducersWrote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"api":                             "api",
		"\x1b[31mred\x1b[0m":              `\x1b[31mred\x1b[0m`,
		"a\nb\tc":                         `a\nb\tc`,
		"ap\xffi":                         `ap\xffi`,
		"api\u202egnp":                    `api\u202egnp`,
		"a\u200bpi":                       `a\u200bpi`,
		"caf\u00e9 \u2014 d\u00e9j\u00e0": "caf\u00e9 \u2014 d\u00e9j\u00e0",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
