#!/usr/bin/env bash
# The LettinGo experiment end to end, as a user would chain lettingo commands:
#   ingest -> split -> gen (train users) -> score -> pair -> dpo -> export -> gen (test users, base and aligned)
#   -> eval (10H, base, aligned) -> eval --compare aligned base -> results JSON + markdown.
# Every stage is cached in the store: rerunning after a crash redoes only what is missing.
#
# Knobs (environment variables; defaults run the full experiment on MovieLens 100K, about an hour on 2 cores):
#   DATA        MovieLens 100K folder                 (../shared/data/movielens-100k)
#   STORE       the store for this run                (bench/results/paper-store/lettingo.db)
#   NAME        name of this experiment's artifacts   (paper: split:paper, adapter:paper, ...)
#   TAG         name of the results files             ($NAME -> $RESULTS/$TAG.json and $TAG.md); give each
#               try its own TAG and keep NAME: stages whose inputs did not change are reused from the store
#   RESULTS     where they go                         (bench/results)
#   USERS       train users that get profiles         (120)
#   TEST_USERS  held-out test users                   (100)
#   N           profiles per train user               (4)
#   N_TEST      profiles per test user and arm        (2)
#   MAX_TOKENS  tokens per profile                    (120)
#   GENERATOR   base generator                        (gemma-3-270m)
#   BASE        dpo --base (the generator as HF)      (gemma-3-270m)
#   PREDICTOR   frozen predictor                      (head:minilm fitted on the train users' base profiles)
#   RULE        pair rule                             (all)
#   MAX_PAIRS   pairs per user                        (2)
#   DPO_ARGS    extra dpo flags                       ("--beta 0.1 --lr 5e-5 --epochs 1")
#   QUANT       the aligned arm's GGUF                (q8_0)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
DATA="${DATA:-$here/../../shared/data/movielens-100k}"
STORE="${STORE:-$here/results/paper-store/lettingo.db}"
NAME="${NAME:-paper}"
TAG="${TAG:-$NAME}"
RESULTS="${RESULTS:-$here/results}"
USERS="${USERS:-120}"
TEST_USERS="${TEST_USERS:-100}"
N="${N:-4}"
N_TEST="${N_TEST:-2}"
MAX_TOKENS="${MAX_TOKENS:-120}"
GENERATOR="${GENERATOR:-gemma-3-270m}"
BASE="${BASE:-gemma-3-270m}"
PREDICTOR="${PREDICTOR:-}"  # empty: head:minilm?profiles=<the train users' base profiles>, set below
RULE="${RULE:-all}"
MAX_PAIRS="${MAX_PAIRS:-2}"
DPO_ARGS="${DPO_ARGS:---beta 0.1 --lr 5e-5 --epochs 1}"
QUANT="${QUANT:-q8_0}"

export LETTINGO_STORE="$STORE"
mkdir -p "$(dirname "$STORE")"
times="$(mktemp)"
trap 'rm -f "$times"' EXIT

# stage NAME COMMAND...: run a lettingo command, record its seconds, print its stdout (the new reference)
stage() {
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$@" || return  # a failed command fails the script (set -e does not reach into $(...))
  end=$(date +%s.%N)
  echo "$name $start $end" >> "$times"
}

echo "== ingest and split" >&2
dataset=$(stage ingest lettingo ingest movielens "$DATA")
split=$(stage split lettingo split "$dataset" --targets 1 --recent 10 --history 30 \
  --test-users "$TEST_USERS" --train-users "$USERS" --name "$NAME")

echo "== profiles of the train users, scored and paired" >&2
train_profiles=$(stage gen_train lettingo gen --split "$split" --users train --generator "$GENERATOR" --n "$N" \
  --max-tokens "$MAX_TOKENS" --name "$NAME-train")
# the predictor chosen by bench/predictor_accuracy.py: a head fitted on the train users with their base-generator
# profiles (out-of-fold: no user's profiles are scored by a head fitted on them), then frozen
PREDICTOR="${PREDICTOR:-head:minilm?profiles=${train_profiles#profiles:}}"
scores=$(stage score lettingo score "$train_profiles" --predictor "$PREDICTOR")
pairs=$(stage pair lettingo pair "$scores" --rule "$RULE" --max-per-user "$MAX_PAIRS")

echo "== alignment: dpo, export" >&2
# shellcheck disable=SC2086  # DPO_ARGS is a list of flags
adapter=$(stage dpo lettingo dpo "$pairs" --base "$BASE" $DPO_ARGS --name "$NAME")
export_ref=$(stage export lettingo export "$adapter" --quant q8_0,q4_k_m --name "$NAME")

echo "== test users: base and aligned profiles, evaluated with the same predictor" >&2
base_profiles=$(stage gen_test_base lettingo gen --split "$split" --users test --generator "$GENERATOR" \
  --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-base")
aligned_profiles=$(stage gen_test_aligned lettingo gen --split "$split" --users test \
  --generator "gguf:$export_ref?quant=$QUANT" --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-aligned")
eval_10h=$(stage eval_10h lettingo eval --no-profile --split "$split" --predictor "$PREDICTOR" --name "$NAME-10h")
eval_base=$(stage eval_base lettingo eval "$base_profiles" --predictor "$PREDICTOR" --name "$NAME-base")
eval_aligned=$(stage eval_aligned lettingo eval "$aligned_profiles" --predictor "$PREDICTOR" --name "$NAME-aligned")
lettingo eval --compare "$eval_aligned" --compare "$eval_base"

python3 "$here/paper_report.py" --tag "$TAG" --times "$times" --results "$RESULTS" \
  --setting "users=$USERS" --setting "test_users=$TEST_USERS" --setting "n=$N" --setting "n_test=$N_TEST" \
  --setting "max_tokens=$MAX_TOKENS" --setting "generator=$GENERATOR" --setting "base=$BASE" \
  --setting "predictor=$PREDICTOR" --setting "rule=$RULE" --setting "max_pairs=$MAX_PAIRS" --setting "quant=$QUANT" \
  --setting "dpo_args=$DPO_ARGS" \
  dataset="$dataset" split="$split" train_profiles="$train_profiles" scores="$scores" pairs="$pairs" \
  adapter="$adapter" export="$export_ref" base_profiles="$base_profiles" aligned_profiles="$aligned_profiles" \
  eval_10h="$eval_10h" eval_base="$eval_base" eval_aligned="$eval_aligned"
