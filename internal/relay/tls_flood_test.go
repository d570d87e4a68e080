package relay

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tls13Writer seals TLS 1.3 records with a client's application traffic
// secret, as the client would, so that the test can send what crypto/tls
// offers no API for (KeyUpdate requests).
type tls13Writer struct {
	newHash func() hash.Hash
	keyLen  int
	secret  []byte
	aead    cipher.AEAD
	iv      []byte
	seq     uint64
}

func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := []byte{byte(n >> 8), byte(n), byte(len(full))}
	info = append(info, full...)
	info = append(info, 0) // empty context
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic(err)
	}
	return out
}

func (w *tls13Writer) setSecret(secret []byte) {
	w.secret = secret
	block, err := aes.NewCipher(expandLabel(w.newHash, secret, "key", w.keyLen))
	if err != nil {
		panic(err)
	}
	w.aead, _ = cipher.NewGCM(block)
	w.iv = expandLabel(w.newHash, secret, "iv", 12)
	w.seq = 0
}

func (w *tls13Writer) seal(dst []byte, typ byte, payload []byte) []byte {
	inner := append(append([]byte(nil), payload...), typ)
	hdr := []byte{23, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+w.aead.Overhead()))
	nonce := append([]byte(nil), w.iv...)
	for i := 0; i < 8; i++ {
		nonce[4+i] ^= byte(w.seq >> (56 - 8*i))
	}
	w.seq++
	dst = append(dst, hdr...)
	return w.aead.Seal(dst, nonce, inner, hdr)
}

// keyUpdate seals a KeyUpdate(update_requested) and moves to the next keys.
func (w *tls13Writer) keyUpdate(dst []byte) []byte {
	dst = w.seal(dst, 22, []byte{24, 0, 0, 1, 1})
	w.setSecret(expandLabel(w.newHash, w.secret, "traffic upd", w.newHash().Size()))
	return dst
}

// A terminated client that never reads (its window closed) but keeps
// sending TLS 1.3 KeyUpdate requests, with a byte of application data
// every few of them (so crypto/tls's limit on non-advancing records never
// trips), makes crypto/tls answer each request with a KeyUpdate of its
// own from Read. Those answers wait in the client side's pending; past
// maxReadPending pier stops reading the client until they are out, so
// the client meets backpressure and pier's memory stays bounded. Without
// the bound, pending grew as fast as the client sent.
func TestTLSKeyUpdateFloodStaysBounded(t *testing.T) {
	pki := newTestPKI(t)
	target, conns := tlsUpstream(t, nil)
	rig := newHookedTLSRig(t, target, Params{TLSServer: pki.server(), IdleTimeout: time.Minute}, func(fd int) {
		// A small send buffer, so that the kernel absorbs little of the
		// answers and the test stays short; the growth is the same with 4 MB.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10)
	})

	raw, err := net.Dial("tcp", rig.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	var keylog bytes.Buffer
	cfg := pki.client("pier.test")
	cfg.MinVersion = tls.VersionTLS13
	cfg.KeyLogWriter = &keylog
	tc := tls.Client(raw, cfg)
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	w := &tls13Writer{}
	switch cs := tc.ConnectionState().CipherSuite; cs {
	case tls.TLS_AES_128_GCM_SHA256:
		w.newHash, w.keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		w.newHash, w.keyLen = sha512.New384, 32
	default:
		t.Skipf("cipher suite %s: the test seals AES-GCM only", tls.CipherSuiteName(cs))
	}
	var secret []byte
	for _, line := range strings.Split(keylog.String(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "CLIENT_TRAFFIC_SECRET_0" {
			secret, _ = hex.DecodeString(f[2])
		}
	}
	if secret == nil {
		t.Fatal("no CLIENT_TRAFFIC_SECRET_0 in the key log")
	}
	w.setSecret(secret)

	up := accepted(t, conns)
	go io.Copy(io.Discard, up) // the upstream takes everything

	// The client floods and never reads. A write that blocks means pier
	// stopped reading it: backpressure, which is what should happen.
	const flood = 1 << 20 // past the bound 4 times over, yet quick to seal under -race
	sent := make(chan int, 1)
	go func() {
		total := 0
		for total < flood {
			var batch []byte
			for range 64 {
				for range 8 {
					batch = w.keyUpdate(batch)
				}
				batch = w.seal(batch, 23, []byte{'x'})
			}
			raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
			n, err := raw.Write(batch)
			total += n
			if err != nil {
				break
			}
		}
		sent <- total
	}()

	pendingNow := func() int {
		got := make(chan int, 1)
		rig.l.Do(func() {
			most := 0
			for _, c := range rig.l.slots {
				if c != nil && c.client.tls != nil {
					most = max(most, len(c.client.tls.raw.pending))
				}
			}
			got <- most
		})
		return <-got
	}
	const bound = 256 << 10 // a few records and the kernel's share would be far less
	most := 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case n := <-sent:
			// pier's receive queue may still hold much of the flood: let
			// it read on until pending stops growing.
			for prev := -1; most != prev; {
				prev = most
				time.Sleep(200 * time.Millisecond)
				most = max(most, pendingNow())
			}
			t.Logf("the client sent %d bytes of KeyUpdates; pending peaked at %d", n, most)
			if most > bound {
				t.Fatalf("the client side's pending ciphertext grew to %d bytes (bound %d): KeyUpdate answers pile up while pier keeps reading a client that never reads", most, bound)
			}
			select {
			case rec := <-rig.ended:
				t.Logf("session ended: %v (%v)", rec.Reason, rec.Err)
			default:
				t.Logf("session live")
			}
			return
		case <-time.After(20 * time.Millisecond):
			most = max(most, pendingNow())
		}
	}
	t.Fatalf("the flood did not end within 60s (pending peaked at %d)", most)
}
