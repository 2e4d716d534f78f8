"""The OpenAI-compatible HTTP front door (``[http] address``): OpenAI's JSON in, the
``ratatoskr.v1`` messages to the same gateway core the gRPC service calls, OpenAI's JSON
(and SSE) out. A translation layer like ``ratd.service``: nothing here routes, retries,
validates or caches; the core does, for both doors."""
