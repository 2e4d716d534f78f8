#include "ratatoskr_client.h"

#include <fstream>
#include <sstream>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace ratatoskr_client {
namespace {

class BearerKeyPlugin : public grpc::MetadataCredentialsPlugin {
 public:
  explicit BearerKeyPlugin(std::string key) : key_(std::move(key)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    metadata->insert({"authorization", "Bearer " + key_});
    return grpc::Status::OK;
  }

 private:
  std::string key_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

std::shared_ptr<grpc::CallCredentials> BearerKey(const std::string& key) {
  return grpc::MetadataCredentialsFromPlugin(std::make_unique<BearerKeyPlugin>(key));
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address, const Options& options) {
  if (options.tls_ca_file.empty()) {
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(options.tls_ca_file);
  auto credentials = grpc::SslCredentials(ssl);
  if (!options.api_key.empty()) {
    credentials = grpc::CompositeChannelCredentials(credentials, BearerKey(options.api_key));
  }
  return grpc::CreateChannel(address, credentials);
}

void Prepare(grpc::ClientContext& context, const Options& options, std::chrono::seconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (options.tls_ca_file.empty() && !options.api_key.empty()) {
    context.AddMetadata("authorization", "Bearer " + options.api_key);
  }
}

ErrorDetails DecodeError(const grpc::Status& status) {
  ErrorDetails details;
  details.code = status.error_code();
  details.message = status.error_message();
  google::rpc::Status rpc_status;
  if (status.error_details().empty() || !rpc_status.ParseFromString(status.error_details())) {
    return details;
  }
  for (const auto& any : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    google::rpc::RetryInfo retry;
    if (any.UnpackTo(&info)) {
      details.reason = info.reason();
      details.domain = info.domain();
      details.metadata.insert(info.metadata().begin(), info.metadata().end());
    } else if (any.UnpackTo(&retry)) {
      const auto& delay = retry.retry_delay();
      details.retry_delay = std::chrono::milliseconds(delay.seconds() * 1000 + delay.nanos() / 1000000);
    }
  }
  return details;
}

}  // namespace ratatoskr_client
