package job

import (
	"errors"
	"strings"
	"testing"
)

func TestInBatch(t *testing.T) {
	fe := InBatch(3, Invalid("command", "must not be empty"))
	if got, ok := errors.AsType[*FieldError](fe); !ok || got.Field != "specs[3].command" || got.Error() != "specs[3].command: must not be empty" {
		t.Fatalf("InBatch of a FieldError = %#v", fe)
	}
	be := InBatch(2, UnknownTenant("x"))
	if got, ok := errors.AsType[*BatchError](be); !ok || got.Index != 2 || !errors.Is(be, ErrNotFound) {
		t.Fatalf("InBatch of a NotFound = %#v", be)
	}
	if InBatch(1, nil) != nil {
		t.Fatal("InBatch(nil) is not nil")
	}
}

func TestParseBatchField(t *testing.T) {
	for _, tt := range []struct {
		field string
		i     int
		rest  string
		ok    bool
	}{
		{"specs[3].command", 3, "command", true},
		{"specs[0].command[2]", 0, "command[2]", true},
		{"specs[12]", 12, "", true},
		{"specs", 0, "", false},
		{"specs[]", 0, "", false},
		{"specs[-1].x", 0, "", false},
		{"specs[01].x", 0, "", false},
		{"specs[1]x", 0, "", false},
		{"steps.a.command", 0, "", false},
	} {
		i, rest, ok := ParseBatchField(tt.field)
		if i != tt.i || rest != tt.rest || ok != tt.ok {
			t.Errorf("ParseBatchField(%q) = %d, %q, %v; want %d, %q, %v", tt.field, i, rest, ok, tt.i, tt.rest, tt.ok)
		}
		if tt.ok && BatchField(i, rest) != tt.field {
			t.Errorf("BatchField(%d, %q) = %q, want %q", i, rest, BatchField(i, rest), tt.field)
		}
	}
}

// TestCheckTextMeasures holds the size checkText measures to Size, and the
// size error first when a spec is both too large and has bad text.
func TestCheckTextMeasures(t *testing.T) {
	s := Spec{Name: "n", Tenant: "t", Command: []string{"echo", "hé"}, WorkDir: "/w",
		Labels: map[string]string{"a": "b", "cc": "dd"}, Selector: map[string]string{"os": "linux"},
		Env: map[string]string{"E": "v"}, SecretEnv: map[string]string{"S": "0123456789abcdef"}, DependsOn: []string{"x"}}
	n, err := s.checkText()
	if err != nil || n != s.Size() {
		t.Fatalf("checkText = %d, %v; Size = %d", n, err, s.Size())
	}
	big := Spec{Tenant: "default", Script: strings.Repeat("x", MaxSpecBytes) + "\xff"}
	if err := big.Validate(); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("a spec too large with bad text: %v, want the size refused", err)
	}
}
