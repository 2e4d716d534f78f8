"""The gateway core: routing, fallback, validation and limits, between the gRPC service
and the providers. It speaks the generated ratatoskr.v1 messages, never gRPC itself."""
