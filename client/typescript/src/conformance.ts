// Checks the TypeScript client against a running ratd: health, Chat, ChatStream, Embed,
// CountTokens and the error details. Prints one line per check and "N passed, N failed";
// exits 1 when a check failed. Usage: node dist/conformance.js --address HOST:PORT
// [--api-key K] [--tls-ca PEM] [--expect-text T] [--rate-limited-model M]
import { parseArgs } from "node:util";
import { HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.js";
import { Role } from "./gen/ratatoskr/v1/chat_pb.js";
import { Code, connect, errorDetails, type ErrorDetails } from "./index.js";

const { values: args } = parseArgs({
  options: {
    address: { type: "string", default: "127.0.0.1:9741" },
    "api-key": { type: "string" },
    "tls-ca": { type: "string" },
    "chat-model": { type: "string", default: "gpt-4o-mini" },
    "embed-model": { type: "string", default: "all-MiniLM-L6-v2" },
    "expect-text": { type: "string" },
    "missing-model": { type: "string", default: "local:no-such-model" },
    "rate-limited-model": { type: "string" },
  },
});

// docs:begin
const { ratatoskr, health } = connect(args.address as string, { apiKey: args["api-key"], tlsCa: args["tls-ca"] });
// docs:end
const timeoutMs = 60_000;
const gossip = {
  messages: [{ role: Role.USER, content: "Who carries the gossip?" }],
  options: { model: args["chat-model"] },
};

function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function expectText(got: string): void {
  const want = args["expect-text"];
  expect(got !== "" && (want === undefined || got === want), `content ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

async function expectFailure(call: () => Promise<unknown>): Promise<ErrorDetails> {
  try {
    await call();
  } catch (error) {
    return errorDetails(error);
  }
  throw new Error("the call succeeded, want an error");
}

const checks: Record<string, () => Promise<string>> = {
  async health() {
    const reply = await health.check({}, { timeoutMs });
    expect(reply.status === HealthCheckResponse_ServingStatus.SERVING, `status ${reply.status}`);
    return "SERVING";
  },
  async chat() {
    // docs:begin
    const reply = await ratatoskr.chat(gossip, { timeoutMs });
    // docs:end
    expectText(reply.content);
    expect((reply.usage?.totalTokens ?? 0) > 0, "no usage");
    return `${reply.content.length} chars from ${reply.provider}, ${reply.usage?.totalTokens} tokens`;
  },
  async chat_stream() {
    let events = 0;
    let usage = 0;
    let content = "";
    // docs:begin
    for await (const event of ratatoskr.chatStream(gossip, { timeoutMs })) {
      events++;
      if (event.event.case === "content") content += event.event.value;
      if (event.event.case === "usage") usage = event.event.value.totalTokens;
    }
    // docs:end
    expectText(content);
    expect(events >= 2 && usage > 0, `${events} events, usage ${usage}`);
    return `${events} events, ${content.length} chars, usage ${usage} tokens`;
  },
  async embed() {
    const reply = await ratatoskr.embed({ text: "A squirrel runs up the ash tree.", model: args["embed-model"] }, { timeoutMs });
    const norm = Math.sqrt(reply.values.reduce((sum, v) => sum + v * v, 0));
    expect(reply.dimensions > 0 && reply.dimensions === reply.values.length && Math.abs(norm - 1) < 1e-3,
      `dimensions ${reply.dimensions}, norm ${norm}`);
    return `${reply.dimensions} dimensions, norm ${norm.toFixed(4)}`;
  },
  async count_tokens() {
    const reply = await ratatoskr.countTokens({ text: "Ratatoskr runs up and down Yggdrasil.", model: args["chat-model"] }, { timeoutMs });
    expect(reply.count > 0, "count 0");
    return `${reply.count} tokens (${reply.tokenizer})`;
  },
  async error_details() {
    // docs:begin
    let details: ErrorDetails | undefined;
    try {
      await ratatoskr.embed({ text: "hello", model: args["missing-model"] }, { timeoutMs });
    } catch (error) {
      details = errorDetails(error); // code, message, ErrorInfo reason/domain/metadata, RetryInfo
    }
    // docs:end
    expect(details !== undefined && details.code === Code.NotFound && details.reason === "MODEL_NOT_FOUND" &&
      details.domain === "ratatoskr", `got ${JSON.stringify(details)}`);
    return `NOT_FOUND, reason ${details?.reason}`;
  },
};
if (args["rate-limited-model"]) {
  checks.retry_info = async () => {
    const details = await expectFailure(() =>
      ratatoskr.chat({ ...gossip, options: { model: args["rate-limited-model"] } }, { timeoutMs }));
    expect(details.code === Code.ResourceExhausted && (details.retryDelayMs ?? 0) > 0, `got ${JSON.stringify(details)}`);
    return `RESOURCE_EXHAUSTED, reason ${details.reason}, retry after ${details.retryDelayMs} ms`;
  };
}

let passed = 0;
let failed = 0;
for (const [name, check] of Object.entries(checks)) {
  try {
    const note = await check();
    passed++;
    console.log(`ok   ${name}: ${note}`);
  } catch (error) {
    failed++;
    console.log(`FAIL ${name}: ${error instanceof Error ? error.message : String(error)}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
