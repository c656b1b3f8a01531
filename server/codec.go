package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// A request whose string field is not valid UTF-8 fails to decode in
// protobuf-go, and grpc-go answers every error of a codec's Unmarshal with
// codes.Internal (v1.85: recv in rpc_util.go wraps it with
// status.Errorf(codes.Internal, "grpc: failed to unmarshal the received
// message: %v"), so a status error from the codec is not passed through;
// and serverStream.RecvMsg writes that status to the client at once, so
// nothing the handler returns afterwards replaces it; the unary
// interceptors run only after the request decoded). So the field is found
// in two halves that must be used together, and newGRPCServer puts them
// together:
//
//   - wireCodec, the server's codec, decodes as grpc-go's proto codec
//     does. When the target is a decodeProbe and decoding fails on a
//     string field that is not valid UTF-8, it finds that field in the
//     bytes, leaves it in the probe, empties the message and reports
//     success to grpc-go;
//   - checkedServer registers every service with its handlers wrapped so
//     that they decode into a decodeProbe and, when the probe holds a
//     field, return InvalidArgument naming it, before the request reaches
//     an interceptor or a handler.
//
// Either half alone still refuses such a request (as Internal, or a
// decodeProbe the codec cannot decode into); a request is never accepted
// with its text repaired.
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
// the bytes that failed are searched there.
func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	probe, probed := v.(*decodeProbe)
	if probed {
		v = probe.msg
	}
	var err error
	if req, ok := v.(*pb.SubmitBatchRequest); ok {
		err = c.unmarshalBatch(data, req)
	} else {
		err = c.base.Unmarshal(data, v)
	}
	if err == nil || !probed {
		return err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	if probe.bad = pb.FindInvalidUTF8(data.Materialize(), m.ProtoReflect().Descriptor()); probe.bad == nil {
		// Not text: bytes that are no message of this type at all.
		probe.bad = job.Invalid("request", "is not a valid %s message: %v", m.ProtoReflect().Descriptor().FullName(), err)
	}
	proto.Reset(m) // nothing half-decoded is left for anyone to read
	return nil     // see the comment at the top: the probe reports it
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

// probeDecode decodes into v with recv, through a decodeProbe, and
// returns InvalidArgument naming the field when the probe holds one.
func probeDecode(v any, recv func(any) error) error {
	p := &decodeProbe{msg: v}
	err := recv(p)
	if p.bad != nil {
		return toStatus(p.bad)
	}
	return err
}

// probedStream decodes the messages of a stream through a decodeProbe.
type probedStream struct{ grpc.ServerStream }

func (s probedStream) RecvMsg(m any) error { return probeDecode(m, s.ServerStream.RecvMsg) }
