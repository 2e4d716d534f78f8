// The small hand-written part of the C++ client for ratd: a connection helper, a
// bearer-key credential, and the decoding of the google.rpc.Status details ratd attaches
// to every error (ErrorInfo, RetryInfo). The RPCs are the generated
// ratatoskr::v1::Ratatoskr::Stub (`make stubs` writes them to client/cpp/gen).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace ratatoskr_client {

struct Options {
  // Sent as "authorization: Bearer <key>" on every call; empty: no key.
  std::string api_key;
  // PEM file of the CA that signed ratd's certificate; empty: plaintext.
  std::string tls_ca_file;
};

// What a ratd error says beyond its code and message.
struct ErrorDetails {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;
  // ErrorInfo.reason, e.g. "MODEL_NOT_FOUND" (ErrorReason without its prefix).
  std::string reason;
  std::string domain;
  std::map<std::string, std::string> metadata;
  // RetryInfo.retry_delay; zero when ratd gave none.
  std::chrono::milliseconds retry_delay{0};
};

// A call credential that sends the key. gRPC C++ sends call credentials over TLS only,
// so Connect() attaches it to TLS channels and Prepare() sets the header itself on
// plaintext ones (loopback, unix sockets).
std::shared_ptr<grpc::CallCredentials> BearerKey(const std::string& key);

// A channel to ratd at `address` (host:port or unix:/path).
std::shared_ptr<grpc::Channel> Connect(const std::string& address, const Options& options);

// Sets a call's deadline and, on a plaintext channel with a key, its authorization header.
void Prepare(grpc::ClientContext& context, const Options& options,
             std::chrono::seconds timeout = std::chrono::seconds(60));

// Decodes the status of a failed call: code, message, ErrorInfo and RetryInfo.
ErrorDetails DecodeError(const grpc::Status& status);

}  // namespace ratatoskr_client
