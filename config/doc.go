// Package config loads and validates pier's YAML configuration file.
//
// It stands at the edge of the system. The command line (package command)
// loads a file with Load, or builds the same Config from flags with
// FromCommandLine; the application layer (internal/app) compiles it into
// the immutable route table the data path reads, and swaps that table in.
// config imports only package filter, to check a filter's options.
// A file is validated whole before anything uses it, so a bad file never
// replaces a good running configuration: on SIGHUP the errors are logged
// and the old table stays in force.
//
//	cfg, err := config.Load("/etc/pier/pier.yaml")
//	var errs config.Errors
//	if errors.As(err, &errs) {
//		for _, e := range errs {
//			fmt.Fprintln(os.Stderr, e) // pier.yaml:7:19: idle_timeout: "soon" is not a duration (like 300ms, 5s, 1m30s, 2h)
//		}
//		os.Exit(2)
//	}
//	if err != nil { // the file could not be read
//		...
//	}
//	p, err := pier.Start(cfg, pier.Options{Log: log})
//
// 'pier forward' takes no path of its own: FromCommandLine turns its flags
// and arguments into the YAML nodes a file with the same values would
// hold and walks them with the same parser, so a flag is checked,
// defaulted and worded as the file's field is, each error naming the flag
// or argument where a file's names line:col:
//
//	flag -idle-timeout: "10" has no unit: write it like 10s or 10ms
//	argument 1: "9090": missing host: for every address on port 9090, write ":9090"
//
// A Config built in code (by a program that embeds pier: package pier)
// goes the same way through Check, each error naming its field
// (route "db": retries: ...).
//
// A Config returned without error is complete: defaults are filled in,
// there is at least one route (none only beside toxiproxy:, whose API
// makes them), every route has a name, at least one listen address and
// at least one upstream, and no two listen addresses would collide at
// bind time, the admin and Toxiproxy servers' included (a tcp and a udp
// route's never do: protocol: udp routes forward datagrams, and refuse
// what only a stream has, see checkProtocol). Routes with a
// match may share an address they write alike: then at most one is the
// default, no two fit a client equally, and they agree on PROXY and peek
// settings (see checkShared), so the data path never meets a tie.
//
// The way back is Marshal (and MarshalJSON): the configuration as a file
// that Parse reads to the same Config, written from the same node tree
// Check walks. ParseFilters reads a filter list on its own, as a route's
// filters: holds it, for the admin API's run-time edits.
//
// The file is decoded into a YAML node tree and walked by hand, not
// decoded into structs: that is what lets unknown fields, duplicate keys,
// wrong types and semantic errors all carry the line and column of the
// node at fault, and lets every error in the file be reported, not just the
// first. (yaml's own struct decoding stops at the first duplicate key,
// gives lines without columns, and does not apply KnownFields inside a
// custom UnmarshalYAML.)
//
// The schema lives in tables, one per mapping: configFields, routeFields,
// upstreamFields, resolverFields, healthCheckFields, passiveCheckFields,
// adminFields, toxiproxyFields, and the edge's matchFields,
// proxyProtocolFields, limitsFields, rateFields and perClientFields. A new field is a struct field and one line in its
// table; a rule across fields (address or srv, a health check's timeout
// within its interval) follows decodeMap in the mapping's parse function.
package config
