"""Rollout: generation engines and the anytime rollout (thinking, cuts, summaries)."""
