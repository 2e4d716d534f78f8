"""Generated protobuf and gRPC stubs of the ratatoskr.v1 contract (``make proto``; do not edit)."""
