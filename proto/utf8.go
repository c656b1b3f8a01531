package hodeipb

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hodei-jobs/hodei/job"
)

// Proto3 string fields must hold valid UTF-8: protobuf-go refuses to encode
// a message that breaks this and to decode bytes that do, with an error
// that does not say which field. The two functions below find the field,
// one in a message before it is sent (the client), one in the bytes of a
// request that failed to decode (the server). Both name it by its path of
// proto field names from the message they are given: "spec.command[2]",
// "spec.steps[0].name"; a map's key or value is named in the rule, by key,
// never by value (secret_env's values are secrets).

// CheckUTF8 returns a *job.FieldError naming the first string field of m,
// in field order, nested messages included, that is not valid UTF-8, or
// nil when there is none. It only reads m.
func CheckUTF8(m proto.Message) error {
	return checkMessage(m.ProtoReflect(), "")
}

// FindInvalidUTF8 walks b, the wire encoding of a message described by md,
// and returns a *job.FieldError naming the first string field, in the
// order of the bytes, that is not valid UTF-8. It returns nil when there is
// none or when b is malformed before one is found: that is left to the
// decoder to report.
func FindInvalidUTF8(b []byte, md protoreflect.MessageDescriptor) error {
	return findWire(b, md, "")
}

func fieldPath(path string, fd protoreflect.FieldDescriptor) string {
	if path == "" {
		return string(fd.Name())
	}
	return path + "." + string(fd.Name())
}

func checkMessage(m protoreflect.Message, path string) error {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		name, v := fieldPath(path, fd), m.Get(fd)
		switch {
		case fd.IsMap():
			if fe := checkMap(v.Map(), fd, name); fe != nil {
				return fe
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				if fe := checkValue(l.Get(j), fd, fmt.Sprintf("%s[%d]", name, j)); fe != nil {
					return fe
				}
			}
		default:
			if fe := checkValue(v, fd, name); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// checkValue checks one string or message value of field fd.
func checkValue(v protoreflect.Value, fd protoreflect.FieldDescriptor, name string) error {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return badUTF8(name)
		}
	case protoreflect.MessageKind:
		return checkMessage(v.Message(), name)
	}
	return nil
}

// checkMap checks a map's entries in the order of their keys, so that the
// answer does not depend on Go's map order.
func checkMap(m protoreflect.Map, fd protoreflect.FieldDescriptor, name string) error {
	var keys []protoreflect.MapKey
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int {
		switch x, y := a.String(), b.String(); {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	for _, k := range keys {
		if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.ValidString(k.String()) {
			return badMapKey(name, k.String())
		}
		v := m.Get(k)
		switch fd.MapValue().Kind() {
		case protoreflect.StringKind:
			if !utf8.ValidString(v.String()) {
				return badMapValue(name, k.String())
			}
		case protoreflect.MessageKind:
			if fe := checkMessage(v.Message(), fmt.Sprintf("%s[%q]", name, k.String())); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// bytesFields calls fn with each length-delimited field of the encoded
// message b, in order, skipping the others, until fn returns an error. It
// stops quietly where b is malformed: that is the decoder's to report.
func bytesFields(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

func findWire(b []byte, md protoreflect.MessageDescriptor, path string) error {
	seen := make(map[protowire.Number]int) // occurrences so far: the index of a repeated field
	return bytesFields(b, func(num protowire.Number, v []byte) error {
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			return nil
		}
		name := fieldPath(path, fd)
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, seen[num])
		}
		seen[num]++
		switch {
		case fd.IsMap():
			return findWireEntry(v, fd, name)
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return badUTF8(name)
			}
		case fd.Kind() == protoreflect.MessageKind:
			return findWire(v, fd.Message(), name)
		}
		return nil
	})
}

// findWireEntry checks one encoded map entry: key is field 1, value field 2.
func findWireEntry(b []byte, fd protoreflect.FieldDescriptor, name string) error {
	var key, val []byte
	var hasVal bool
	bytesFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			key = v
		case 2:
			val, hasVal = v, true
		}
		return nil
	})
	if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.Valid(key) {
		return badMapKey(name, string(key))
	}
	if !hasVal {
		return nil
	}
	switch fd.MapValue().Kind() {
	case protoreflect.StringKind:
		if !utf8.Valid(val) {
			return badMapValue(name, string(key))
		}
	case protoreflect.MessageKind:
		return findWire(val, fd.MapValue().Message(), fmt.Sprintf("%s[%q]", name, key))
	}
	return nil
}

func badUTF8(name string) error {
	return job.Invalid(name, "is not valid UTF-8")
}

func badMapKey(name, key string) error {
	return job.Invalid(name, "key %q is not valid UTF-8", key)
}

func badMapValue(name, key string) error {
	return job.Invalid(name, "value of %q is not valid UTF-8", key)
}
