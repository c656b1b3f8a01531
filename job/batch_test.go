package job

import (
	"errors"
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
