// Package peek reads nothing: given a client's first bytes, it says what
// they are. It stands between admit and route on pier's data path: the
// relay reads a session's first bytes into a bounded buffer (at most Max)
// and the proxy's decision asks Scan whether they hold a PROXY protocol
// header (and where it ends) and a TLS ClientHello (its server name and
// ALPN protocols), or whether more bytes are needed. The relay also uses
// AppendHeader to write a PROXY header to an upstream, and the health
// checks AppendLocal.
//
//	r, more := peek.Scan(buf, peek.Want{Proxy: peek.V2, Hello: true}, trusted, eof)
//	if more { /* read again, within the deadline */ }
//	if r.HelloStatus == peek.Complete { route by r.Hello.ServerName }
//	pass buf[r.ProxyLen:] on to the upstream
//
// The PROXY header codec is github.com/pires/go-proxyproto's; peek frames
// the header itself (the library reads from a blocking reader) and hands
// the library exactly one complete header. The ClientHello parser is
// pier's own: the standard library exports none.
//
// The parsers are fuzzed (FuzzClientHello differentially against
// crypto/tls's server, FuzzClientHelloSplit, FuzzProxyHeader against
// go-proxyproto's reader, FuzzScan); `go test` runs their seeds. When
// fuzzing, pass -fuzzminimizetime 5s: minimizing a 2 KB hello through
// crypto/tls for every step otherwise stalls the fuzzer for minutes.
//
// peek imports no package of pier's.
package peek
