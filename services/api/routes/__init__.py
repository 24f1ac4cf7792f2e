"""One router per resource: runs, a run's results (metrics, budgets, rewards, checkpoints, curve), health."""
