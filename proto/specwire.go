package hodeipb

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// DecodeJobSpec decodes b, the wire encoding of one JobSpec, into s (which
// must be empty) without protobuf's reflection: it is the hot part of a
// SubmitBatch of thousands of specs, where protobuf-go spent about 2 µs a
// spec, most of it building maps entry by entry. The spec's strings share
// one copy of b, so a spec costs one allocation for its text whatever the
// number of its strings (and a job kept in memory holds no more than its
// own spec's bytes).
//
// It reports false, with s in an undefined state, for anything it does not
// decode exactly as proto.Unmarshal would (a field it does not know, a
// wire type other than the field's, a malformed field, text that is not
// valid UTF-8): the caller then decodes with proto.Unmarshal, which keeps
// unknown fields and names what is wrong. TestDecodeJobSpec holds the two
// to the same result.
//
// A spec with secret_env is decoded again with a string of its own for
// each field, as protobuf does: the one copy of b holds the secret values
// in clear, and every string cut from it would keep them in memory for as
// long as the job, after the server has sealed them.
func DecodeJobSpec(b []byte, s *JobSpec) bool {
	d := specDecoder{b: b, text: string(b)}
	if !d.spec(s) {
		return false
	}
	if s.SecretEnv == nil {
		return true
	}
	proto.Reset(s)
	d = specDecoder{b: b, own: true}
	return d.spec(s)
}

// specDecoder reads a JobSpec from b; its strings are cut from text, a copy
// of b, or with own each copied from b on its own.
type specDecoder struct {
	b    []byte
	text string
	own  bool
	at   int // the next byte to read
}

func (d *specDecoder) rest() []byte { return d.b[d.at:] }

// tag reads a field's number and wire type.
func (d *specDecoder) tag() (protowire.Number, protowire.Type, bool) {
	num, typ, n := protowire.ConsumeTag(d.rest())
	if n < 0 {
		return 0, 0, false
	}
	d.at += n
	return num, typ, true
}

func (d *specDecoder) varint() (uint64, bool) {
	v, n := protowire.ConsumeVarint(d.rest())
	if n < 0 {
		return 0, false
	}
	d.at += n
	return v, true
}

// bytes reads a length-delimited field and returns where it ends.
func (d *specDecoder) bytes() (end int, ok bool) {
	l, ok := d.varint()
	if !ok || l > uint64(len(d.b)-d.at) {
		return 0, false
	}
	return d.at + int(l), true
}

// str reads a string field: a substring of text, valid UTF-8 as proto3
// requires.
func (d *specDecoder) str() (string, bool) {
	end, ok := d.bytes()
	if !ok {
		return "", false
	}
	var v string
	if d.own {
		v = string(d.b[d.at:end])
	} else {
		v = d.text[d.at:end]
	}
	d.at = end
	return v, utf8.ValidString(v)
}

func (d *specDecoder) spec(s *JobSpec) bool {
	for d.at < len(d.b) {
		num, typ, ok := d.tag()
		if !ok {
			return false
		}
		want := protowire.VarintType
		switch num {
		case 1, 2, 3, 4, 5, 6, 7, 8, 17, 18, 19, 21, 22, 24:
			want = protowire.BytesType
		}
		if typ != want || num < 1 || num > 27 {
			return false
		}
		if want == protowire.BytesType {
			if !d.bytesField(num, s) {
				return false
			}
			continue
		}
		v, ok := d.varint()
		if !ok {
			return false
		}
		switch num {
		case 9:
			s.NoPty = v != 0
		case 10:
			s.Rows = uint32(v)
		case 11:
			s.Cols = uint32(v)
		case 12:
			s.TimeoutMs = int64(v)
		case 13:
			s.Retries = int32(v)
		case 14:
			s.BackoffMs = int64(v)
		case 15:
			p := int32(v)
			s.Priority = &p
		case 16:
			s.DeadlineUnixNano = int64(v)
		case 20:
			s.Preemptible = v != 0
		case 23:
			s.ContinueOnFailure = v != 0
		case 25:
			s.ArrayIndex = int32(v)
		case 26:
			s.ArrayLimit = int32(v)
		case 27:
			s.Stdin = StdinMode(int32(v))
		}
	}
	return true
}

// bytesField reads the length-delimited field num of a JobSpec.
func (d *specDecoder) bytesField(num protowire.Number, s *JobSpec) bool {
	var ok bool
	switch num {
	case 3:
		s.Labels, ok = d.mapEntry(s.Labels)
	case 6:
		s.Env, ok = d.mapEntry(s.Env)
	case 7:
		s.SecretEnv, ok = d.mapEntry(s.SecretEnv)
	case 18:
		s.Selector, ok = d.mapEntry(s.Selector)
	case 17:
		if s.Resources == nil {
			s.Resources = &Resources{}
		}
		ok = d.resources(s.Resources)
	default:
		var v string
		if v, ok = d.str(); !ok {
			return false
		}
		switch num {
		case 1:
			s.Name = v
		case 2:
			s.Tenant = v
		case 4:
			s.Command = append(s.Command, v)
		case 5:
			s.Script = v
		case 8:
			s.Workdir = v
		case 19:
			s.DependsOn = append(s.DependsOn, v)
		case 21:
			s.Pipeline = v
		case 22:
			s.Step = v
		case 24:
			s.Array = v
		}
	}
	return ok
}

// mapEntry reads one entry of a map<string, string> field into m, made on
// the first entry; a key given twice keeps its last value.
func (d *specDecoder) mapEntry(m map[string]string) (map[string]string, bool) {
	end, ok := d.bytes()
	if !ok {
		return m, false
	}
	var k, v string
	for d.at < end {
		num, typ, ok := d.tag()
		if !ok || typ != protowire.BytesType || (num != 1 && num != 2) {
			return m, false
		}
		s, ok := d.str()
		if !ok || d.at > end {
			return m, false
		}
		if num == 1 {
			k = s
		} else {
			v = s
		}
	}
	if d.at != end {
		return m, false
	}
	if m == nil {
		m = make(map[string]string, 2)
	}
	m[k] = v
	return m, true
}

// resources reads a Resources message; a repeated one merges, as protobuf
// merges a message field given twice.
func (d *specDecoder) resources(r *Resources) bool {
	end, ok := d.bytes()
	if !ok {
		return false
	}
	for d.at < end {
		num, typ, ok := d.tag()
		if !ok || typ != protowire.VarintType || num < 1 || num > 3 {
			return false
		}
		v, ok := d.varint()
		if !ok || d.at > end {
			return false
		}
		switch num {
		case 1:
			r.CpuMillis = int64(v)
		case 2:
			r.MemoryMib = int64(v)
		case 3:
			r.Slots = int64(v)
		}
	}
	return d.at == end
}
