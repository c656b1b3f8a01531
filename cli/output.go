package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns. Cells are sanitised so that a tab or a
// newline in a job name cannot break the layout; an empty cell shows "-".
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		io.WriteString(t.tw, cell(c))
	}
	io.WriteString(t.tw, "\n")
}

// flush writes the table out; the first write error of any row shows here.
func (t *table) flush() error { return t.tw.Flush() }

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// unixNano converts a wire timestamp; 0 is the zero time.
func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// age is how long before now t was, in the largest unit that keeps it short:
// 45s, 12m, 5h, 3d. The zero time is "".
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

// pairs formats a map as sorted k=v,k=v.
func pairs(m map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + m[k])
	}
	return b.String()
}

// nonNil returns m, or an empty map so that JSON shows {} rather than null.
func nonNil[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

// mib formats a size in MiB: 512Mi, 15.5Gi.
func mib(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%dMi", n)
	}
	return fmt.Sprintf("%.1fGi", float64(n)/1024)
}

// detail writes "Field: value" lines, aligned, for the get commands.
type detail struct {
	tw  *tabwriter.Writer
	now time.Time
}

func newDetail(w io.Writer, now time.Time) *detail {
	return &detail{tw: tabwriter.NewWriter(w, 0, 8, 1, ' ', 0), now: now}
}

// line writes one field; an empty value shows as "-".
func (d *detail) line(k, v string) { fmt.Fprintf(d.tw, "%s:\t%s\n", k, cell(v)) }

// when shows an instant with how long ago it was; "" for none.
func (d *detail) when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339) + " (" + age(d.now, t) + " ago)"
}

func (d *detail) flush() error { return d.tw.Flush() }
