// The official `openai` npm package against ratd's OpenAI HTTP door. Run by
// tests/test_openai_http_node.py with RATD_BASE_URL and RATD_API_KEY set; prints one JSON
// document with what each call gave, for the Python test to check.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.RATD_BASE_URL,
  apiKey: process.env.RATD_API_KEY,
  maxRetries: 0,
});
const messages = [{ role: "user", content: "Hi" }];
const result = {};

const chat = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
result.chat = chat.choices[0].message.content;
result.usage = chat.usage;

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
result.streamed = "";
for await (const chunk of stream) {
  if (chunk.choices.length) result.streamed += chunk.choices[0].delta.content ?? "";
  else result.streamUsage = chunk.usage;
}

const tools = [
  {
    type: "function",
    function: {
      name: "lookup_ferry_schedule",
      parameters: { type: "object", properties: { harbor: { type: "string" } } },
    },
  },
];
const called = await client.chat.completions.create({
  model: "openai:scenario/tool-call",
  messages,
  tools,
});
result.toolCalls = called.choices[0].message.tool_calls;

const embedded = await client.embeddings.create({
  model: "text-embedding-3-small",
  input: ["one", "two"],
});
result.embeddings = embedded.data.map((d) => d.embedding.slice(0, 4));
result.dimensions = embedded.data.map((d) => d.embedding.length);

result.models = [];
for await (const model of client.models.list()) result.models.push(model.id);

try {
  await client.chat.completions.create({ model: "openai:scenario/rate-limit", messages });
  result.rateLimit = "no error";
} catch (err) {
  result.rateLimit = {
    isRateLimitError: err instanceof OpenAI.RateLimitError,
    status: err.status,
    retryAfter: err.headers?.get?.("retry-after") ?? err.headers?.["retry-after"],
    code: err.code,
  };
}

try {
  await new OpenAI({ baseURL: process.env.RATD_BASE_URL, apiKey: "wrong", maxRetries: 0 })
    .chat.completions.create({ model: "gpt-4o-mini", messages });
  result.auth = "no error";
} catch (err) {
  result.auth = { isAuthenticationError: err instanceof OpenAI.AuthenticationError };
}

console.log(JSON.stringify(result));
