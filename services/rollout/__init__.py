"""Rollout: the anytime rollout (thinking, cuts, summaries), anytime evaluation and the `rollout` worker.

The engines it drives live in `services.engines`."""
