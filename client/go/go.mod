module ratatoskr/client/go

go 1.19

// The build here uses Debian 12's packages in GOPATH mode (build.sh): grpc-go 1.33.3,
// protobuf-go 1.28.1 and genproto's errdetails. In module mode, `go mod tidy` adds
// google.golang.org/genproto for googleapis/rpc/errdetails.
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
