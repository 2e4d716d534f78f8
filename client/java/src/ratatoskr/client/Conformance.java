package ratatoskr.client;

import com.ratatoskr.v1.ChatOptions;
import com.ratatoskr.v1.ChatRequest;
import com.ratatoskr.v1.ChatResponse;
import com.ratatoskr.v1.ChatStreamRequest;
import com.ratatoskr.v1.ChatStreamResponse;
import com.ratatoskr.v1.CountTokensRequest;
import com.ratatoskr.v1.CountTokensResponse;
import com.ratatoskr.v1.EmbedRequest;
import com.ratatoskr.v1.EmbedResponse;
import com.ratatoskr.v1.Message;
import com.ratatoskr.v1.RatatoskrGrpc;
import com.ratatoskr.v1.Role;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * Checks the Java client against a running ratd: health, Chat, ChatStream, Embed, CountTokens
 * and the error details. Prints one line per check and "N passed, N failed"; exits 1 when a
 * check failed. Usage: Conformance --address HOST:PORT [--api-key K] [--tls-ca PEM]
 * [--expect-text T] [--rate-limited-model M]
 */
public final class Conformance {
  private final Map<String, String> args = new HashMap<>(Map.of(
      "address", "127.0.0.1:9741",
      "chat-model", "gpt-4o-mini",
      "embed-model", "all-MiniLM-L6-v2",
      "missing-model", "local:no-such-model"));
  private RatatoskrGrpc.RatatoskrBlockingStub client;
  private HealthGrpc.HealthBlockingStub health;

  public static void main(String[] argv) throws Exception {
    System.exit(new Conformance().run(argv));
  }

