# frozen_string_literal: true

# Checks the Ruby client against a running ratd: health, Chat, ChatStream, Embed,
# CountTokens and the error details. Prints one line per check and "N passed, N failed";
# exits 1 when a check failed. Usage: ruby -I gen -I lib conformance.rb --address HOST:PORT
require 'optparse'
require 'grpc/health/v1/health_services_pb'
require 'ratatoskr_client'

V1 = Ratatoskr::V1
options = {
  address: '127.0.0.1:9741', api_key: nil, tls_ca: nil, chat_model: 'gpt-4o-mini',
  embed_model: 'all-MiniLM-L6-v2', expect_text: nil, missing_model: 'local:no-such-model',
  rate_limited_model: nil
}
OptionParser.new do |parser|
  %i[address api_key tls_ca chat_model embed_model expect_text missing_model
     rate_limited_model].each do |key|
    parser.on("--#{key.to_s.tr('_', '-')} VALUE") { |value| options[key] = value }
  end
end.parse!

class CheckFailed < StandardError; end

def expect(condition, message)
  raise CheckFailed, message unless condition
end

def user_message(text)
  [V1::Message.new(role: :ROLE_USER, content: text)]
end

def expect_text(got, want)
  expect(!got.empty? && (want.nil? || got == want), "content #{got.inspect}, want #{want.inspect}")
end

creds = { api_key: options[:api_key], tls_ca: options[:tls_ca] }
# docs:begin
client = RatatoskrClient.connect(options[:address], **creds)
# docs:end
health = RatatoskrClient.connect(options[:address], **creds, service: Grpc::Health::V1::Health::Stub)
deadline = -> { Time.now + 60 }

checks = {
  'health' => lambda do
    reply = health.check(Grpc::Health::V1::HealthCheckRequest.new, deadline: deadline.call)
    expect(reply.status == :SERVING, "status #{reply.status}, want SERVING")
    'SERVING'
  end,
  'chat' => lambda do
    # docs:begin
    reply = client.chat(V1::ChatRequest.new(messages: user_message('Who carries the gossip?'),
                                            options: V1::ChatOptions.new(model: options[:chat_model])),
                        deadline: deadline.call)
    # docs:end
    expect_text(reply.content, options[:expect_text])
    expect(reply.usage&.total_tokens.to_i.positive?, "no usage in #{reply.inspect}")
    "#{reply.content.length} chars from #{reply.provider}, #{reply.usage.total_tokens} tokens"
  end,
  'chat_stream' => lambda do
    request = V1::ChatStreamRequest.new(messages: user_message('Who carries the gossip?'),
                                        options: V1::ChatOptions.new(model: options[:chat_model]))
    events = 0
    usage = 0
    content = +''
    # docs:begin
    client.chat_stream(request, deadline: deadline.call).each do |event|
      events += 1
      case event.event
      when :content then content << event.content
      when :usage then usage = event.usage.total_tokens
      end
    end
    # docs:end
    expect_text(content, options[:expect_text])
    expect(events >= 2 && usage.positive?, "#{events} events, usage #{usage}: want several and usage")
    "#{events} events, #{content.length} chars, usage #{usage} tokens"
  end,
  'embed' => lambda do
    reply = client.embed(V1::EmbedRequest.new(text: 'A squirrel runs up the ash tree.',
                                              model: options[:embed_model]), deadline: deadline.call)
    norm = Math.sqrt(reply.values.sum { |v| v * v })
    expect(reply.dimensions.positive? && reply.dimensions == reply.values.size && (norm - 1).abs < 1e-3,
           "dimensions #{reply.dimensions}, #{reply.values.size} values, norm #{norm}")
    format('%<dims>d dimensions, norm %<norm>.4f', dims: reply.dimensions, norm: norm)
  end,
  'count_tokens' => lambda do
    reply = client.count_tokens(V1::CountTokensRequest.new(text: 'Ratatoskr runs up and down Yggdrasil.',
                                                           model: options[:chat_model]),
                                deadline: deadline.call)
    expect(reply.count.positive?, 'count 0')
    "#{reply.count} tokens (#{reply.tokenizer})"
  end,
  'error_details' => lambda do
    # docs:begin
    begin
      client.embed(V1::EmbedRequest.new(text: 'hello', model: options[:missing_model]), deadline: deadline.call)
      raise CheckFailed, 'the call succeeded, want NOT_FOUND'
    rescue GRPC::BadStatus => e
      details = RatatoskrClient.error_details(e)
    end
    # docs:end
    expect(details.code == GRPC::Core::StatusCodes::NOT_FOUND && details.reason == 'MODEL_NOT_FOUND' &&
           details.domain == 'ratatoskr', "got #{details.to_h}")
    "NOT_FOUND, reason #{details.reason}"
  end
}
if options[:rate_limited_model]
  checks['retry_info'] = lambda do
    begin
      client.chat(V1::ChatRequest.new(messages: user_message('hi'),
                                      options: V1::ChatOptions.new(model: options[:rate_limited_model])),
                  deadline: deadline.call)
      raise CheckFailed, 'the call succeeded, want RESOURCE_EXHAUSTED'
    rescue GRPC::BadStatus => e
      details = RatatoskrClient.error_details(e)
    end
    expect(details.code == GRPC::Core::StatusCodes::RESOURCE_EXHAUSTED && details.retry_delay.to_f.positive?,
           "got #{details.to_h}")
    "RESOURCE_EXHAUSTED, reason #{details.reason}, retry after #{details.retry_delay}s"
  end
end

passed = 0
failed = 0
checks.each do |name, check|
  note = check.call
  passed += 1
  puts "ok   #{name}: #{note}"
rescue StandardError => e
  failed += 1
  puts "FAIL #{name}: #{e.message}"
end
puts "#{passed} passed, #{failed} failed"
exit(failed.zero? ? 0 : 1)
