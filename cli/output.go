package cli

import (
	"bytes"
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
//
// A table written in pages (flushPage) aligns each page on its own rows,
// with every column at least as wide as in the pages before it, so that
// columns stay put unless a later page has a wider cell.
type table struct {
	tw     *tabwriter.Writer
	widths []int // widest cell of each column so far, in runes
	placed []int // widths as of the last flushPage: the minimum of later rows
}

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
		c = cell(c)
		n := utf8.RuneCountInString(c)
		if i == len(t.widths) {
			t.widths = append(t.widths, 0)
		}
		t.widths[i] = max(t.widths[i], n)
		io.WriteString(t.tw, c)
		if i < len(t.placed) && i < len(cells)-1 && n < t.placed[i] {
			io.WriteString(t.tw, strings.Repeat(" ", t.placed[i]-n))
		}
	}
	io.WriteString(t.tw, "\n")
}

// flush writes the table out; the first write error of any row shows here.
func (t *table) flush() error { return t.tw.Flush() }

// flushPage writes out the rows so far, aligned among themselves and with
// the pages before, and starts a new page.
func (t *table) flushPage() error {
	t.placed = append(t.placed[:0], t.widths...)
	return t.tw.Flush()
}

// jsonArray writes one JSON array element by element, laid out as
// writeJSON lays out a slice, so that a listing of any length is printed
// as it arrives. Call close once at the end; until then the array is open.
type jsonArray struct {
	w   io.Writer
	n   int // elements written
	buf bytes.Buffer
	enc *json.Encoder // into buf
}

func newJSONArray(w io.Writer) *jsonArray {
	a := &jsonArray{w: w}
	a.enc = json.NewEncoder(&a.buf)
	a.enc.SetIndent("  ", "  ")
	a.enc.SetEscapeHTML(false)
	return a
}

// add writes elements.
func (a *jsonArray) add(vs ...any) error {
	a.buf.Reset()
	for _, v := range vs {
		if a.n == 0 {
			a.buf.WriteString("[\n  ")
		} else {
			a.buf.WriteString(",\n  ")
		}
		if err := a.enc.Encode(v); err != nil {
			return err
		}
		a.buf.Truncate(a.buf.Len() - 1) // Encode's newline
		a.n++
	}
	_, err := a.w.Write(a.buf.Bytes())
	return err
}

// close ends the array.
func (a *jsonArray) close() error {
	end := "\n]\n"
	if a.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}

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
