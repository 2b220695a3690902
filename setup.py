"""Installs ``glamor_fast`` (with the top-level ``kernels/`` as ``glamor_fast.kernels``)."""
from setuptools import find_packages, setup


def extension_modules():
    """The torch extension ``glamor_fast._C`` (csrc/); none until csrc/ has sources."""
    return [], {}


ext_modules, cmdclass = extension_modules()

setup(
    name="glamor_fast",
    version="0.1.0",
    description="Fused Global-Local Attention kernels and the GLAMOR-Net model family for PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["glamor_fast", "glamor_fast.*"]) + ["glamor_fast.kernels"],
    package_dir={"glamor_fast.kernels": "kernels"},
    install_requires=[
        "torch>=2.13,<2.14",
        "numpy",
        "tqdm",
        "matplotlib",
        "opencv-python-headless>=4.8,<5",
    ],
    extras_require={
        "triton": ["triton>=3.9,<3.10"],
        "test": ["pytest", "pytest-benchmark", "triton>=3.9,<3.10", "ninja"],
    },
    entry_points={"console_scripts": ["glamor-fast=glamor_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
