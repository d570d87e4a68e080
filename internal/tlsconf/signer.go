package tlsconf

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"runtime"
)

// A server's private-key operations are the CPU-heavy part of a full
// handshake (an RSA-2048 signature takes Go about 1.3 ms, the rest of the
// handshake a tenth of that). Handshakes run on goroutines of their own,
// beside the relay loops, which hold a thread each and need a P (Go's
// processor) the moment epoll wakes them: with every P signing, a loop
// waits for the scheduler to preempt one, up to milliseconds, and every
// session on it with it. So the signatures of all of a process's servers
// take turns: at most one fewer at a time than GOMAXPROCS (at least one),
// which leaves a P for the loops. A handshake run with a context (the
// relay's, which ends at its timeout or with its session) waits for its
// turn only while the context lives (forHandshake): one that gave up
// frees its place in the queue instead of signing for nobody.
var signing = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))

// take waits for a turn in signing while ctx lives; nil ctx: for ever.
func take(ctx context.Context) error {
	if ctx == nil {
		signing <- struct{}{}
		return nil
	}
	select {
	case signing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tlsconf: gave up waiting for a turn to sign: %w", context.Cause(ctx))
	}
}

func done() { <-signing }

// boundedKey is a certificate's private key whose signatures take a turn
// in signing. It is a crypto.Signer, which crypto/tls accepts in
// tls.Certificate.PrivateKey.
type boundedKey struct {
	crypto.Signer
	ctx context.Context // the handshake's (forHandshake); nil: the certificate's own key
}

func (k *boundedKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := take(k.ctx); err != nil {
		return nil, err
	}
	defer done()
	return k.Signer.Sign(rand, digest, opts)
}

// boundedDecrypter is a boundedKey that decrypts too (an RSA key, for TLS
// 1.2's RSA key exchange), also in turn. A key that cannot decrypt must
// not look like a crypto.Decrypter: crypto/tls would offer the RSA key
// exchange with it.
type boundedDecrypter struct {
	boundedKey
	d crypto.Decrypter
}

func (k *boundedDecrypter) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if err := take(k.ctx); err != nil {
		return nil, err
	}
	defer done()
	return k.d.Decrypt(rand, msg, opts)
}

// bounded wraps a certificate's private key so that its operations take
// turns in signing; a key that is no crypto.Signer is left alone.
func bounded(key crypto.PrivateKey) crypto.PrivateKey {
	s, ok := key.(crypto.Signer)
	if !ok {
		return key
	}
	if d, ok := key.(crypto.Decrypter); ok {
		return &boundedDecrypter{boundedKey{Signer: s}, d}
	}
	return &boundedKey{Signer: s}
}

// forHandshake returns cert for one handshake whose context is ctx: a
// copy whose key waits for its turn only while ctx lives. cert itself
// when ctx can never end (a handshake run without one).
func forHandshake(cert *tls.Certificate, ctx context.Context) *tls.Certificate {
	if ctx == nil || ctx.Done() == nil {
		return cert
	}
	var key crypto.PrivateKey
	switch k := cert.PrivateKey.(type) {
	case *boundedDecrypter:
		key = &boundedDecrypter{boundedKey{Signer: k.Signer, ctx: ctx}, k.d}
	case *boundedKey:
		key = &boundedKey{Signer: k.Signer, ctx: ctx}
	default:
		return cert
	}
	c := *cert
	c.PrivateKey = key
	return &c
}
