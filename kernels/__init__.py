"""Triton kernels of glamor_fast, installed as ``glamor_fast.kernels``."""
