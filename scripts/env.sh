# Sourced by the Makefile (and usable by hand: `. scripts/env.sh`): activates the project venv and,
# when ROS 2 comes from PyPI wheels inside it, points ament/CMake at the venv prefix.
# Knob: FRS_VENV (default <repo>/.venv). Then `. install/setup.sh` adds the built frs_ros.
_frs_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_frs_venv="${FRS_VENV:-$_frs_root/.venv}"
if [ ! -x "$_frs_venv/bin/python" ]; then
  echo "frs_ros: no virtual environment at $_frs_venv; run 'make setup' first." >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_frs_venv/bin/activate"
if [ "$(cat "$_frs_venv/.frs_ros_mode" 2>/dev/null)" = wheels ]; then
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
fi
unset _frs_root _frs_venv
