package fault_test

import (
	"testing"
	"time"

	"github.com/pierproxy/pier/filter"
)

func TestSlowCloseHoldsOnlyTheEnd(t *testing.T) {
	d, _ := drive(t, mustFault(t, "slow_close", "delay=200ms"), filter.ToClient)
	if err := d.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if string(d.Out) != "abc" || !d.Wake.IsZero() {
		t.Fatalf("out %q, wake %v: want the bytes at once, no wake", d.Out, d.Wake)
	}
	if err := d.Advance(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t1 := d.Now
	if err := d.Write([]byte("de")); err != nil { // a last write with the end
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if d.Finished || string(d.Out) != "abcde" || !d.Wake.Equal(t1.Add(200*time.Millisecond)) {
		t.Fatalf("at the end: finished %v, out %q, wake t1+%v; want not finished, \"abcde\", t1+200ms",
			d.Finished, d.Out, d.Wake.Sub(t1))
	}
	if err := d.Advance(199 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d.Finished {
		t.Fatal("finished before the delay")
	}
	if err := d.Advance(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !d.Finished {
		t.Errorf("not finished at t1+200ms (wake %v)", d.Wake)
	}
}
