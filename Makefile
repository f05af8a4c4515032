# frs_ros developer entry points. `make help` lists them.
#
# Knobs (make VAR=value or environment):
#   FRS_VENV and the other environment knobs of scripts/bootstrap.sh (venv location, torch index)
#   COLCON_ARGS  extra arguments for `colcon build` (e.g. --cmake-args -DCMAKE_BUILD_TYPE=Debug)
#   TESTS        what pytest runs (default: test, i.e. the whole suite; e.g. TESTS=test/test_interfaces.py)
#   PYTEST_ARGS  extra arguments for pytest (e.g. -m "not slow", -k twin, -x)
#   DEMO_ARGS    extra arguments for `python -m frs_ros.demo`
SHELL := /bin/bash
.SHELLFLAGS := -e -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(or $(FRS_VENV),$(ROOT)/.venv)
ENV := cd $(ROOT) && source scripts/env.sh
COLCON_ARGS ?=
TESTS ?= test
PYTEST_ARGS ?=
DEMO_ARGS ?=

# The build is installed with --symlink-install: edits to existing files need no rebuild. The
# build reruns when its key changes: the contents of package.xml, CMakeLists.txt, msg/, action/,
# scripts/nodes/, the list of files in the installed folders (frs_ros/, launch/, config/, rviz/,
# models/: a file added or removed) and the venv's stamp. Stale symlinks of removed files go too.
BUILD_KEY_FILE := $(ROOT)/install/.frs_build_key
BUILD_KEY_CMD := cd $(ROOT) && { cat package.xml CMakeLists.txt msg/*.msg action/*.action scripts/nodes/* \
	"$(VENV)/.frs_bootstrap_stamp" 2>/dev/null; find frs_ros launch config rviz models -name __pycache__ \
	-prune -o -type f ! -name '*.pyc' -print 2>/dev/null | LC_ALL=C sort; true; } | sha256sum | cut -c1-16

.PHONY: help setup build launch-tools test demo bench train-report clean distclean

help:
	@echo "make setup      create .venv with the pinned dependencies (scripts/bootstrap.sh)"
	@echo "make build      colcon build of the frs_ros package (interfaces + Python) into install/"
	@echo "make launch-tools  upstream launch/launch_ros/ros2cli from ../shared/ros-launch beside the venv (test_launch_real.py)"
	@echo "make test       setup + build + pytest on test/ with install/ sourced"
	@echo "make demo       setup + build + python -m frs_ros.demo"
	@echo "make bench      real-size performance benchmark: table + charts (docs/performance.md), ~10 min"
	@echo "make train-report  held-out table of the student (zero-shot, SFT) + training curves (docs/training.md)"
	@echo "make clean      remove build/, install/, log/    make distclean: also .venv"

setup:
	@bash $(ROOT)/scripts/bootstrap.sh

# One colcon build at a time per checkout (several people may share a working tree).
build: setup
	@mkdir -p $(ROOT)/build && exec 8>$(ROOT)/build/.frs_build.lock && flock 8 && \
	key="$$($(BUILD_KEY_CMD))"; \
	if [[ -f "$(BUILD_KEY_FILE)" && "$$(cat "$(BUILD_KEY_FILE)")" == "$$key" ]]; then \
	    echo "[build] install/ is up to date"; exit 0; fi; \
	$(ENV) && start=$$SECONDS && \
	if [[ -d install ]]; then find install -xtype l -delete; fi && \
	colcon build --paths $(ROOT) --build-base build --install-base install --symlink-install \
	    --cmake-args -DPython3_EXECUTABLE=$$VIRTUAL_ENV/bin/python $(COLCON_ARGS) && \
	echo "$$key" > "$(BUILD_KEY_FILE)" && echo "[build] colcon build done in $$((SECONDS - start)) s"

# `ros2 launch` for test/test_launch_real.py where no ROS 2 install provides it: the upstream sources in
# ../shared/ros-launch/ros_launch_src.tar.gz (FRS_ROS_LAUNCH_TARBALL), installed once into a cache folder
# beside the venv (scripts/ros_launch_tools.sh). The test does this itself when needed; CI runs it first.
launch-tools: setup
	@$(ENV) && bash scripts/ros_launch_tools.sh

test: build
	@$(ENV) && source install/setup.sh && \
	FRS_REQUIRE_ROS=1 FRS_REQUIRE_TORCH="$$(cat "$(VENV)/.frs_torch" 2>/dev/null || echo 1)" \
	python -m pytest $(TESTS) $(PYTEST_ARGS)

demo: build
	@$(ENV) && source install/setup.sh && python -m frs_ros.demo $(DEMO_ARGS)

# Benchmarks are not tests: they print tables and write bench/results/ and docs/img/bench_*.png.
bench: setup
	@$(ENV) && python bench/run_bench.py --out bench/results/bench_results.json --md bench/results/bench_table.md

train-report: setup
	@$(ENV) && python -m frs_ros.training report --config config/train_report.yaml

clean:
	rm -rf $(ROOT)/build $(ROOT)/install $(ROOT)/log

# The .venv link goes; the environment it points to stays in the shared store (other clones may use
# it): remove ~/.cache/frs_ros/venvs (or $$FRS_VENV_STORE) by hand to reclaim the space.
distclean: clean
	rm -rf $(VENV)
