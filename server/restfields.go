package server

// The request fields of REST errors. A REST client writes JSON names
// (pageSize, spec.timeoutMs) while the gRPC services name fields as the
// domain does (page_size, timeout): an error of the HTTP API names the
// field by its JSON name, found from the request message of the call.
// The gateway's own refusals (a body field or query parameter the message
// does not have, a value of the wrong type) carry no field at all, so the
// error handler finds it again by checking the request as the client sent
// it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// fieldError is a bad request naming the request field at fault by the
// name the client used for it, or its JSON name.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

// restBodyKey is the context key of a REST request's body, kept by the
// handler so that the error handler can say what is wrong with it.
type restBodyKey struct{}

// withBody returns ctx holding the request body b.
func withBody(ctx context.Context, b []byte) context.Context {
	return context.WithValue(ctx, restBodyKey{}, b)
}

// strictQuery is the gateway's query parser, refusing a parameter that
// names no field of the request (grpc-gateway's own ignores it, so that
// ?limit=50 would quietly give a page of 100), naming the parameter whose
// value does not parse, and taking an enum by its short name (running for
// JOB_STATE_RUNNING).
type strictQuery struct{}

// Parse parses values into msg one parameter at a time, as grpc-gateway
// does; an error is a *fieldError.
func (strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	md := msg.ProtoReflect().Descriptor()
	seen := map[string]string{} // the field's proto path → the key that set it
	for _, key := range slices.Sorted(maps.Keys(values)) {
		path, mapKey, isMap := strings.Cut(key, "[") // labels[k]=v
		fds := fieldPath(md, strings.Split(path, "."))
		if fds == nil {
			var names []string
			fs := md.Fields()
			for i := range fs.Len() {
				names = append(names, fs.Get(i).JSONName())
			}
			return &fieldError{key, fmt.Sprintf("unknown query parameter %q: %s takes %s", key, md.Name(), strings.Join(names, ", "))}
		}
		field, norm := jsonNames(fds), protoNames(fds)
		if isMap {
			field, norm = field+"["+mapKey, norm+"["+mapKey
		}
		if prev, ok := seen[norm]; ok {
			return &fieldError{field, fmt.Sprintf("query parameters %q and %q set the same field, %s: give one", prev, key, field)}
		}
		seen[norm] = key
		leaf := fds[len(fds)-1]
		vals := values[key]
		if len(vals) > 1 && !leaf.IsList() {
			return &fieldError{field, fmt.Sprintf("query parameter %s is given %d times; it takes one value", key, len(vals))}
		}
		if leaf.Enum() != nil {
			vals = enumNames(leaf.Enum(), vals)
		}
		if err := (&runtime.DefaultQueryParser{}).Parse(msg, url.Values{key: vals}, filter); err != nil {
			v := ""
			if len(vals) > 0 {
				v = vals[len(vals)-1]
			}
			return &fieldError{field, fmt.Sprintf("query parameter %s: %q is not %s", key, clip(v, 64), wants(leaf))}
		}
	}
	return nil
}

// fieldPath returns the fields path names in md, by their proto or JSON
// names, through singular message fields; nil if it names none.
func fieldPath(md protoreflect.MessageDescriptor, path []string) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	for i, name := range path {
		fd := byName(md, name)
		if fd == nil {
			return nil
		}
		out = append(out, fd)
		if i == len(path)-1 {
			return out
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return nil
		}
		md = fd.Message()
	}
	return nil
}

// byName is md's field of proto or JSON name name, or nil.
func byName(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByTextName(name); fd != nil {
		return fd
	}
	return md.Fields().ByJSONName(name)
}

func jsonNames(fds []protoreflect.FieldDescriptor) string {
	names := make([]string, len(fds))
	for i, fd := range fds {
		names[i] = fd.JSONName()
	}
	return strings.Join(names, ".")
}

func protoNames(fds []protoreflect.FieldDescriptor) string {
	names := make([]string, len(fds))
	for i, fd := range fds {
		names[i] = string(fd.Name())
	}
	return strings.Join(names, ".")
}

// enumPrefix is the prefix all of ed's value names share up to an
// underscore (JOB_STATE_), or "" when they share none: then a short name
// could be taken two ways, and only the full names are taken.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	vs := ed.Values()
	if vs.Len() == 0 {
		return ""
	}
	p := string(vs.Get(0).Name())
	for i := 1; i < vs.Len(); i++ {
		n := string(vs.Get(i).Name())
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	if i := strings.LastIndexByte(p, '_'); i >= 0 {
		return p[:i+1]
	}
	return ""
}

// enumNames turns short names of ed's values (running, Running) into
// their full names (JOB_STATE_RUNNING); others are left as they are.
func enumNames(ed protoreflect.EnumDescriptor, vals []string) []string {
	p := enumPrefix(ed)
	if p == "" {
		return vals
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v
		if ed.Values().ByName(protoreflect.Name(v)) != nil {
			continue
		}
		if full := p + strings.ToUpper(v); ed.Values().ByName(protoreflect.Name(full)) != nil {
			out[i] = full
		}
	}
	return out
}

