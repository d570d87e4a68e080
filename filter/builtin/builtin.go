// Package builtin registers pier's built-in filters: dump, pcap, rewrite,
// and the faults latency, bandwidth, slicer, reset, timeout, limit and
// slow_close. Import it for its side effect, as the pier command does:
//
//	import _ "github.com/pierproxy/pier/filter/builtin"
package builtin

import (
	_ "github.com/pierproxy/pier/filter/dump"
	_ "github.com/pierproxy/pier/filter/fault"
	_ "github.com/pierproxy/pier/filter/pcap"
	_ "github.com/pierproxy/pier/filter/rewrite"
)
