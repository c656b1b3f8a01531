package hodeipb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// randomSpec fills every field of a JobSpec, each present or not at random.
func randomSpec(r *rand.Rand) *JobSpec {
	str := func() string {
		alphabet := []rune("abcXYZ09_-=/ é\x00\n日")
		b := make([]rune, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	maybe := func() bool { return r.IntN(2) == 0 }
	strMap := func() map[string]string {
		if maybe() {
			return nil
		}
		m := make(map[string]string)
		for range r.IntN(5) {
			m[str()] = str()
		}
		return m
	}
	strs := func() []string {
		var s []string
		for range r.IntN(4) {
			s = append(s, str())
		}
		return s
	}
	varint := func() uint64 {
		if maybe() {
			return 0
		}
		return r.Uint64() >> r.IntN(64)
	}
	s := &JobSpec{
		Name: str(), Tenant: str(), Labels: strMap(), Command: strs(), Script: str(),
		Env: strMap(), SecretEnv: strMap(), Workdir: str(), NoPty: maybe(),
		Rows: uint32(varint()), Cols: uint32(varint()), TimeoutMs: int64(varint()),
		Retries: int32(varint()), BackoffMs: int64(varint()), DeadlineUnixNano: int64(varint()),
		Selector: strMap(), DependsOn: strs(), Preemptible: maybe(), Pipeline: str(), Step: str(),
		ContinueOnFailure: maybe(), Array: str(), ArrayIndex: int32(varint()), ArrayLimit: int32(varint()),
		Stdin: StdinMode(int32(varint())),
	}
	if maybe() {
		p := int32(varint())
		s.Priority = &p
	}
	if maybe() {
		s.Resources = &Resources{CpuMillis: int64(varint()), MemoryMib: int64(varint()), Slots: int64(varint())}
	}
	return s
}

// checkDecode holds DecodeJobSpec to proto.Unmarshal on b: when it
// decodes, protobuf must decode the same message.
func checkDecode(t *testing.T, b []byte) (decoded bool) {
	t.Helper()
	var got JobSpec
	if !DecodeJobSpec(b, &got) {
		return false
	}
	var want JobSpec
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatalf("DecodeJobSpec decoded %x, which protobuf refuses: %v", b, err)
	}
	if !proto.Equal(&got, &want) {
		t.Fatalf("DecodeJobSpec(%x)\n got %v\nwant %v", b, &got, &want)
	}
	return true
}

func TestDecodeJobSpec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		s := randomSpec(r)
		b, err := proto.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, b) {
			t.Fatalf("spec %d: DecodeJobSpec refused what proto.Marshal made: %v", i, s)
		}
		// Fields in another order, and given twice: the last one wins,
		// maps and lists gather.
		twice := append(append([]byte(nil), b...), b...)
		if !checkDecode(t, twice) {
			t.Fatalf("spec %d given twice: refused", i)
		}
		// Damaged bytes: whatever DecodeJobSpec accepts, protobuf decodes
		// to the same message.
		for range 5 {
			bad := append([]byte(nil), b...)
			if len(bad) > 0 {
				bad[r.IntN(len(bad))] ^= byte(1 << r.IntN(8))
			}
			checkDecode(t, bad)
			checkDecode(t, b[:r.IntN(len(b)+1)])
		}
	}
}

// TestDecodeJobSpecDefersToProtobuf covers what DecodeJobSpec leaves to
// proto.Unmarshal: fields it does not know, known fields with another wire
// type, and text that is not UTF-8.
func TestDecodeJobSpecDefersToProtobuf(t *testing.T) {
	for name, b := range map[string][]byte{
		"unknown field":  protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "x"),
		"name as varint": protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3),
		"name not UTF-8": protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff"),
		"label value not UTF-8": protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType),
			protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "\xc3")),
		"unknown field in resources": protowire.AppendBytes(protowire.AppendTag(nil, 17, protowire.BytesType),
			protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 1)),
	} {
		t.Run(name, func(t *testing.T) {
			var s JobSpec
			if DecodeJobSpec(b, &s) {
				t.Fatalf("decoded %x as %v; want it left to protobuf", b, &s)
			}
		})
	}
}

// TestDecodeJobSpecSecretsNotShared: the strings of a spec without
// secret_env are cut from one copy of its bytes; those of a spec with it
// are copied each on its own, so that none keeps the secret values.
func TestDecodeJobSpecSecretsNotShared(t *testing.T) {
	name, cmd := strings.Repeat("n", 20), strings.Repeat("c", 20)
	for _, secret := range []map[string]string{nil, {"TOKEN": "s3cr3t-value"}} {
		b, err := proto.Marshal(&JobSpec{Name: name, Command: []string{cmd}, SecretEnv: secret})
		if err != nil {
			t.Fatal(err)
		}
		var s JobSpec
		if !DecodeJobSpec(b, &s) {
			t.Fatalf("refused %x", b)
		}
		// In one copy, the command lies as far after the name as in b (22
		// bytes); strings of 20 bytes allocated apart are 8-byte aligned,
		// so never 22 bytes apart.
		gap := uintptr(unsafe.Pointer(unsafe.StringData(s.Command[0]))) - uintptr(unsafe.Pointer(unsafe.StringData(s.Name)))
		inB := uintptr(bytes.Index(b, []byte(cmd)) - bytes.Index(b, []byte(name)))
		if shared := gap == inB; shared != (secret == nil) {
			t.Errorf("secret_env %v: strings share one copy: %v", secret, shared)
		}
	}
}

func FuzzDecodeJobSpec(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		if b, err := proto.Marshal(randomSpec(r)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

func BenchmarkDecodeJobSpec(b *testing.B) {
	spec := &JobSpec{
		Name: "bench", Command: []string{"/bin/echo", "hello", "world"},
		Labels: map[string]string{"team": "bench", "kind": "submit"}, Env: map[string]string{"MODE": "bench"},
	}
	data, err := proto.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	for _, way := range []string{"protobuf", "DecodeJobSpec"} {
		b.Run(way, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var s JobSpec
				if way == "protobuf" {
					err = proto.Unmarshal(data, &s)
				} else if !DecodeJobSpec(data, &s) {
					err = fmt.Errorf("refused")
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
