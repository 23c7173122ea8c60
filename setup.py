"""Install with: pip install torch==2.13.0 -e ".[dev]"  (pinning torch keeps pip on the CPU build; see README)."""

from setuptools import find_packages, setup

setup(
    name="hf-vit-mnist",
    version="0.1.0",
    description="The Vision Transformer for handwritten digits, written out for learning, as a transformers model.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["hf_vit_mnist", "hf_vit_mnist.*"]),
    package_data={"hf_vit_mnist": ["bundled/mnist/*.gz", "bundled/mnist/README.md", "metrics/*.py"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "datasets>=4.0",
        "accelerate>=1.0",
        "evaluate>=0.4",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "numpy",
        "pillow",
        "tensorboard",
        "matplotlib",
        "psutil",
    ],
    extras_require={
        "onnx": ["onnx", "onnxscript", "onnxruntime"],  # scripts/export_onnx.py
        "dev": ["pytest>=8", "ruff", "hypothesis", "onnx", "onnxscript", "onnxruntime"],
    },
)
