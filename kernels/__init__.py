"""Triton kernels of glamor_fast, installed as ``glamor_fast.kernels``.

``gla``: the fused Global-Local Attention forward/backward (imported on demand, since it
needs triton; ``glamor_fast.ops.triton_backend`` wraps it as torch.library ops); ``bn_relu_pool``: the fused encoder block BatchNorm2d -> ReLU ->
MaxPool2d(2) with its own torch.library ops (used through ``glamor_fast.ops.bn_relu_pool``).
"""
