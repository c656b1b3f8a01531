package scheduler

import (
	"slices"
	"testing"
)

func TestTasksPositions(t *testing.T) {
	// Positions 0–9; 0–2 materialized in order, 5 and 7 on their own.
	tasks := &Tasks{Count: 10, Next: 3, Skip: []int{5, 7}}
	lazy := []int{3, 4, 6, 8, 9}
	if got := slices.Collect(tasks.Positions()); !slices.Equal(got, lazy) {
		t.Fatalf("Positions = %v, want %v", got, lazy)
	}
	for _, tc := range []struct {
		from int
		want []int
	}{
		{9, []int{9, 8, 6, 4, 3}},
		{100, []int{9, 8, 6, 4, 3}},
		{7, []int{6, 4, 3}},
		{5, []int{4, 3}},
		{2, nil},
	} {
		if got := slices.Collect(tasks.PositionsDown(tc.from)); !slices.Equal(got, tc.want) {
			t.Errorf("PositionsDown(%d) = %v, want %v", tc.from, got, tc.want)
		}
	}
	for _, tc := range []struct{ from, to, want int }{
		{0, 9, 5}, {0, 100, 5}, {4, 7, 2}, {5, 5, 0}, {6, 6, 1}, {8, 3, 0}, {0, 2, 0},
	} {
		if got := tasks.LazyIn(tc.from, tc.to); got != tc.want {
			t.Errorf("LazyIn(%d, %d) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
}
