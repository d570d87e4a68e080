package asynclog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// accessRecord is an access log record as the proxy makes one (the fields
// of session.Record.Attrs).
func accessRecord() slog.Record {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, AccessMessage, 0)
	r.AddAttrs(
		slog.Uint64("id", 123456),
		slog.String("route", "postgres"),
		slog.String("client", netip.MustParseAddrPort("10.1.2.3:51234").String()),
		slog.String("upstream", "db-1.internal:5432"),
		slog.String("dialed", "10.9.8.7:5432"),
		slog.Int64("bytes_to_upstream", 18234),
		slog.Int64("bytes_to_client", 1882734),
		slog.Duration("duration", 1234567890*time.Nanosecond),
		slog.String("reason", "done"),
	)
	return r
}

// seconds is the JSON schema's ReplaceAttr (command/logging.go has the
// real one): a duration as seconds.
func seconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

// BenchmarkHandle measures what an access log line costs the relay loop
// that logs it (ns/op and allocs/op of Handle on the caller).
func BenchmarkHandle(b *testing.B) {
	for _, schema := range []struct {
		name string
		opts *slog.HandlerOptions
	}{{"nanoseconds", nil}, {"seconds", &slog.HandlerOptions{ReplaceAttr: seconds}}} {
		b.Run("json-discard/"+schema.name, func(b *testing.B) {
			h := slog.NewJSONHandler(io.Discard, schema.opts)
			r := accessRecord()
			b.ReportAllocs()
			for b.Loop() {
				h.Handle(context.Background(), r)
			}
		})
		for _, rec := range []struct {
			name string
			r    slog.Record
		}{{"plain", accessRecord()}, {"formatted-on-caller", withError(accessRecord())}} {
			b.Run("asynclog/"+rec.name+"/"+schema.name, func(b *testing.B) {
				h := New(io.Discard, func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, schema.opts) }, Options{})
				defer h.Close(context.Background())
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if i%1024 == 0 { // measure Handle, not drops: keep the queue from filling
						b.StopTimer()
						h.Flush(context.Background())
						b.StartTimer()
					}
					h.Handle(context.Background(), rec.r)
				}
				b.StopTimer()
				access, _ := h.Dropped()
				b.ReportMetric(float64(access)/float64(b.N), "dropped/op")
			})
		}
	}
}

// withError adds a value that is not plain, so Handle formats the record
// on the caller.
func withError(r slog.Record) slog.Record {
	r.AddAttrs(slog.Any("error", errors.New("connection refused")))
	return r
}
