#!/usr/bin/env bash
# Build the separate environment of the anomalib peer benchmark (bench/peer_anomalib_padim.py).
# anomalib is NOT a project dependency: it lives in its own venv, outside the repository.
#
#   bash bench/peer_env.sh [VENV]        # default VENV: /work/venv-anomalib
#
# Versions (bench/peer_constraints.txt pins every package): anomalib 2.7.0 (the newest on the registry;
# installs and imports with torch 2.14.1), torch 2.14.1 / torchvision 0.29.1 (the registry's Linux
# wheels are the CUDA 13.0 build, "+cu130": they run on the CPU, and are the same build as the project's
# environment), timm 1.0.31, lightning 2.6.6, torchmetrics 1.9.0, kornia 0.9.0, scikit-learn 1.9.1,
# numpy 2.4.6. No anomalib extras (its core install is enough for PaDiM's torch model).
# About 5 GB on disk (torch's CUDA libraries), ~2 minutes from the registry.
set -euo pipefail
VENV="${1:-/work/venv-anomalib}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3.11 -m venv "$VENV" 2>/dev/null || python -m venv "$VENV"
"$VENV/bin/pip" install -c "$HERE/peer_constraints.txt" torch==2.14.1 torchvision==0.29.1
"$VENV/bin/pip" install -c "$HERE/peer_constraints.txt" anomalib==2.7.0
"$VENV/bin/python" - <<'EOF'
import warnings; warnings.filterwarnings("ignore")
import anomalib, timm, torch, torchvision
from anomalib.models.image.padim.torch_model import PadimModel  # noqa: F401
print(f"anomalib {anomalib.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}")
EOF