// enumChoices says which values of ed a client may give.
func enumChoices(ed protoreflect.EnumDescriptor) string {
	p := enumPrefix(ed)
	var short, full []string
	vs := ed.Values()
	for i := range vs.Len() {
		n := string(vs.Get(i).Name())
		if strings.HasSuffix(n, "_UNSPECIFIED") {
			continue
		}
		full = append(full, n)
		short = append(short, strings.ToLower(strings.TrimPrefix(n, p)))
	}
	if p == "" {
		return "one of " + strings.Join(full, ", ")
	}
	return fmt.Sprintf("one of %s (or the full names, %s)", strings.Join(short, ", "), strings.Join(full, ", "))
}

// wants says what a value of fd is.
func wants(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "a whole number (int32)"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "a whole number (int64)"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "a whole number of 0 or more (uint32)"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a whole number of 0 or more (uint64)"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.StringKind:
		return "a string (valid UTF-8)"
	case protoreflect.BytesKind:
		return "bytes in base64"
	case protoreflect.EnumKind:
		return enumChoices(fd.Enum())
	}
	return "a " + string(fd.Message().Name())
}

// wantsJSON says what a JSON value of fd is, lists and maps included.
func wantsJSON(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return "an object whose values are each " + wants(fd.MapValue())
	case fd.IsList():
		return "a list whose items are each " + wants(fd)
	case fd.Kind() == protoreflect.Int64Kind || fd.Kind() == protoreflect.Uint64Kind:
		return wants(fd) + ", as a number or a string"
	}
	return wants(fd)
}

// bodyError finds what is wrong with body, a request of type md that
// protojson refused: the first field, in the order of their names, that
// md does not have or whose value is not of its type. It returns nil when
// it finds nothing (protojson refused something else).
func bodyError(md protoreflect.MessageDescriptor, body []byte, method string) *fieldError {
	return objectError(md, body, "", "the body of "+method)
}

// objectError checks raw as a JSON object of md at path (where says it
// for people).
func objectError(md protoreflect.MessageDescriptor, raw []byte, path, where string) *fieldError {
	if md.FullName().Parent() == "google.protobuf" {
		// A well-known type has a JSON form of its own.
		if err := protojson.Unmarshal(raw, dynamicpb.NewMessage(md)); err != nil {
			return &fieldError{path, fmt.Sprintf("%s: %s is not a %s", path, clip(string(raw), 64), md.Name())}
		}
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		if path == "" {
			return &fieldError{"", fmt.Sprintf("%s must be a JSON object (a %s)", where, md.Name())}
		}
		return &fieldError{path, fmt.Sprintf("%s: %s is not an object (a %s)", path, clip(string(raw), 64), md.Name())}
	}
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		val := obj[key]
		fd := byName(md, key)
		at := key
		if path != "" {
			at = path + "." + key
		}
		if fd == nil {
			var names []string
			fs := md.Fields()
			for i := range fs.Len() {
				names = append(names, fs.Get(i).JSONName())
			}
			return &fieldError{at, fmt.Sprintf("unknown field %q in %s: it takes %s", key, where, strings.Join(names, ", "))}
		}
		if string(bytes.TrimSpace(val)) == "null" {
			continue
		}
		if fe := valueError(md, fd, key, val, at); fe != nil {
			return fe
		}
	}
	return nil
}

// valueError checks val, the JSON value of md's field fd under the name
// key, at path at.
func valueError(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, key string, val []byte, at string) *fieldError {
	inner := func(m protoreflect.MessageDescriptor) bool {
		return m != nil && m.FullName().Parent() != "google.protobuf"
	}
	switch {
	case fd.IsMap() && inner(fd.MapValue().Message()):
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(val, &obj); err == nil {
			for _, k := range slices.Sorted(maps.Keys(obj)) {
				vm := fd.MapValue().Message()
				if fe := objectError(vm, obj[k], fmt.Sprintf("%s[%s]", at, k), fmt.Sprintf("%s[%s] (a %s)", at, k, vm.Name())); fe != nil {
					return fe
				}
			}
			return nil
		}
	case fd.IsList() && inner(fd.Message()):
		var items []json.RawMessage
		if err := json.Unmarshal(val, &items); err == nil {
			for i, item := range items {
				p := fmt.Sprintf("%s[%d]", at, i)
				if fe := objectError(fd.Message(), item, p, fmt.Sprintf("%s (a %s)", p, fd.Message().Name())); fe != nil {
					return fe
				}
			}
			return nil
		}
	case !fd.IsMap() && !fd.IsList() && inner(fd.Message()):
		return objectError(fd.Message(), val, at, fmt.Sprintf("%s (a %s)", at, fd.Message().Name()))
	}
	// A scalar, a list or map of them, or a well-known type: protojson
	// says whether the field alone parses.
	one, _ := json.Marshal(map[string]json.RawMessage{key: val})
	if err := protojson.Unmarshal(one, dynamicpb.NewMessage(md)); err != nil {
		return &fieldError{at, fmt.Sprintf("%s: %s is not %s", at, clip(string(bytes.TrimSpace(val)), 64), wantsJSON(fd))}
	}
	return nil
}

