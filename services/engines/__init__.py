"""Generation engines: the seam (`seam.py`), its two engines and the factory that starts one.

A library room, not a process: the rollout worker (rollouts and evaluations) and the API's inference both
load engines from here, so neither service imports the other. Only `transformers_engine` and `vllm_engine`
import torch, transformers or vLLM; import them lazily from torch-free code.
"""
