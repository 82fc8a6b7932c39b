#!/usr/bin/env bash
# Every GPU measurement of one lease, in priority order, each under its own time limit:
#   1. the README's test suite with a CUDA GPU visible (issue 11);
#   2. the 24-trial search of issue 13, timed, on one process and on 4 spawned workers;
#   3. python -m scaling.bench gpu: plain loop, trainer, search trials, concurrent workers (issue 13);
#   4. the recipe sweep's GPU preset (issue 17), when its script exists;
#   5. the study's full preset (issue 16), into results/full, packed as $OUT/full.tgz
#      (complete or not). It needs more than one 10-minute call, so it runs detached (setsid) in
#      a copy of the checkout, $STUDY_DIR, and each call waits on it until STUDY_LIMIT seconds
#      after this script started (set it ~20 s under the call's time limit: on a fresh machine
#      the set-up before the study, wheels and torch's import, took about 35 s), then packs what
#      it has: a second PARTS=study call on the still-warm machine finds it running and waits
#      on, so no run in flight is lost and no copied working tree overwrites its runs.csv. On a
#      fresh machine (the warm one was given back) the study starts again from the checkout:
#      unpack full.tgz into it first (tar xzf), and it resumes row by row.
#      STUDY_DIR defaults to /tmp/scaling-study-$SCALING_GIT_COMMIT; a call that finds it holding a
#      finished study only packs it again: remove the folder to start over.
# Usage, in the repository root of a machine with a GPU:
#   SCALING_GIT_COMMIT=$(git rev-parse HEAD) OUT=some/folder bash experiments/gpu_session.sh
# On a machine without internet, carry the missing wheels in .whl/ and the Fashion-MNIST IDX files
# in .gpudata/fashion-mnist/ (both git-ignored); the script installs them first.
# PARTS picks the steps (default: all): e.g. PARTS="suite search" then PARTS="bench sweep", two
# calls on one warm machine when one call may not run long enough for all four.
# Set TINY=1 to rehearse the whole script on a CPU in a few minutes.
set -u
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
DEVICE=cuda
SUITE=(-n 8)
SEARCH=(--budget 6M --trials 24 --epochs 2 --subset 10000 --val-size 2000)
BENCH=(--compile)
SWEEP=(--preset gpu --jobs 4)
STUDY=(full --device cuda)
STUDY_LIMIT=${STUDY_LIMIT:-500}
STUDY_DIR=${STUDY_DIR:-/tmp/scaling-study-${SCALING_GIT_COMMIT:-0}}
PARTS=${PARTS:-suite search bench sweep}
want() { [[ " $PARTS " == *" $1 "* ]]; }
if [ "${TINY:-0}" = 1 ]; then
    DEVICE=cpu
    SUITE=(tests/test_train.py -k "auto_device or learns_synthetic")
    SEARCH=(--budget 6M --trials 2 --epochs 1 --subset 300 --val-size 100 --batch-size 32)
    BENCH=(--tiny)
    SWEEP=(--preset tiny)
    STUDY=(tiny --device cpu --out results/full)
fi
log() { echo "== $(date -u +%H:%M:%S) $*"; }

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
if [ -d .gpudata/fashion-mnist ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p /usr/share/datasets && cp -r .gpudata/fashion-mnist /usr/share/datasets/
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if command -v nvidia-smi > /dev/null; then  # GPU busy % and memory every 10 s, for sizing
    (nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 10 \
        > "$OUT/gpu_util.csv" 2>&1 &)
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

if want suite; then
    log "1. test suite (README: python -m pytest -q)"
    timeout 200 python3 -m pytest -q -p no:cacheprovider "${SUITE[@]}" > "$OUT/pytest.log" 2>&1
    echo "pytest exit $?"; tail -n 25 "$OUT/pytest.log"
fi

if want search; then
    log "2. search, one process"
    start=$(date +%s.%N)
    timeout 90 python3 -m scaling.search "${SEARCH[@]}" --device "$DEVICE" --study s1 \
        --out /tmp/search1 --json --quiet > "$OUT/search_1proc.json" 2> /tmp/search1.err
    echo "exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"; tail -n 3 /tmp/search1.err
    log "2b. search, 4 spawned workers"
    start=$(date +%s.%N)
    timeout 90 python3 -m scaling.search "${SEARCH[@]}" --device "$DEVICE" --study s4 --workers 4 \
        --out /tmp/search4 --json --quiet > "$OUT/search_4workers.json" 2> /tmp/search4.err
    echo "exit $? in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"; tail -n 3 /tmp/search4.err
fi

if want bench; then
    log "3. bench gpu"
    timeout 200 python3 -m scaling.bench gpu --device "$DEVICE" "${BENCH[@]}" --out "$OUT"
fi

if want sweep && [ -f experiments/recipe_sweep.py ]; then
    log "4. recipe sweep"
    timeout 140 python3 experiments/recipe_sweep.py "${SWEEP[@]}" --device "$DEVICE" \
        --out "$OUT/sweep"
fi
if want study; then
    log "5. study, preset full (this call waits on it until ${STUDY_LIMIT} s after its start)"
    if [ ! -d "$STUDY_DIR" ]; then
        mkdir -p "$STUDY_DIR" && cp -a . "$STUDY_DIR/"
        (cd "$STUDY_DIR" && setsid nohup bash -c \
            'python3 -m scaling.study run "$@"; echo $? > study.exit' study "${STUDY[@]}" \
            > "$STUDY_DIR/study.log" 2>&1 < /dev/null &)
    else
        log "the study started by an earlier call runs in $STUDY_DIR: waiting on it"
    fi
    while [ ! -f "$STUDY_DIR/study.exit" ] && [ $SECONDS -lt "$STUDY_LIMIT" ]; do sleep 5; done
    cp "$STUDY_DIR/study.log" "$OUT/study.log"; tail -n 30 "$OUT/study.log"
    if [ -f "$STUDY_DIR/study.exit" ]; then echo "study exit $(cat "$STUDY_DIR/study.exit")"
    else echo "study still running, detached: call again with PARTS=study to wait on it"; fi
    tar czf "$OUT/full.tgz" -C "$STUDY_DIR" results/full && ls -l "$OUT/full.tgz"
fi
log done
