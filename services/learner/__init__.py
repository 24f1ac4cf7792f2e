"""Learner: the supervised warm start (`warmstart`) and BRPO/GRPO updates on packed trees (`learner`),
checkpoints as policy versions (`checkpoint`) and the Celery `learn` worker (`worker`)."""
