package wamp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"reagent/src/config"
)

func TestLegacyEndpointMatch(t *testing.T) {
	cases := map[string]bool{
		"wss://devices.ironflock.com:8080":          true,
		"wss://devices.reswarm.io:8080/ws":          true,
		"ws://devices-eu.record-evolution.com:8080": true,
		"wss://cbw.ironflock.com/ws-re-dev":         false,
		"ws://127.0.0.1:8080/ws-re-dev":             false,
		"wss://devices.ironflock.com:443":           false,
	}
	for url, want := range cases {
		if got := legacyEndpoint.MatchString(url); got != want {
			t.Errorf("%s: legacy = %v, want %v", url, got, want)
		}
	}
}

// The legacy path presents the .flock's client certificate and keeps
// verifying the server.
func TestLegacyTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	fl := &config.Flock{DeviceEndpointURL: "wss://devices.ironflock.com:8080",
		Authentication: &config.Authentication{Certificate: certPEM, Key: config.Secret(keyPEM)}}
	tc, err := legacyTLS(fl)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 1 || tc.InsecureSkipVerify {
		t.Fatalf("tls config: %d certs, skip verify %v", len(tc.Certificates), tc.InsecureSkipVerify)
	}
	for name, f := range map[string]*config.Flock{
		"no authentication": {DeviceEndpointURL: fl.DeviceEndpointURL},
		"bad key": {DeviceEndpointURL: fl.DeviceEndpointURL,
			Authentication: &config.Authentication{Certificate: certPEM, Key: "not a key"}},
	} {
		if _, err := legacyTLS(f); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}
