"""The platform's processes, one package per role: api, rollout, verifier, learner."""
