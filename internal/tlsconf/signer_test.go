package tlsconf

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSigner records how many of its Signs run at once.
type countingSigner struct {
	crypto.Signer
	now, most atomic.Int32
}

func (c *countingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	n := c.now.Add(1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(time.Millisecond) // a signature's length: others pile up meanwhile
	c.now.Add(-1)
	return []byte("sig"), nil
}

// Private-key operations take turns: however many handshakes sign at
// once, at most cap(signing) signatures run together (GOMAXPROCS-1, at
// least 1), so a relay loop always finds a P.
func TestSignaturesTakeTurns(t *testing.T) {
	c := &countingSigner{}
	k := bounded(c).(crypto.Signer)
	var wg sync.WaitGroup
	for range 4*cap(signing) + 8 {
		wg.Go(func() {
			if _, err := k.Sign(nil, nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if most := int(c.most.Load()); most > cap(signing) || most == 0 {
		t.Errorf("%d signatures ran at once, want at most %d", most, cap(signing))
	}
}

// An RSA key stays a crypto.Decrypter (TLS 1.2's RSA key exchange); an
// ECDSA key must not become one, or crypto/tls would offer that exchange
// with it.
func TestBoundedKeysKeepTheirKind(t *testing.T) {
	if _, ok := bounded(&rsa.PrivateKey{}).(crypto.Decrypter); !ok {
		t.Error("a bounded RSA key is no crypto.Decrypter")
	}
	if _, ok := bounded(&ecdsa.PrivateKey{}).(crypto.Decrypter); ok {
		t.Error("a bounded ECDSA key is a crypto.Decrypter")
	}
	if _, ok := bounded(&ecdsa.PrivateKey{}).(crypto.Signer); !ok {
		t.Error("a bounded ECDSA key is no crypto.Signer")
	}
}

// A key bound to a handshake's context gives up its wait for a turn when
// the context ends (the handshake timed out, or its session ended): it
// does not sign for nobody, and the turn goes to the next in the queue.
func TestGivingUpFreesTheQueue(t *testing.T) {
	for range cap(signing) {
		signing <- struct{}{} // every turn taken
	}
	defer func() {
		for range cap(signing) {
			<-signing
		}
	}()
	c := &countingSigner{}
	cert := forHandshake(&tls.Certificate{PrivateKey: bounded(c)}, context.Background())
	if cert.PrivateKey.(*boundedKey).ctx != nil {
		t.Fatal("a handshake that can never give up was given a context")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cert = forHandshake(&tls.Certificate{PrivateKey: bounded(c)}, ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := cert.PrivateKey.(crypto.Signer).Sign(nil, nil, nil)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("Sign after its handshake gave up: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Sign whose handshake gave up still waits for its turn")
	}
	if c.most.Load() != 0 {
		t.Error("the key signed for a handshake that had given up")
	}
}
