package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testPKI is a CA's PEM file, a client certificate and key signed by it
// (files), and a server TLS configuration with a certificate for
// 127.0.0.1 signed by it that requires client certificates.
type testPKI struct {
	caFile, clientCert, clientKey string
	serverTLS                     *tls.Config
}

// newTestPKI makes a fresh testPKI, its files under t.TempDir().
func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage, ip bool) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pki := testPKI{caFile: write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))}
	sc, sk := leaf(2, x509.ExtKeyUsageServerAuth, true)
	cc, ck := leaf(3, x509.ExtKeyUsageClientAuth, false)
	pki.clientCert, pki.clientKey = write("client.pem", cc), write("client-key.pem", ck)
	pair, err := tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pki.serverTLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	return pki
}

// TestDialTLS: a server that requires TLS with client certificates admits
// Dial with the CA, the client certificate and its key; without the
// client certificate, or without the CA, the connection is refused; a
// certificate without its key is a usage error before connecting.
func TestDialTLS(t *testing.T) {
	pki := newTestPKI(t)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		TLS: true, TLSVerify: true, TLSConfig: pki.serverTLS, TLSTimeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := "tls://" + s.Addr().String()
	b := dialTest(t, RemoteOptions{URLs: []string{url}, TLSCA: pki.caFile, TLSCert: pki.clientCert, TLSKey: pki.clientKey, Declare: true})
	if r, err := b.Replicas(t.Context()); err != nil || r != 1 {
		t.Fatalf("over TLS: %d replicas, %v", r, err)
	}
	if _, err := Dial(t.Context(), RemoteOptions{URLs: []string{url}, TLSCA: pki.caFile}); err == nil {
		t.Fatal("a server that verifies clients admitted one without a certificate")
	}
	if _, err := Dial(t.Context(), RemoteOptions{URLs: []string{url}, TLSCert: pki.clientCert, TLSKey: pki.clientKey}); err == nil {
		t.Fatal("a server certificate from an unknown CA was accepted")
	}
	if _, err := Dial(t.Context(), RemoteOptions{URLs: []string{url}, TLSCert: pki.clientCert}); err == nil {
		t.Fatal("a client certificate without its key: no error")
	}
}
