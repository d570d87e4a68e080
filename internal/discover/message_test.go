package discover

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const fuzzID = 0x1234

var fuzzQuestion = dnsmessage.Question{
	Name: dnsmessage.MustNewName("fuzz.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET,
}

// formatReply is parseReply's inverse: the reply r to the query id for q,
// in wire format.
func formatReply(t testing.TB, id uint16, q dnsmessage.Question, r reply) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: r.rcode, Truncated: r.truncated})
	b.EnableCompression()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("formatting %+v: %v", r, err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(q))
	section := func(rs []record) {
		for _, rec := range rs {
			h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(rec.name), Class: dnsmessage.ClassINET, TTL: rec.ttl}
			switch rec.typ {
			case dnsmessage.TypeA:
				must(b.AResource(h, dnsmessage.AResource{A: rec.addr.As4()}))
			case dnsmessage.TypeAAAA:
				must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: rec.addr.As16()}))
			case dnsmessage.TypeCNAME:
				must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(rec.target)}))
			case dnsmessage.TypeSRV:
				must(b.SRVResource(h, dnsmessage.SRVResource{
					Priority: rec.priority, Weight: rec.weight, Port: rec.port, Target: dnsmessage.MustNewName(rec.target),
				}))
			default:
				t.Fatalf("record type %v", rec.typ)
			}
		}
	}
	must(b.StartAnswers())
	section(r.answers)
	must(b.StartAdditionals())
	section(r.extra)
	msg, err := b.Finish()
	must(err)
	return msg
}

func addrRec(name string, ttl uint32, addr string) record {
	typ := dnsmessage.TypeA
	if !netip.MustParseAddr(addr).Is4() {
		typ = dnsmessage.TypeAAAA
	}
	return record{name: name, typ: typ, ttl: ttl, addr: netip.MustParseAddr(addr)}
}

func cnameRec(name string, ttl uint32, target string) record {
	return record{name: name, typ: dnsmessage.TypeCNAME, ttl: ttl, target: target}
}

func srvRec(name string, ttl uint32, prio, weight, port uint16, target string) record {
	return record{name: name, typ: dnsmessage.TypeSRV, ttl: ttl, priority: prio, weight: weight, port: port, target: target}
}

// seedReplies are well-formed replies to fuzzQuestion.
func seedReplies() []reply {
	return []reply{
		{answers: []record{addrRec("fuzz.example.", 60, "192.0.2.1"), addrRec("fuzz.example.", 30, "2001:db8::1")}},
		{answers: []record{cnameRec("fuzz.example.", 60, "b.example."), cnameRec("b.example.", 60, "c.example."), addrRec("c.example.", 10, "192.0.2.3")}},
		{answers: []record{srvRec("fuzz.example.", 60, 1, 2, 3, "t.example.")}, extra: []record{addrRec("t.example.", 5, "192.0.2.4")}},
		{answers: []record{cnameRec("fuzz.example.", 60, "fuzz.example.")}},
		{rcode: dnsmessage.RCodeNameError},
		{truncated: true},
	}
}

// parseReply reads what formatReply writes, record for record.
func TestParseReplyReadsWhatWasSent(t *testing.T) {
	for _, want := range seedReplies() {
		got, err := parseReply(formatReply(t, fuzzID, fuzzQuestion, want), fuzzID, fuzzQuestion)
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parsed\n %+v\nwant %+v", got, want)
		}
	}
}

