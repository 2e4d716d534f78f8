// Package ratclient is the small hand-written part of the Go client for ratd: a
// connection helper, a bearer-key call credential, and the decoding of the
// google.rpc.Status details ratd attaches to every error (ErrorInfo, RetryInfo).
// The RPCs themselves are the generated ratatoskrv1.RatatoskrClient.
package ratclient

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	ratatoskrv1 "ratatoskr/client/go/gen/ratatoskr/v1"
)

// Options of Dial. The zero value is a plaintext loopback connection without a key.
type Options struct {
	// APIKey is sent as "authorization: Bearer <key>" on every call.
	APIKey string
	// TLSCAFile is a PEM file of the CA that signed ratd's certificate; empty means plaintext.
	TLSCAFile string
}

// Dial connects to ratd at address (host:port or unix:/path) and returns the connection
// and a client of the Ratatoskr service. Close the connection when done.
func Dial(address string, opts Options) (*grpc.ClientConn, ratatoskrv1.RatatoskrClient, error) {
	dialOpts := []grpc.DialOption{}
	if opts.TLSCAFile != "" {
		creds, err := credentials.NewClientTLSFromFile(opts.TLSCAFile, "")
		if err != nil {
			return nil, nil, err
		}
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	} else {
		dialOpts = append(dialOpts, grpc.WithInsecure())
	}
	if opts.APIKey != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(BearerKey{Key: opts.APIKey, AllowInsecure: opts.TLSCAFile == ""}))
	}
	conn, err := grpc.Dial(address, dialOpts...)
	if err != nil {
		return nil, nil, err
	}
	return conn, ratatoskrv1.NewRatatoskrClient(conn), nil
}

// BearerKey is a per-call credential that sends a ratd API key. It refuses plaintext
// connections unless AllowInsecure is set (loopback and unix sockets), so a key is not
// sent in the clear by accident.
type BearerKey struct {
	Key           string
	AllowInsecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b BearerKey) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Key}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b BearerKey) RequireTransportSecurity() bool { return !b.AllowInsecure }

// Details is what a ratd error says beyond its code and message.
type Details struct {
	Code    codes.Code
	Message string
	// Reason is ErrorInfo.reason, e.g. "MODEL_NOT_FOUND" (ErrorReason without its prefix).
	Reason   string
	Domain   string
	Metadata map[string]string
	// RetryDelay is RetryInfo.retry_delay; zero when ratd gave none.
	RetryDelay time.Duration
}

// ErrorDetails decodes a gRPC error from ratd. ok is false for an error that is not a
// gRPC status (a cancelled context is one: its code is Canceled).
func ErrorDetails(err error) (d Details, ok bool) {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return d, false
	}
	d.Code, d.Message = st.Code(), st.Message()
	for _, detail := range st.Details() {
		switch v := detail.(type) {
		case *errdetails.ErrorInfo:
			d.Reason, d.Domain, d.Metadata = v.GetReason(), v.GetDomain(), v.GetMetadata()
		case *errdetails.RetryInfo:
			if delay := v.GetRetryDelay(); delay != nil {
				d.RetryDelay = time.Duration(delay.GetSeconds())*time.Second + time.Duration(delay.GetNanos())
			}
		}
	}
	return d, true
}

// IsReason reports whether err is a ratd error with the given ErrorInfo reason.
func IsReason(err error, reason string) bool {
	d, ok := ErrorDetails(err)
	return ok && d.Reason == reason
}
