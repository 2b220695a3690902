"""The ops, one package each: ``gla`` (Global-Local Attention and its hidden-layer statistics),
``bn_relu_pool`` (the fused encoder block), ``relu_pool`` and ``stem_conv`` (inference kernels).
``registry`` chooses every op's backend; ``extension`` loads the compiled kernels.

The GLA function is ``glamor_fast.ops.gla.gla`` (also ``glamor_fast.gla``): ``glamor_fast.ops.gla``
is its package.
"""
from .gla.spec import gla_reference, gla_split
from .registry import BackendUnavailableError, available_backends, choose_backend

__all__ = ["gla_reference", "gla_split", "available_backends", "choose_backend", "BackendUnavailableError"]