// A reply that is not the answer to this query, or cannot be read, is
// refused, and the caller (over UDP) keeps waiting for the real one.
func TestParseReplyRejects(t *testing.T) {
	good := formatReply(t, fuzzID, fuzzQuestion, seedReplies()[0])
	other := fuzzQuestion
	other.Name = dnsmessage.MustNewName("FUZZ.example.") // case does not count...
	if _, err := parseReply(good, fuzzID, other); err != nil {
		t.Fatalf("question in other case: %v", err)
	}
	patch := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	otherName := fuzzQuestion
	otherName.Name = dnsmessage.MustNewName("fuzz.example.net.")
	otherType := fuzzQuestion
	otherType.Type = dnsmessage.TypeAAAA
	twoQuestions := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: fuzzID, Response: true})
	twoQuestions.StartQuestions()
	twoQuestions.Question(fuzzQuestion)
	twoQuestions.Question(fuzzQuestion)
	twoQ, _ := twoQuestions.Finish()

	tests := []struct {
		name     string
		msg      []byte
		q        dnsmessage.Question
		mismatch bool
	}{
		{"empty", nil, fuzzQuestion, false},
		{"short header", good[:11], fuzzQuestion, false},
		{"other id", patch(func(b []byte) []byte { binary.BigEndian.PutUint16(b, fuzzID+1); return b }), fuzzQuestion, true},
		{"a query", patch(func(b []byte) []byte { b[2] &^= 0x80; return b }), fuzzQuestion, true},
		{"other question name", good, otherName, true},
		{"other question type", good, otherType, true},
		{"two questions", twoQ, fuzzQuestion, false},
		{"answer cut short", good[:len(good)-3], fuzzQuestion, false},
		{"trailing count without record", patch(func(b []byte) []byte { b[11]++; return b }), fuzzQuestion, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReply(tt.msg, fuzzID, tt.q)
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("err = %v, want ErrBadReply", err)
			}
			if got := errors.Is(err, errMismatch); got != tt.mismatch {
				t.Errorf("mismatch = %v, want %v (%v)", got, tt.mismatch, err)
			}
		})
	}
}

func TestFollow(t *testing.T) {
	loop := []record{cnameRec("x.", 1, "y."), cnameRec("y.", 1, "x.")}
	if _, _, err := follow(loop, "x.", dnsmessage.TypeA); !errors.Is(err, ErrBadReply) {
		t.Errorf("loop: err = %v, want ErrBadReply", err)
	}
	// 8 links are followed; a 9th is too many.
	var chain []record
	for i := range 9 {
		chain = append(chain, cnameRec(string(rune('a'+i))+".", 60, string(rune('a'+i+1))+"."))
	}
	chain = append(chain, addrRec("j.", 60, "192.0.2.1"))
	if _, _, err := follow(chain[1:], "b.", dnsmessage.TypeA); err != nil {
		t.Errorf("8 links: %v", err)
	}
	if _, _, err := follow(chain, "a.", dnsmessage.TypeA); !errors.Is(err, ErrBadReply) {
		t.Errorf("9 links: err = %v, want ErrBadReply", err)
	}
	// Records of other names, or behind no alias, are not this name's.
	recs, ttl, err := follow([]record{addrRec("other.", 60, "192.0.2.9"), addrRec("x.", 7, "192.0.2.1")}, "x.", dnsmessage.TypeA)
	if err != nil || len(recs) != 1 || recs[0].addr != netip.MustParseAddr("192.0.2.1") || ttl != 7*time.Second {
		t.Errorf("follow = %v, %v, %v", recs, ttl, err)
	}
}

// FuzzParseReply feeds parseReply arbitrary bytes as the reply to a query.
// It must not panic; bytes that are not a response with the query's id
// must be refused; and what it accepts must survive a round trip: format
// the parsed reply, parse it again, get the same reply.
func FuzzParseReply(f *testing.F) {
	for _, r := range seedReplies() {
		f.Add(formatReply(f, fuzzID, fuzzQuestion, r))
	}
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x04fuzz\x07example\x00\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := parseReply(msg, fuzzID, fuzzQuestion)
		if len(msg) < 12 || binary.BigEndian.Uint16(msg) != fuzzID || msg[2]&0x80 == 0 {
			if err == nil {
				t.Fatalf("accepted %x: not a response to query %#x", msg, fuzzID)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrBadReply) {
				t.Fatalf("err = %v, want ErrBadReply", err)
			}
			return
		}
		again, err := parseReply(formatReply(t, fuzzID, fuzzQuestion, r), fuzzID, fuzzQuestion)
		if err != nil {
			t.Fatalf("reformatted reply refused: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, r)
		}
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeSRV} {
			recs, _, err := follow(r.answers, "fuzz.example.", typ)
			for _, rec := range recs {
				if err != nil || rec.typ != typ {
					t.Fatalf("follow %v returned %+v with %v", typ, rec, err)
				}
			}
		}
	})
}