// methodInput is the request message of a gRPC method by its full name
// (/hodei.v1.JobService/Submit), or nil.
func methodInput(method string) protoreflect.MessageDescriptor {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	m := sd.Methods().ByName(protoreflect.Name(name))
	if m == nil {
		return nil
	}
	return m.Input()
}

// fieldSegment is one step of a server's field path: a name and what
// follows it in brackets (specs[1], steps[a]).
var fieldSegment = regexp.MustCompile(`^([A-Za-z0-9_]+)((?:\[[^\]]*\])*)$`)

// jsonField returns the server's field path (page_size, timeout,
// specs[1].command, steps.a.needs) as the JSON path of the request md
// (pageSize, spec.timeoutMs, specs[1].command, spec.steps.a.needs), or
// field itself when it names no field of md. A name the domain shortens
// (timeout for timeout_ms) is the one field whose name it starts;
// a path that starts below the request (timeout of a SubmitRequest's
// spec) is looked for in its message fields.
func jsonField(md protoreflect.MessageDescriptor, field string) string {
	if md == nil || field == "" {
		return field
	}
	if out, ok := jsonFieldIn(md, strings.Split(field, ".")); ok {
		return out
	}
	var found []string
	fs := md.Fields()
	for i := range fs.Len() {
		fd := fs.Get(i)
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			continue
		}
		if out, ok := jsonFieldIn(fd.Message(), strings.Split(field, ".")); ok {
			found = append(found, fd.JSONName()+"."+out)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return field
}

// jsonFieldIn converts path within md; see jsonField.
func jsonFieldIn(md protoreflect.MessageDescriptor, path []string) (string, bool) {
	var out []string
	for i := 0; i < len(path); i++ {
		m := fieldSegment.FindStringSubmatch(path[i])
		if m == nil || md == nil {
			return "", false
		}
		fd := domainField(md, m[1])
		if fd == nil {
			return "", false
		}
		out = append(out, fd.JSONName()+m[2])
		md = nil
		switch {
		case fd.IsMap():
			md = fd.MapValue().Message()
		case fd.Message() != nil:
			md = fd.Message()
		}
		if fd.IsList() && m[2] == "" && i+1 < len(path) && md != nil && domainField(md, path[i+1]) == nil {
			// steps.a.needs: a list item by its name.
			i++
			out = append(out, path[i])
		}
	}
	return strings.Join(out, "."), len(out) > 0
}

// domainField is md's field that the server's name name stands for: by
// its proto or JSON name, or the one field whose proto name is name_…
// (timeout → timeout_ms).
func domainField(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := byName(md, name); fd != nil {
		return fd
	}
	var found protoreflect.FieldDescriptor
	fs := md.Fields()
	for i := range fs.Len() {
		if strings.HasPrefix(string(fs.Get(i).Name()), name+"_") {
			if found != nil {
				return nil
			}
			found = fs.Get(i)
		}
	}
	return found
}

// restField fills in e's field, by its JSON name, from the request md of
// its call: a server's field is converted (and a message that starts with
// it says both names); a refusal of the gateway's, which names none, is
// checked again against the body (body, nil when there was none) or the
// query.
func restField(e httpError, md protoreflect.MessageDescriptor, body []byte, query url.Values, method string) httpError {
	if md == nil || e.body.GetCode() != int32(codes.InvalidArgument) {
		return e
	}
	if f := e.body.GetField(); f != "" {
		j := jsonField(md, f)
		if j != f {
			e.body.Field = j
			if rest, ok := strings.CutPrefix(e.body.GetMessage(), f+": "); ok {
				e.body.Message = fmt.Sprintf("%s (%s): %s", j, f, rest)
			}
		}
		return e
	}
	var fe *fieldError
	if len(bytes.TrimSpace(body)) > 0 {
		fe = bodyError(md, body, method)
		if msg := e.body.GetMessage(); fe == nil && protojsonPrefix.MatchString(msg) {
			// protojson's words without its position prefix.
			e.body.Message = "the request body: " + protojsonPrefix.ReplaceAllString(msg, "")
		}
	} else if len(query) > 0 {
		if err, ok := (strictQuery{}).Parse(dynamicpb.NewMessage(md), query, utilities.NewDoubleArray(nil)).(*fieldError); ok {
			fe = err
		}
	}
	if fe != nil {
		e.body.Field, e.body.Message = fe.field, fe.msg
	}
	return e
}

// protojsonPrefix is what protojson puts before its message.
var protojsonPrefix = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

// methodName is the last part of a gRPC method's full name (Submit).
func methodName(method string) string {
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		return method[i+1:]
	}
	return method
}
