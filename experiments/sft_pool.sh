#!/usr/bin/env bash
# The SFT warm start on a pool of LLM writers (issue 38), a first measurement in the profile-only protocol.
#
#   pool:   for the first USERS train users, Qwen2.5 1.5B with the built-in `recent` prompt (1 profile each) and the
#           base Gemma 3 270M with the broad prompt (N each), judged by the split's reader (reader:bow) on 4 targets
#   sft:    the base writer fine-tuned on each user's best profile in the pool that names only titles of the user's
#           history (MIN_TITLES) and states values within STATED_ERROR of its mean, on its own broad prompt
#   test:   the base and the SFT writer write N_TEST profiles for each of the TEST_USERS test users; controls: the
#           SFT writer's profiles of another user (swap) and no profile; each arm judged by the same reader
#   report: python3 -m experiments.sft_pool_report -> bench/results/$TAG.json and .md (paired intervals, lengths,
#           faithfulness, what sft took from the pool, each stage's seconds)
#
# The SFT settings (EPOCHS, LR, LoRA r16) are fixed in advance, not chosen on these test users. Every stage is cached
# in the store, so a rerun continues where a crash left it. Variables (default):
#   DATA (../shared/data/movielens-100k)  NAME (sftpool)  STORE (bench/results/$NAME-store/lettingo.db)  TAG ($NAME)
#   USERS (100)  TEST_USERS (100)  N (2)  N_TEST (2)  MAX_TOKENS (120)  EPOCHS (2)  LR (2e-4)
#   MIN_TITLES (0.8)  STATED_ERROR (0.5)  QUANT (q8_0)
#   TEACHER (qwen2.5-1.5b) and TEACHER_ARGS ("--prompt recent --n 1"): the pool's stronger writer
#   WRITER (gemma-3-270m): the writer trained, also the pool's second writer and the base arm; BASE (gemma-3-270m):
#   its HF model for sft and dpo --base; SFT_ARGS (extra sft flags, empty)
#   DPO (1: also DPO on off-policy pairs from the same pool, on the base writer's own prompt, with an NLL term on
#        the chosen side; 0: skip)  DPO_ARGS ("--beta 0.1 --lr 5e-5 --epochs 1 --max-length 1280 --sft-weight 1")
#   PROMPTS (levels genres recent: prompt-only arms, the base writer with each of these built-in prompts)
#   POOL_ARGS (extra flags of sft and pair on the pool, empty; --allow-model-free takes a model-free teacher)
#   SECOND (reader:bow?without=POOL: the reader fitted without the pool's users, whose scores chose what sft and
#          the pairs took; it also judges no profile and the history as text, its power to read content)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
DATA="${DATA:-$here/../../shared/data/movielens-100k}"
NAME="${NAME:-sftpool}"
STORE="${STORE:-$here/../bench/results/$NAME-store/lettingo.db}"
TAG="${TAG:-$NAME}"
RESULTS="${RESULTS:-$here/../bench/results}"
USERS="${USERS:-100}"
TEST_USERS="${TEST_USERS:-100}"
N="${N:-2}"
N_TEST="${N_TEST:-2}"
MAX_TOKENS="${MAX_TOKENS:-120}"
EPOCHS="${EPOCHS:-2}"
LR="${LR:-2e-4}"
MIN_TITLES="${MIN_TITLES:-0.8}"
STATED_ERROR="${STATED_ERROR:-0.5}"
QUANT="${QUANT:-q8_0}"
TEACHER="${TEACHER:-qwen2.5-1.5b}"
TEACHER_ARGS="${TEACHER_ARGS---prompt recent --n 1}"
WRITER="${WRITER:-gemma-3-270m}"
BASE="${BASE:-gemma-3-270m}"
SFT_ARGS="${SFT_ARGS:-}"
DPO="${DPO:-1}"
DPO_ARGS="${DPO_ARGS:---beta 0.1 --lr 5e-5 --epochs 1 --max-length 1280 --sft-weight 1}"
SECOND="${SECOND-reader:bow?without=POOL}"
PROMPTS="${PROMPTS-levels genres recent}"
POOL_ARGS="${POOL_ARGS:-}"

export LETTINGO_STORE="$STORE"
times="$RESULTS/$TAG.times"  # stage seconds, appended (the report counts each stage once: its longest run)
refs="$RESULTS/$TAG.refs"
if [ ! -e "$STORE" ]; then rm -f "$times"; fi  # a new store is a new run
mkdir -p "$(dirname "$STORE")" "$RESULTS"
: > "$refs"

# stage NAME COMMAND... records each stage's seconds; keep ROLE REF each artifact the report reads
source "$here/stages.sh"

dataset=$(stage ingest lettingo ingest movielens "$DATA")
split=$(stage split lettingo split "$dataset" --targets 4 --recent 0 --history 30 --test-users "$TEST_USERS" \
  --name "$NAME")
keep split "$split"

echo "== the pool: two LLM writers for the first $USERS train users" >&2
# shellcheck disable=SC2086  # TEACHER_ARGS is a list of flags
qwen=$(stage gen_pool_qwen lettingo gen --split "$split" --users "train:$USERS" --generator "$TEACHER" \
  $TEACHER_ARGS --max-tokens "$MAX_TOKENS" --name "$NAME-pool-qwen")
gemma=$(stage gen_pool_gemma lettingo gen --split "$split" --users "train:$USERS" --generator "$WRITER" --n "$N" \
  --max-tokens "$MAX_TOKENS" --name "$NAME-pool-gemma")
pool_qwen=$(stage score_pool_qwen lettingo score "$qwen" --targets 4)
pool_gemma=$(stage score_pool_gemma lettingo score "$gemma" --targets 4)
keep pool_qwen "$pool_qwen"; keep pool_gemma "$pool_gemma"

