"""Learner: BRPO/GRPO updates on packed trees and the supervised warm start (`warmstart`).

Start at `learner` (the `Learner` facade; its docstring gives the reading order): `batch` (trajectories →
advantages → packed trees), `update` (the PPO step), `trainer_state` (optimizer, schedule, RNG, master
weights, resume), `model_io` (the policy in and out of a Hugging Face folder), `checkpoint` (policy versions
on disk), `metrics`, and the Celery `learn` worker (`worker`).
"""
