// Package interop holds pier's tests against the real peers of its PROXY
// protocol support: HAProxy in front of pier (send-proxy-v2 with TLVs,
// its health checks arriving as LOCAL), pier in front of HAProxy
// (accept-proxy) and nginx's stream module on either side (proxy_protocol
// on a listen, and proxy_protocol on toward pier).
//
// The tests start haproxy and nginx from PATH (and /usr/sbin) with
// configurations written to the test's temporary directory, on ports
// picked free on 127.0.0.1, wait for them by polling a connect with a
// deadline, and stop them by their pid (SIGTERM, a bounded wait, then
// SIGKILL). Without the binaries the tests skip, unless
// PIER_REQUIRE_HAPROXY=1 or PIER_REQUIRE_NGINX=1 (as .ci/run sets), when
// they fail.
//
// TLS (tls_test.go) is tested against openssl s_client, curl and nginx
// with the real pier process: the test binary runs itself as pier
// (command.Main, when PIER_INTEROP_PIER_MAIN=1), and the tests read its
// "listening" and "session" log lines. pier terminating TLS for s_client
// and curl (ALPN, versions, resumption, client certificates, certificates
// by SNI, a certificate file replaced while serving, half-close with
// close_notify), and originating it to nginx and to Go servers that
// require its client certificate. Without openssl these skip, unless
// PIER_REQUIRE_OPENSSL=1 (as .ci/run sets).
//
// UDP (udp_test.go) is tested with real clients through the real pier
// process: dig against a pool of two dnsmasq (no config file, no pid
// file, each answering example.test with its own address) on a udp route
// with responses: 1 and a health check that sends a DNS query, one of
// them killed by its pid while queries go on; and iperf3 -u, whose TCP
// control connection and UDP datagrams take a tcp and a udp route on one
// address, at 20 Mbit/s with no datagram lost. Without dig, dnsmasq or
// iperf3 these skip, unless PIER_REQUIRE_DIG=1, PIER_REQUIRE_DNSMASQ=1 or
// PIER_REQUIRE_IPERF3=1 (as .ci/run sets).
//
// The package has no code of its own: only tests.
package interop
