package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes aligned columns. Cells pass through visible so that a tab,
// a newline or an escape sequence in a job name can neither break the
// layout nor act on the terminal; an empty cell shows "-".
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

// cell is s as a table cell or detail value: visible, and "-" if empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return visible(s, "")
}

// visible returns s with what a terminal would not print as itself written
// as a Go escape, so that people see it rather than the terminal act on
// it: C0 controls (\n, \t, \x1b …) except the bytes in keep, DEL, C1
// controls (\u009b), the bidirectional overrides and isolates that reorder
// what surrounds them, the line and paragraph separators, and bytes that
// are not UTF-8 (\xff). Backslashes are not escaped: s is shown, not
// quoted.
func visible(s, keep string) string {
	var b strings.Builder
	done := 0 // s[:done] is in b
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == utf8.RuneError && n == 1:
			esc = fmt.Sprintf(`\x%02x`, s[i])
		case !hidden(r) || strings.ContainsRune(keep, r):
			i += n
			continue
		case r < 0x80:
			if esc = strconv.QuoteRune(r); len(esc) == 4 { // '\n'
				esc = esc[1:3]
			} else {
				esc = fmt.Sprintf(`\x%02x`, r)
			}
		default:
			esc = fmt.Sprintf(`\u%04x`, r)
		}
		b.WriteString(s[done:i])
		b.WriteString(esc)
		i += n
		done = i
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// hidden reports whether r is a control that visible escapes.
func hidden(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x2028, r == 0x2029:
		return true
	}
	return false
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
