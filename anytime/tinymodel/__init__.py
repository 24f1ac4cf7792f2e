"""The tiny reasoner: a tokenizer made from the project's own data and a few-million-parameter Qwen2.

Built with no network, saved in Hugging Face format so transformers and vLLM both load it.
Needs the `learner` or `rollout` extra (torch, transformers, tokenizers).
"""
