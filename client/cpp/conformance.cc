// Checks the C++ client against a running ratd: health, Chat, ChatStream, Embed,
// CountTokens and the error details. Prints one line per check and "N passed, N failed";
// exits 1 when a check failed. Usage: conformance --address HOST:PORT [--api-key K]
// [--tls-ca PEM] [--expect-text T] [--rate-limited-model M]
#include <cmath>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "ratatoskr/v1/ratatoskr.grpc.pb.h"
#include "ratatoskr_client.h"

namespace v1 = ratatoskr::v1;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {

std::map<std::string, std::string> args = {
    {"address", "127.0.0.1:9741"},     {"api-key", ""},
    {"tls-ca", ""},                    {"chat-model", "gpt-4o-mini"},
    {"embed-model", "all-MiniLM-L6-v2"}, {"expect-text", ""},
    {"missing-model", "local:no-such-model"}, {"rate-limited-model", ""},
};

struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Expect(bool condition, const std::string& message) {
  if (!condition) throw Failed(message);
}

void ExpectOk(const grpc::Status& status) {
  Expect(status.ok(), "status " + std::to_string(status.error_code()) + ": " + status.error_message());
}

void ExpectText(const std::string& got) {
  const std::string& want = args["expect-text"];
  Expect(!got.empty() && (want.empty() || got == want), "content '" + got + "', want '" + want + "'");
}

template <typename Request>
void AskForGossip(Request& request, const std::string& model, const std::string& text) {
  auto* message = request.add_messages();
  message->set_role(v1::ROLE_USER);
  message->set_content(text);
  request.mutable_options()->set_model(model);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0 || !args.count(name.substr(2))) {
      std::cerr << "unknown argument " << name << "\n";
      return 2;
    }
    args[name.substr(2)] = argv[i + 1];
  }
  const ratatoskr_client::Options options{args["api-key"], args["tls-ca"]};
  // docs:begin
  auto channel = ratatoskr_client::Connect(args["address"], options);
  auto client = v1::Ratatoskr::NewStub(channel);
  // docs:end
  auto health = Health::NewStub(channel);

  std::vector<std::pair<std::string, std::function<std::string()>>> checks = {
      {"health",
       [&] {
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         HealthCheckResponse reply;
         ExpectOk(health->Check(&context, HealthCheckRequest(), &reply));
         Expect(reply.status() == HealthCheckResponse::SERVING, "status " + std::to_string(reply.status()));
         return std::string("SERVING");
       }},
      {"chat",
       [&] {
         // docs:begin
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         v1::ChatRequest request;
         AskForGossip(request, args["chat-model"], "Who carries the gossip?");
         v1::ChatResponse reply;
         ExpectOk(client->Chat(&context, request, &reply));
         // docs:end
         ExpectText(reply.content());
         Expect(reply.usage().total_tokens() > 0, "no usage");
         return std::to_string(reply.content().size()) + " bytes from " + reply.provider() + ", " +
                std::to_string(reply.usage().total_tokens()) + " tokens";
       }},
      {"chat_stream",
       [&] {
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         v1::ChatStreamRequest request;
         AskForGossip(request, args["chat-model"], "Who carries the gossip?");
         auto stream = client->ChatStream(&context, request);
         v1::ChatStreamResponse event;
         int events = 0;
         uint32_t usage = 0;
         std::string content;
         // docs:begin
         while (stream->Read(&event)) {
           ++events;
           if (event.event_case() == v1::ChatStreamResponse::kContent) content += event.content();
           if (event.event_case() == v1::ChatStreamResponse::kUsage) usage = event.usage().total_tokens();
         }
         ExpectOk(stream->Finish());
         // docs:end
         ExpectText(content);
         Expect(events >= 2 && usage > 0, std::to_string(events) + " events, usage " + std::to_string(usage));
         return std::to_string(events) + " events, " + std::to_string(content.size()) + " bytes, usage " +
                std::to_string(usage) + " tokens";
       }},
      {"embed",
       [&] {
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         v1::EmbedRequest request;
         request.set_text("A squirrel runs up the ash tree.");
         request.set_model(args["embed-model"]);
         v1::EmbedResponse reply;
         ExpectOk(client->Embed(&context, request, &reply));
         double norm = 0;
         for (float v : reply.values()) norm += double(v) * v;
         norm = std::sqrt(norm);
         Expect(reply.dimensions() > 0 && int(reply.dimensions()) == reply.values_size() &&
                    std::abs(norm - 1) < 1e-3,
                "dimensions " + std::to_string(reply.dimensions()) + ", norm " + std::to_string(norm));
         return std::to_string(reply.dimensions()) + " dimensions, norm " + std::to_string(norm);
       }},
      {"count_tokens",
       [&] {
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         v1::CountTokensRequest request;
         request.set_text("Ratatoskr runs up and down Yggdrasil.");
         request.set_model(args["chat-model"]);
         v1::CountTokensResponse reply;
         ExpectOk(client->CountTokens(&context, request, &reply));
         Expect(reply.count() > 0, "count 0");
         return std::to_string(reply.count()) + " tokens (" + reply.tokenizer() + ")";
       }},
      {"error_details",
       [&] {
         grpc::ClientContext context;
         ratatoskr_client::Prepare(context, options);
         v1::EmbedRequest request;
         request.set_text("hello");
         request.set_model(args["missing-model"]);
         v1::EmbedResponse reply;
         // docs:begin
         auto details = ratatoskr_client::DecodeError(client->Embed(&context, request, &reply));
         // docs:end
         Expect(details.code == grpc::StatusCode::NOT_FOUND && details.reason == "MODEL_NOT_FOUND" &&
                    details.domain == "ratatoskr",
                "code " + std::to_string(details.code) + " reason '" + details.reason + "': " + details.message);
         return "NOT_FOUND, reason " + details.reason;
       }},
  };
  if (!args["rate-limited-model"].empty()) {
    checks.emplace_back("retry_info", [&] {
      grpc::ClientContext context;
      ratatoskr_client::Prepare(context, options);
      v1::ChatRequest request;
      AskForGossip(request, args["rate-limited-model"], "hi");
      v1::ChatResponse reply;
      auto details = ratatoskr_client::DecodeError(client->Chat(&context, request, &reply));
      Expect(details.code == grpc::StatusCode::RESOURCE_EXHAUSTED && details.retry_delay.count() > 0,
             "code " + std::to_string(details.code) + " delay " + std::to_string(details.retry_delay.count()));
      return "RESOURCE_EXHAUSTED, reason " + details.reason + ", retry after " +
             std::to_string(details.retry_delay.count()) + " ms";
    });
  }

  int passed = 0, failed = 0;
  for (auto& [name, check] : checks) {
    try {
      std::string note = check();
      ++passed;
      std::cout << "ok   " << name << ": " << note << "\n";
    } catch (const std::exception& error) {
      ++failed;
      std::cout << "FAIL " << name << ": " << error.what() << "\n";
    }
  }
  std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed == 0 ? 0 : 1;
}
