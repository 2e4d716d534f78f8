# frozen_string_literal: true

# The small hand-written part of the Ruby client for ratd: a connection helper, a
# bearer-key interceptor, and the decoding of the google.rpc.Status details ratd attaches
# to every error (ErrorInfo, RetryInfo). The RPCs are the generated
# Ratatoskr::V1::Ratatoskr::Stub (`make stubs` writes them to client/ruby/gen).
require 'grpc'
require 'grpc/google_rpc_status_utils'
require 'google/protobuf/well_known_types'
require 'google/rpc/error_details_pb'
require 'ratatoskr/v1/ratatoskr_services_pb'

module RatatoskrClient
  # Sends "authorization: Bearer <key>" on every call. An interceptor rather than
  # call credentials, because Ruby's gRPC refuses call credentials on a plaintext channel
  # and ratd on loopback or a unix socket may take a key without TLS.
  class BearerKey < GRPC::ClientInterceptor
    def initialize(key)
      super()
      @key = key
    end

    %i[request_response server_streamer client_streamer bidi_streamer].each do |kind|
      define_method(kind) do |metadata:, **_rest, &block|
        metadata['authorization'] = "Bearer #{@key}"
        block.call
      end
    end
  end

  # What a ratd error says beyond its code and message.
  ErrorDetails = Struct.new(:code, :message, :reason, :domain, :metadata, :retry_delay,
                            keyword_init: true)

  module_function

  # A channel's credentials: TLS with the given CA file, else plaintext.
  def channel_credentials(tls_ca)
    return :this_channel_is_insecure if tls_ca.nil? || tls_ca.empty?

    GRPC::Core::ChannelCredentials.new(File.read(tls_ca))
  end

  # A stub of `service` (default: the Ratatoskr service) connected to ratd.
  def connect(address, api_key: nil, tls_ca: nil, service: Ratatoskr::V1::Ratatoskr::Stub)
    interceptors = api_key.nil? || api_key.empty? ? [] : [BearerKey.new(api_key)]
    service.new(address, channel_credentials(tls_ca), interceptors: interceptors)
  end

  # Decodes a GRPC::BadStatus from ratd: the ErrorInfo reason and the RetryInfo delay
  # (seconds as a Float, nil when ratd gave none).
  def error_details(error)
    details = ErrorDetails.new(code: error.code, message: error.details, metadata: {})
    status = GRPC::GoogleRpcStatusUtils.extract_google_rpc_status(error.to_status)
    status&.details&.each do |any|
      if (info = any.unpack(Google::Rpc::ErrorInfo))
        details.reason = info.reason
        details.domain = info.domain
        details.metadata = info.metadata.to_h
      elsif (retry_info = any.unpack(Google::Rpc::RetryInfo))
        delay = retry_info.retry_delay
        details.retry_delay = delay.seconds + (delay.nanos / 1e9) if delay
      end
    end
    details
  end
end
