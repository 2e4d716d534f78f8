"""Long-running jobs (SubmitBatch), their store, and the runners of each kind."""
