"""The inference service: InferenceService over gRPC, in front of Triton."""
