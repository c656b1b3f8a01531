package wfq

import (
	"math"
	"testing"
)

func TestPickerSharesByWeight(t *testing.T) {
	var p Picker
	weights := map[string]float64{"a": 1, "b": 2, "c": 7}
	for name, w := range weights {
		p.Add(name, w, 0)
	}
	served := map[string]float64{}
	const n = 10000
	for range n {
		tenant, ok := p.Next()
		if !ok {
			t.Fatal("no tenant eligible")
		}
		served[tenant]++
		p.Charge(tenant, 1)
	}
	for name, w := range weights {
		want := n * w / 10
		if math.Abs(served[name]-want) > want*0.01 {
			t.Errorf("tenant %s served %.0f, want %.0f ±1%%", name, served[name], want)
		}
	}
}

func TestPickerStartTagAndRemove(t *testing.T) {
	var p Picker
	p.Add("busy", 1, 10)
	p.Add("idle", 1, 0)
	if got, _ := p.Next(); got != "idle" {
		t.Fatalf("Next = %q, want the less-served tenant idle", got)
	}
	p.Remove("idle")
	if got, _ := p.Next(); got != "busy" {
		t.Fatalf("Next after Remove = %q, want busy", got)
	}
	p.Remove("busy")
	if _, ok := p.Next(); ok || p.Len() != 0 {
		t.Fatal("Next on an empty picker reported a tenant")
	}
	p.Charge("gone", 1) // no-op, no panic
}
