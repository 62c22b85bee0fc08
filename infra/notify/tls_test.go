package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incident-engine/engine/domain/incident"
)

// TestReceiversSpeakTLS delivers to a receiver that serves https with its own certificate and
// asks for a client certificate (mutual TLS), through tls_config: its certificate as the CA to
// trust, the engine's certificate and key, the server name to verify. Without them, or with
// the wrong name, the delivery fails; unusable files fail when the configuration is loaded.
func TestReceiversSpeakTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clientCert, clientKey := writeClientCertificate(t, dir, "engine")

	var heard atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == "engine" {
			heard.Add(1)
		}
	}))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, clientCert))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	serverCA := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	mutual := &TLSConfig{CAFile: serverCA, CertFile: clientCert, KeyFile: clientKey}
	cases := []struct {
		name      string
		tls       *TLSConfig
		delivered bool
		why       string
	}{
		{"mutual", mutual, true, "the receiver's certificate trusted and the engine's presented"},
		{"server-name", &TLSConfig{CAFile: serverCA, CertFile: clientCert, KeyFile: clientKey, ServerName: "example.com"}, true, "the test server's certificate names example.com"},
		{"insecure", &TLSConfig{InsecureSkipVerify: true, CertFile: clientCert, KeyFile: clientKey}, true, "no verification, as asked"},
		{"system-roots", nil, false, "the receiver's certificate is signed by nobody the system trusts"},
		{"no-client-certificate", &TLSConfig{CAFile: serverCA}, false, "the receiver asks for a client certificate"},
		{"wrong-name", &TLSConfig{CAFile: serverCA, CertFile: clientCert, KeyFile: clientKey, ServerName: "other.test"}, false, "the certificate does not name other.test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, err := New(Config{MaxAttempts: 1, Receivers: []Receiver{{Name: "r", Kind: KindWebhook, URL: srv.URL, HTTP: HTTPConfig{TLS: tc.tls}}}})
			if err != nil {
				t.Fatal(err)
			}
			before := heard.Load()
			_, err = n.Deliver(context.Background(), "r", event(incident.KindOpened, "low", "open"))
			if got := err == nil && heard.Load() == before+1; got != tc.delivered {
				t.Errorf("delivered %v (err %v), want %v (%s)", got, err, tc.delivered, tc.why)
			}
		})
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		tls  TLSConfig
		want string
	}{
		{TLSConfig{CAFile: filepath.Join(dir, "missing.pem")}, "ca_file"},
		{TLSConfig{CAFile: notPEM}, "holds no PEM certificate"},
		{TLSConfig{CertFile: clientCert}, "key_file"},
		{TLSConfig{CertFile: clientCert, KeyFile: notPEM}, "cert_file"},
	} {
		_, err := New(Config{Receivers: []Receiver{{Name: "r", Kind: KindWebhook, URL: srv.URL, HTTP: HTTPConfig{TLS: &bad.tls}}}})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("tls_config %+v: err %v, want one naming %q", bad.tls, err, bad.want)
		}
	}
}

// writeClientCertificate writes a self-signed client certificate for name and its key, PEM,
// and returns their paths.
func writeClientCertificate(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