  private int run(String[] argv) throws Exception {
    for (int i = 0; i + 1 < argv.length; i += 2) {
      args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    ManagedChannel channel;
    try {
      // docs:begin
      channel = Ratd.connect(args.get("address"), args.get("api-key"), args.get("tls-ca"));
      client = Ratd.blockingStub(channel);
      // docs:end
    } catch (RuntimeException e) {
      // Debian 12's netty lacks JDK ALPN support: TLS channels fail here (docs/clients.md).
      System.out.println("FAIL connect: " + e);
      System.out.println("0 passed, 1 failed");
      return 1;
    }
    health = HealthGrpc.newBlockingStub(channel);
    Map<String, Callable<String>> checks = new LinkedHashMap<>();
    checks.put("health", this::health);
    checks.put("chat", this::chat);
    checks.put("chat_stream", this::chatStream);
    checks.put("embed", this::embed);
    checks.put("count_tokens", this::countTokens);
    checks.put("error_details", this::errorDetails);
    if (args.containsKey("rate-limited-model")) {
      checks.put("retry_info", this::retryInfo);
    }
    int passed = 0;
    int failed = 0;
    for (Map.Entry<String, Callable<String>> check : checks.entrySet()) {
      try {
        String note = check.getValue().call();
        passed++;
        System.out.println("ok   " + check.getKey() + ": " + note);
      } catch (Exception e) {
        failed++;
        System.out.println("FAIL " + check.getKey() + ": " + e.getMessage());
      }
    }
    System.out.println(passed + " passed, " + failed + " failed");
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    return failed == 0 ? 0 : 1;
  }

  private static void expect(boolean condition, String message) {
    if (!condition) {
      throw new IllegalStateException(message);
    }
  }

  private void expectText(String got) {
    String want = args.get("expect-text");
    expect(!got.isEmpty() && (want == null || got.equals(want)), "content '" + got + "', want '" + want + "'");
  }

  private RatatoskrGrpc.RatatoskrBlockingStub withDeadline() {
    return client.withDeadlineAfter(60, TimeUnit.SECONDS);
  }

  private static Message user(String text) {
    return Message.newBuilder().setRole(Role.ROLE_USER).setContent(text).build();
  }

  private static ChatOptions model(String name) {
    return ChatOptions.newBuilder().setModel(name).build();
  }

  private String health() {
    HealthCheckResponse reply = health.withDeadlineAfter(60, TimeUnit.SECONDS)
        .check(HealthCheckRequest.getDefaultInstance());
    expect(reply.getStatus() == HealthCheckResponse.ServingStatus.SERVING, "status " + reply.getStatus());
    return "SERVING";
  }

  private String chat() {
    // docs:begin
    ChatResponse reply = withDeadline().chat(ChatRequest.newBuilder()
        .addMessages(user("Who carries the gossip?"))
        .setOptions(model(args.get("chat-model")))
        .build());
    // docs:end
    expectText(reply.getContent());
    expect(reply.getUsage().getTotalTokens() > 0, "no usage");
    return reply.getContent().length() + " chars from " + reply.getProvider() + ", "
        + reply.getUsage().getTotalTokens() + " tokens";
  }

  private String chatStream() {
    Iterator<ChatStreamResponse> stream = withDeadline().chatStream(ChatStreamRequest.newBuilder()
        .addMessages(user("Who carries the gossip?"))
        .setOptions(model(args.get("chat-model")))
        .build());
    int events = 0;
    int usage = 0;
    StringBuilder content = new StringBuilder();
    // docs:begin
    while (stream.hasNext()) {
      ChatStreamResponse event = stream.next();
      events++;
      switch (event.getEventCase()) {
        case CONTENT -> content.append(event.getContent());
        case USAGE -> usage = event.getUsage().getTotalTokens();
        default -> { }
      }
    }
    // docs:end
    expectText(content.toString());
    expect(events >= 2 && usage > 0, events + " events, usage " + usage);
    return events + " events, " + content.length() + " chars, usage " + usage + " tokens";
  }

  private String embed() {
    EmbedResponse reply = withDeadline().embed(EmbedRequest.newBuilder()
        .setText("A squirrel runs up the ash tree.").setModel(args.get("embed-model")).build());
    double norm = Math.sqrt(reply.getValuesList().stream().mapToDouble(v -> v * v).sum());
    expect(reply.getDimensions() > 0 && reply.getDimensions() == reply.getValuesCount()
        && Math.abs(norm - 1) < 1e-3, "dimensions " + reply.getDimensions() + ", norm " + norm);
    return String.format("%d dimensions, norm %.4f", reply.getDimensions(), norm);
  }

  private String countTokens() {
    CountTokensResponse reply = withDeadline().countTokens(CountTokensRequest.newBuilder()
        .setText("Ratatoskr runs up and down Yggdrasil.").setModel(args.get("chat-model")).build());
    expect(reply.getCount() > 0, "count 0");
    return reply.getCount() + " tokens (" + reply.getTokenizer() + ")";
  }

  private String errorDetails() {
    // docs:begin
    try {
      withDeadline().embed(EmbedRequest.newBuilder()
          .setText("hello").setModel(args.get("missing-model")).build());
    } catch (StatusRuntimeException e) {
      ErrorDetails details = ErrorDetails.of(e);
      // docs:end
      expect(details.code() == Status.Code.NOT_FOUND && details.reason().equals("MODEL_NOT_FOUND")
          && details.domain().equals("ratatoskr"), "got " + details);
      return "NOT_FOUND, reason " + details.reason();
    }
    throw new IllegalStateException("the call succeeded, want NOT_FOUND");
  }

  private String retryInfo() {
    try {
      withDeadline().chat(ChatRequest.newBuilder()
          .addMessages(user("hi")).setOptions(model(args.get("rate-limited-model"))).build());
    } catch (StatusRuntimeException e) {
      ErrorDetails details = ErrorDetails.of(e);
      expect(details.code() == Status.Code.RESOURCE_EXHAUSTED && !details.retryDelay().isZero(),
          "got " + details);
      return "RESOURCE_EXHAUSTED, reason " + details.reason() + ", retry after " + details.retryDelay();
    }
    throw new IllegalStateException("the call succeeded, want RESOURCE_EXHAUSTED");
  }
}
