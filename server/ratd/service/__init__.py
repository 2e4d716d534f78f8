"""The gRPC service layer: proto in, proto out. It converts nothing but gRPC concerns
(deadlines, statuses, concurrency) and hands the generated messages to the core."""
