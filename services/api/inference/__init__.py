"""Inference with a thinking budget: anytime answers from one thought, batched in rounds on one engine."""
