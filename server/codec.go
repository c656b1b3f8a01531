package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// A request whose string field is not valid UTF-8 fails to decode in
// protobuf-go, and grpc-go turns every error of a codec's Unmarshal into
// codes.Internal ("grpc: failed to unmarshal the received message", in
// recv, rpc_util.go, v1.85): a status error from the codec is rewrapped,
// not passed through, and the unary interceptors run only after the
// request decoded. So the field is found in two halves that must be used
// together, and newGRPCServer puts them together:
//
//   - wireCodec, the server's codec, decodes as grpc-go's proto codec does
//     and, when the target is a decodeProbe and decoding fails, looks for
//     the string field that is not valid UTF-8 in the bytes and leaves it
//     in the probe;
//   - checkedServer registers every service with its handlers wrapped so
//     that they decode into a decodeProbe and, when the probe holds a
//     field, answer InvalidArgument naming it instead of grpc-go's
//     Internal.
//
// Without the wrapping a bad request is still refused, as Internal; a
// request is never accepted with its text repaired.

// decodeProbe carries a request message through the codec, and back the
// field that made its decoding fail. One decode owns it.
type decodeProbe struct {
	msg any
	bad error // a *job.FieldError, set by wireCodec.Unmarshal
}

// wireCodec is grpc-go's proto codec plus the search for a field that is
// not valid UTF-8 (see decodeProbe). It is stateless and safe for
// concurrent use.
type wireCodec struct{ base encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{base: encoding.GetCodecV2(grpcproto.Name)} }

func (c wireCodec) Name() string { return c.base.Name() }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal decodes data into v, or into the message of a *decodeProbe.
// data stays readable until it returns (grpc-go frees it afterwards), so
// the failed bytes are searched in place of a second read.
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	probe, probed := v.(*decodeProbe)
	if probed {
		v = probe.msg
	}
	err := c.base.Unmarshal(data, v)
	if err == nil || !probed {
		return err
	}
	if m, ok := v.(proto.Message); ok {
		probe.bad = pb.FindInvalidUTF8(data.Materialize(), m.ProtoReflect().Descriptor())
	}
	return err
}

// codecOption makes a gRPC server decode with wireCodec. It is only useful
// with services registered through checkedServer; newGRPCServer sets both.
func codecOption() grpc.ServerOption { return grpc.ForceServerCodecV2(newWireCodec()) }

// checkedServer is a *grpc.Server whose RegisterService wraps every
// handler so that a request with a string field that is not valid UTF-8
// is answered InvalidArgument naming the field ("spec.command[2]: is not
// valid UTF-8"). Pass it where a grpc.ServiceRegistrar is wanted (the
// generated Register functions, health, reflection).
type checkedServer struct{ *grpc.Server }

// newGRPCServer returns a gRPC server with opts and wireCodec, and the
// registrar to register its services with.
func newGRPCServer(opts ...grpc.ServerOption) checkedServer {
	return checkedServer{grpc.NewServer(append(opts, codecOption())...)}
}

// RegisterService registers a copy of desc whose handlers decode through
// a decodeProbe.
func (s checkedServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		h := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return probeDecode(v, dec) }, in)
		}
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, st := range desc.Streams {
		h := st.Handler
		st.Handler = func(srv any, stream grpc.ServerStream) error { return h(srv, probedStream{stream}) }
		d.Streams[i] = st
	}
	s.Server.RegisterService(&d, impl)
}

// probeDecode decodes into v with recv, through a decodeProbe, and turns
// a failure the probe explains into InvalidArgument naming the field.
func probeDecode(v any, recv func(any) error) error {
	p := &decodeProbe{msg: v}
	err := recv(p)
	if err != nil && p.bad != nil {
		return toStatus(p.bad)
	}
	return err
}

// probedStream decodes the messages of a stream through a decodeProbe.
type probedStream struct{ grpc.ServerStream }

func (s probedStream) RecvMsg(m any) error { return probeDecode(m, s.ServerStream.RecvMsg) }
