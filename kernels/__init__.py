"""Triton kernels of glamor_fast, installed as ``glamor_fast.kernels``.

``gla``: the fused Global-Local Attention forward/backward (imported on demand, since it
needs triton; ``glamor_fast.ops.triton_backend`` wraps it as torch.library ops).
"""
