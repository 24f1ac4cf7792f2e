"""Learner: the supervised warm start and (later) BRPO updates on packed trees."""
