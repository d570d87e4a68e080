package tlsconf

import (
	"crypto"
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
// which leaves a P for the loops. The wait is a signature's length per
// handshake ahead in the queue, which holds at most the handshakes in
// flight (each loop's bound). The wait does not see a handshake's
// deadline: one whose session timed out or ended while it waited still
// takes its turn and signs, and only then finds its socket closed.
var signing = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1))

// boundedKey is a certificate's private key whose signatures take a turn
// in signing. It is a crypto.Signer, which crypto/tls accepts in
// tls.Certificate.PrivateKey.
type boundedKey struct {
	crypto.Signer
}

func (k *boundedKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	signing <- struct{}{}
	defer func() { <-signing }()
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
	signing <- struct{}{}
	defer func() { <-signing }()
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
		return &boundedDecrypter{boundedKey{s}, d}
	}
	return &boundedKey{s}
}