echo "== sft on each user's best faithful profile; export" >&2
# shellcheck disable=SC2086  # SFT_ARGS is a list of flags
adapter=$(stage sft lettingo sft "$pool_qwen" "$pool_gemma" --base "$BASE" --epochs "$EPOCHS" --lr "$LR" \
  --min-titles-found "$MIN_TITLES" --max-stated-error "$STATED_ERROR" $SFT_ARGS $POOL_ARGS --name "$NAME-sft")
export_ref=$(stage export lettingo export "$adapter" --quant "$QUANT" --prompts 2 --name "$NAME-sft")
keep adapter "$adapter"; keep export "$export_ref"

if [ "$DPO" = 1 ]; then
  echo "== dpo on off-policy pairs from the pool, on the base writer's own prompt" >&2
  # shellcheck disable=SC2086  # POOL_ARGS is a list of flags
  pairs=$(stage pair lettingo pair "$pool_qwen" "$pool_gemma" --for "$WRITER" --rule best-worst \
    --max-per-user 1 --max-stated-error "$STATED_ERROR" $POOL_ARGS --name "$NAME-pool")
  # shellcheck disable=SC2086  # DPO_ARGS is a list of flags
  dpo_adapter=$(stage dpo lettingo dpo "$pairs" --base "$BASE" $DPO_ARGS --name "$NAME-dpo")
  dpo_export=$(stage export_dpo lettingo export "$dpo_adapter" --quant "$QUANT" --prompts 2 --name "$NAME-dpo")
  keep pairs "$pairs"; keep dpo_adapter "$dpo_adapter"; keep dpo_export "$dpo_export"
fi

echo "== the test users: base, sft, controls" >&2
base=$(stage gen_test_base lettingo gen --split "$split" --users test --generator "$WRITER" --n "$N_TEST" \
  --max-tokens "$MAX_TOKENS" --name "$NAME-test-base")
sft=$(stage gen_test_sft lettingo gen --split "$split" --users test --n "$N_TEST" --max-tokens "$MAX_TOKENS" \
  --generator "gguf:${export_ref#export:}?quant=$QUANT" --name "$NAME-test-sft")
swap=$(stage gen_test_swap lettingo gen --split "$split" --users test --generator "swap:${sft#profiles:}" \
  --name "$NAME-test-swap")
budget=$(lettingo store show "$base" --json | python3 -c \
  'import json, sys; print(max(1, round(next(iter(json.load(sys.stdin)["report"]["diversity"].values()))["mean_tokens"])))')
history=$(stage control_history lettingo gen --split "$split" --users test --generator "history-text?tokens=$budget" \
  --name "$NAME-test-history")
arms=(base sft swap history)
if [ "$DPO" = 1 ]; then
  dpo=$(stage gen_test_dpo lettingo gen --split "$split" --users test --n "$N_TEST" --max-tokens "$MAX_TOKENS" \
    --generator "gguf:${dpo_export#export:}?quant=$QUANT" --name "$NAME-test-dpo")
  dpo_swap=$(stage gen_test_dpo_swap lettingo gen --split "$split" --users test --generator "swap:${dpo#profiles:}" \
    --name "$NAME-test-dpo-swap")
  arms+=(dpo dpo_swap)
fi
for prompt in $PROMPTS; do  # prompt-only arms: what asking differently does without any training
  ref=$(stage "gen_test_prompt_$prompt" lettingo gen --split "$split" --users test --generator "$WRITER" --n "$N_TEST" \
    --max-tokens "$MAX_TOKENS" --prompt "$prompt" --name "$NAME-test-prompt-$prompt")
  declare "prompt_$prompt=$ref"  # a failed gen stops the script above (declare would hide its status)
  arms+=("prompt_$prompt")
done
for arm in "${arms[@]}"; do
  profiles="${!arm}"
  keep "eval_$arm" "$(stage "eval_$arm" lettingo eval "$profiles" --users test --targets 4 --name "$NAME-$arm")"
done
keep eval_none "$(stage eval_none lettingo eval --no-profile --split "$split" --users test --targets 4 \
  --name "$NAME-none")"
if [ -n "$SECOND" ]; then
  echo "== the second judge, which chose nothing: $SECOND" >&2
  SECOND="${SECOND/POOL/$pool_qwen}"
  for arm in "${arms[@]}"; do
    case "$arm" in swap | dpo_swap) continue ;; esac  # another user's profiles: the first judge's control
    keep "second_$arm" "$(stage "second_$arm" lettingo eval "${!arm}" --users test --targets 4 --predictor "$SECOND" \
      --name "$NAME-second-$arm")"
  done
  keep second_none "$(stage second_none lettingo eval --no-profile --split "$split" --users test --targets 4 \
    --predictor "$SECOND" --name "$NAME-second-none")"
fi

PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" python3 -m experiments.sft_pool_report --tag "$TAG" \
  --refs "$refs" --times "$times" --results "$RESULTS" --store "$STORE" \
  --setting "users=$USERS" --setting "test_users=$TEST_USERS" --setting "n=$N" --setting "n_test=$N_TEST" \
  --setting "max_tokens=$MAX_TOKENS" --setting "epochs=$EPOCHS" --setting "lr=$LR" \
  --setting "min_titles_found=$MIN_TITLES" --setting "max_stated_error=$STATED_ERROR" --setting "quant=$QUANT" \
  --setting "dpo=$DPO" --setting "dpo_args=$DPO_ARGS" --setting "second=$SECOND" --setting "prompts=$PROMPTS" \
  --setting "teacher=$TEACHER" --setting "teacher_args=$TEACHER_ARGS" --setting "writer=$WRITER" --setting "base=$BASE"
