#!/usr/bin/env bash
# A user's plain install: the committed tree (git archive HEAD, no .git, no build leftovers)
# installed with `pip install -c constraints.txt '.[flows]'` (NOT editable) into a fresh venv;
# the source copy is then deleted, and from a folder outside the repository a short demo runs,
# `alchemy-obs infer` uses the shipped model by name, and the shipped make-mocks deployment is
# deployed and run through a Prefect worker (.ci/prefect_deployment.sh).
#   PYTHON: interpreter for the venv (default python3)
#   ALCHEMY_CI_WORK: folder for the venv and the run (default: a new temporary folder)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${ALCHEMY_CI_WORK:-$(mktemp -d)}
mkdir -p "$work/src" "$work/run"
t0=$SECONDS

git -C "$repo" archive HEAD | tar -x -C "$work/src"
"${PYTHON:-python3}" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/pip" install -q -c "$work/src/constraints.txt" "$work/src[flows]"
rm -rf "$work/src"
echo "installed: non-editable install in $((SECONDS - t0)) s"

cd "$work/run"
"$bin/python" - <<'PY'
import alchemy_obs, alchemy_obs.shipped as s
where = s.PACKAGE_DIR
assert "site-packages" in where.parts, f"alchemy_obs imported from {where}, not the install"
for f in (s.MODELS / "registry.yaml", s.MODELS / "hi2dm" / "model.safetensors",
          s.CONFIGS / "flows" / "demo.yaml", s.PREFECT_YAML):
    assert f.is_file(), f"not installed: {f}"
print(f"installed: alchemy_obs {alchemy_obs.__version__} in {where}")
PY

# The demo with two galaxies (its documented --set sizes) so that the step stays short; the
# full demo maps and mocks 20 galaxies.
t=$SECONDS
"$bin/alchemy-obs" demo --out demo --set synth.n_galaxies=2 --set device=cpu
echo "installed: demo (2 galaxies) in $((SECONDS - t)) s"
cube=$(ls demo/mocks/*_hi_image.fits | head -1)
[ -f demo/inferred/"$(basename "${cube%.fits}")"_dm.fits ] || { echo "demo wrote no inferred map"; exit 1; }

"$bin/alchemy-obs" infer "$cube" --model hi2dm --out inferred --set device=cpu
[ -f inferred/"$(basename "${cube%.fits}")"_dm.fits ] || { echo "infer wrote no map"; exit 1; }
registry=$("$bin/alchemy-obs" models)
registry=${registry%%$'\n'*}
case "$registry" in
    "registry: $work/venv/"*/alchemy_obs/models/registry.yaml*) echo "installed: $registry" ;;
    *) echo "the registry in use is not the installed package's: $registry"; exit 1 ;;
esac

t=$SECONDS
ALCHEMY_CI_BIN="$bin" bash "$repo/.ci/prefect_deployment.sh"
echo "installed: Prefect deployment of the installed make-mocks in $((SECONDS - t)) s"
echo "installed: ok in $((SECONDS - t0)) s"
