"""The contracts between the services: each Celery task's name, its typed request and its typed result.

Every side of a task imports its contract from here, so services import the core and never each other
(the driver sends `GENERATE_TASK` with a `RolloutJob` and reads a `RolloutResult`; the rollout worker
validates the same `RolloutJob`). Torch-free: the API and the driver import these without loading a model.

| task | module | request | result |
| --- | --- | --- | --- |
| `anytime.rollout.generate` | `contracts.rollout` | `RolloutJob` | `RolloutResult` |
| `anytime.eval.anytime` | `contracts.evaluation` | `EvalJob` | `EvalResult` |
| `anytime.verify.grade` | `contracts.verify` | `VerifyRequest` | `VerifyResult` |
| `anytime.learn.step` | `contracts.learn` | `LearnRequest` | `LearnResult` |
| `anytime.control.drive` | `contracts.drive` | `DriveRequest` | the run's final status |

`contracts.sampling` holds `SamplingConfig`, which the rollout and evaluation jobs carry and every engine
takes. The records the tasks pass through Redis sit beside these: `anytime.trajectory` (what the rollout
writes) and `anytime.verdict` (what the verifier writes). Requests come from outside the receiving process,
so they refuse unknown keys (`extra="forbid"`).
"""
