"""The verifier service: the Celery `verify` worker (`services.verifier.worker`) and the `anytime verify`
batch command (`services.verifier.batch_cli`), both built on the core's verification library
(`anytime.verification`: extraction, the format rule, grading with math-verify under hard time limits).
"""
