#!/usr/bin/env bash
# The gl backend on a GPU host, in one call (issue 15: "works on an NVIDIA GPU through EGL", and its 320² figure).
# The host has no pybullet, so it draws a ride recorded here (python -m spokester_env.gl_replay): which driver EGL
# gives, draws/s at each recorded size with and without the flow pass, and how its pictures differ from llvmpipe's.
# Here, first (the ride: about 3.5 MiB; the wheels, for the host's Python 3.12: under 1 MiB):
#   python -m spokester_env.gl_replay record --out runs/gl-ride.npz
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl moderngl glcontext gymnasium cloudpickle farama-notifications
# then run it there carrying .whl and runs/gl-ride.npz; OUT gets host.txt (GPU, driver, Python, the replay's exit
# status), egl-libraries.txt (the EGL libraries and vendor files the host has), gl-replay.json and its stderr.
# The env itself can be measured there too if the game comes along: pybullet has no wheel past CPython 3.11, so build
# it here for the host's Python (3.12 on the H200 seen so far; about 4 min) and carry its module, stripped (8 MB
# instead of 104), with pybullet_utils, in .whl/game:
#   /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/py312 && /tmp/py312/bin/pip install pybullet==3.2.7
#   P=/tmp/py312/lib/python3.12/site-packages; mkdir -p .whl/game && cp -r $P/pybullet_utils .whl/game/ &&
#     strip --strip-unneeded -o .whl/game/pybullet.cpython-312-x86_64-linux-gnu.so $P/pybullet.cpython-312-x86_64-linux-gnu.so
# Then OUT also gets gl-bench.json (python -m spokester_env.bench --backends gl --json: the env's steps/s on that
# driver against its bare drawing, at 84, 160 and 320 px) and its stderr, and vector-fork.txt / vector-forkserver.txt:
# two envs in AsyncVectorEnv workers started each way (the README advises forkserver on a GPU host: does a fork hang?).
# On this CPU it replays through llvmpipe: `OUT=/tmp/gl-check bash scripts/gpu_gl_check.sh`.
set -u
OUT=${OUT:-runs/gl-check}
RIDE=${RIDE:-runs/gl-ride.npz}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
{
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1; else echo "no nvidia-smi"; fi
  $PY -c "import sys; print('python', sys.version.split()[0])"
} >"$OUT/host.txt"
{
  ls /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib 2>/dev/null | grep -i -E '^lib(EGL|GLX|GLdispatch|OpenGL|nvidia-egl|nvidia-glcore)' | sort -u
  ls /usr/share/glvnd/egl_vendor.d /etc/glvnd/egl_vendor.d 2>/dev/null
} >"$OUT/egl-libraries.txt"
SITE=""
if [ -d .whl ]; then
  SITE=$(mktemp -d)
  $PY -m pip install --no-index --no-deps --target "$SITE" .whl/*.whl >"$OUT/pip.txt" 2>&1
fi
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" $PY -m spokester_env.gl_replay replay "$RIDE" --seconds 3 --json \
  >"$OUT/gl-replay.json" 2>"$OUT/gl-replay.err"
echo "replay: rc $?" >>"$OUT/host.txt"
if [ -d .whl/game ]; then
  export PYTHONPATH=".whl/game:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  $PY -m spokester_env.bench --backends gl --seconds 3 --json \
    >"$OUT/gl-bench.json" 2>"$OUT/gl-bench.err"
  echo "bench: rc $?" >>"$OUT/host.txt"
  for START in fork forkserver; do
    timeout 120 $PY -c "
import gymnasium as gym
make = lambda: gym.make('spokester_env:Spokester-v0', width=84, height=84)
envs = gym.vector.AsyncVectorEnv([make, make], context='$START')
obs, _ = envs.reset(seed=0)
print('$START', envs.get_attr('driver'), float(obs['depth'].max()))
envs.close()" >"$OUT/vector-$START.txt" 2>&1
    echo "vector $START: rc $? (124: timed out)" >>"$OUT/host.txt"
  done
fi
cat "$OUT/host.txt" "$OUT/gl-replay.err"
head -c 3000 "$OUT/gl-replay.json"
echo
[ -f "$OUT/gl-bench.json" ] && cat "$OUT/gl-bench.err" "$OUT/gl-bench.json" && echo
