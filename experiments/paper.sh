#!/usr/bin/env bash
# The LettinGo experiment end to end, as a user would chain lettingo commands, with the controls a reviewer asks
# for (issue 13). All arms are judged on the same test users and targets by the same frozen predictor:
#   round 1:   gen (train users) -> score -> pair -> dpo -> export
#   arms:      10H (no profile; eval also reports always-majority and recent-mean), base generator, aligned
#              generator, (a) the user's own history as text cut to the base profiles' mean length, (b) another
#              user's aligned profiles, the Qwen 1.5B writer as a reference (first QWEN_USERS test users)
#   checks:    a second predictor that chose no pairs re-scores base and aligned (SECOND; with RECENT=0 also no
#              profile and the history as text, which show whether it reads content at all)
#   round 2:   the aligned generator writes the train users' profiles -> score -> pair -> dpo --base export ->
#              export -> test profiles -> eval (ROUND2=1)
#   recipes:   (RECIPES=1, the default with RECENT=0; issue 38) a pool of writers: round 1's profiles and a
#              stronger TEACHER's for the same train users; recipes: the base writer with each of PROMPTS
#              (prompt-only), dpo on-policy (round 1), sft on the pool's best faithful profiles, dpo on off-policy
#              pairs from the pool (on the base writer's own prompt, + NLL on the chosen side), sft then dpo. Each
#              writes for VAL_USERS validation train users (no profile of theirs is in the pool); the best by
#              accuracy there, and the best prompt-only arm, then write for the test users with their controls
#              (another user's profiles of the best recipe, the second judge), and the TEACHER writes for the
#              first QWEN_USERS test users
#   report:    paper_report.py -> $RESULTS/$TAG.json and $TAG.md (lengths, answer distributions, length buckets,
#              label words, each stage's seconds; with RECIPES=1 `recipes` and `best_recipe`)
# Every stage is cached in the store: rerunning after a crash redoes only what is missing.
#
# Two protocols (RECENT): 10 is the paper's 10H + profile (the predictor also sees the 10 recent ratings); 0 is
# profile only (RLPF, DUET, LettinGo's released code: the profile is the user's whole representation). With
# RECENT=0 the judge is the trained reader (reader:bow, fitted once on all the split's train users), and the run
# adds the arms that protocol needs: no profile, the whole history as text, the stats template, and the 10H
# reference (a --recent 10 split of the same users, judged on the same targets by head:minilm without a profile).
#
# Knobs (environment variables; the defaults are the MovieLens 100K run, ~1.5 h on 2 cores):
#   RECENT       10: 10H + profile; 0: profile only    (10)
#   DATA         MovieLens folder (100K or a CSV release)  (../shared/data/movielens-100k)
#   STORE        the store for this run                (bench/results/$NAME-store/lettingo.db)
#   NAME         name of this experiment's artifacts   (paper: split:paper, adapter:paper, ...)
#   TAG          name of the results files             ($NAME -> $RESULTS/$TAG.json and $TAG.md)
#   RESULTS      where they go                         (bench/results)
#   USERS        train users that get profiles         (100)
#   SPLIT_TRAIN  train users in the split, the reader's training users (RECENT=10: $USERS; 0: all the others)
#   TEST_USERS   held-out test users                   (100)
#   TARGETS      held-out targets per user (split --targets; score and eval use all of them)  (4)
#   N            profiles per train user               (4)
#   N_TEST       profiles per test user and arm        (2)
#   MAX_TOKENS   tokens per profile                    (120)
#   GENERATOR    base generator                        (gemma-3-270m)
#   BASE         dpo --base (the generator as HF)      (gemma-3-270m)
#   PREDICTOR    frozen predictor                      (RECENT=10: head:minilm fitted on the train users' base
#                profiles; RECENT=0: reader:bow)
#   RULE         pair rule                             (best-worst: with 4 targets "all" needs a profile right on
#                most targets and another wrong on most, and the head predictor's answers rarely move with
#                the profile: on MovieLens 100K 64 of 100 users' 4 profiles got the same number right, and
#                "all" found no pair at all)
#   MAX_PAIRS    pairs per user                        (1)
#   LENGTH_RATIO pair --max-length-ratio (empty: none) ()
#   STATED_ERROR pair --max-stated-error (empty: none): a profile stating values ("4/5") whose mean is further
#                than this from its history's mean is never chosen ()
#   DPO_ARGS     extra dpo flags                       ("--beta 0.1 --lr 5e-5 --epochs 1 --max-length 1280": prompts
#                of 30 ratings reach ~1,030 tokens)
#   QUANT        the aligned arm's GGUF                (q8_0)
#   REFERENCE    the bigger writer (empty: skip)       (qwen2.5-1.5b)
#   QWEN_USERS   test users it writes for (1 profile)  (50)
#   SECOND       second predictor (empty: skip)        (RECENT=10: llm:gemma-3-270m; RECENT=0:
#                reader:bow?without=SCORES, the reader fitted without the users whose scores chose the pairs;
#                with RECENT=0 it also judges no profile and the history as text: its power to see content)
#                (TRAIN and SCORES in it name round 1's train profiles and their scores)
#   SECOND_TARGETS targets it judges per user          (RECENT=10: 2; RECENT=0: TARGETS)
#   ROUND2       1: run the second, on-policy round    (1)
#   N2           profiles per train user in round 2    (2)
#   GRPO_STEPS   >0: also the online route, `lettingo grpo` on the same train users for this many steps, its
#                export writing the test users' profiles as one more arm (0)
#   GRPO_ARGS    extra grpo flags                      ("--generations 4 --lr 1e-5")
#   RECIPES      1: the recipes above                  (RECENT=0: 1; RECENT=10: 0)
#   TEACHER      the pool's stronger writer            (qwen2.5-1.5b; ~15 s a profile on 2 cores)
#   TEACHER_ARGS its gen flags                         ("--prompt recent --n 1": copies the newest ratings)
#   PROMPTS      built-in prompts of the prompt-only recipes  (levels genres recent)
#   SFT_ARGS     sft flags                             ("--epochs 2 --lr 2e-4 --min-titles-found 0.8
#                --min-titles-named 1 --max-stated-error 0.5": only profiles that name at least one title of the
#                user's history and few others, with values near its mean; without --min-titles-named, 58 of the 74
#                profiles SFT took from sftpool's MovieLens 100K pool named no title, 46 of them the base writer's)
#   POOL_PAIR_ARGS pair flags of the off-policy pairs  ("--max-stated-error 0.5")
#   POOL_DPO_ARGS dpo flags on them                    ("$DPO_ARGS --sft-weight 1")
#   VAL_USERS    validation train users: train users USERS..USERS+VAL_USERS-1 by id  (50)
#   N_VAL        profiles per validation user          (2)
#   RECIPE_TEST  chosen: only the best recipe and the best prompt-only arm write for the test users; all: every
#                recipe does; a list of recipes: these too, as ablations (chosen)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
RECENT="${RECENT:-10}"
DATA="${DATA:-$here/../../shared/data/movielens-100k}"
NAME="${NAME:-paper}"
STORE="${STORE:-$here/../bench/results/$NAME-store/lettingo.db}"  # one store per experiment name
TAG="${TAG:-$NAME}"
RESULTS="${RESULTS:-$here/../bench/results}"
USERS="${USERS:-100}"
TEST_USERS="${TEST_USERS:-100}"
TARGETS="${TARGETS:-4}"
N="${N:-4}"
N_TEST="${N_TEST:-2}"
MAX_TOKENS="${MAX_TOKENS:-120}"
GENERATOR="${GENERATOR:-gemma-3-270m}"
BASE="${BASE:-gemma-3-270m}"
PREDICTOR="${PREDICTOR:-}"  # empty: head:minilm?profiles=<the train users' base profiles>, set below
RULE="${RULE:-best-worst}"
MAX_PAIRS="${MAX_PAIRS:-1}"
LENGTH_RATIO="${LENGTH_RATIO:-}"
STATED_ERROR="${STATED_ERROR:-}"
DPO_ARGS="${DPO_ARGS:---beta 0.1 --lr 5e-5 --epochs 1 --max-length 1280}"
QUANT="${QUANT:-q8_0}"
REFERENCE="${REFERENCE-qwen2.5-1.5b}"
QWEN_USERS="${QWEN_USERS:-50}"
if [ "$RECENT" = 0 ]; then SECOND="${SECOND-reader:bow?without=SCORES}"; else SECOND="${SECOND-llm:gemma-3-270m}"; fi
if [ "$RECENT" = 0 ]; then SECOND_TARGETS="${SECOND_TARGETS:-$TARGETS}"; else SECOND_TARGETS="${SECOND_TARGETS:-2}"; fi
ROUND2="${ROUND2:-1}"
N2="${N2:-2}"
GRPO_STEPS="${GRPO_STEPS:-0}"
GRPO_ARGS="${GRPO_ARGS:---generations 4 --lr 1e-5}"
if [ "$RECENT" = 0 ]; then RECIPES="${RECIPES:-1}"; else RECIPES="${RECIPES:-0}"; fi
TEACHER="${TEACHER:-qwen2.5-1.5b}"
TEACHER_ARGS="${TEACHER_ARGS---prompt recent --n 1}"
PROMPTS="${PROMPTS-levels genres recent}"
SFT_ARGS="${SFT_ARGS---epochs 2 --lr 2e-4 --min-titles-found 0.8 --min-titles-named 1 --max-stated-error 0.5}"
POOL_PAIR_ARGS="${POOL_PAIR_ARGS---max-stated-error 0.5}"
POOL_DPO_ARGS="${POOL_DPO_ARGS:-$DPO_ARGS --sft-weight 1}"
VAL_USERS="${VAL_USERS:-50}"
N_VAL="${N_VAL:-2}"
RECIPE_TEST="${RECIPE_TEST:-chosen}"

export LETTINGO_STORE="$STORE"
times="$RESULTS/$TAG.times"  # stage seconds, appended as stages finish (a resumed run adds its own lines)
if [ ! -e "$STORE" ]; then rm -f "$times"; fi  # a new store is a new run: an older run's seconds are not its own
mkdir -p "$(dirname "$STORE")" "$RESULTS"
refs="$RESULTS/$TAG.refs"    # ROLE=REF of every artifact the report reads
: > "$refs"

# stage NAME COMMAND... records each stage's seconds; keep ROLE REF each artifact the report reads
source "$here/stages.sh"
pair_controls=()  # the pair stage's length and faithfulness controls
if [ -n "$LENGTH_RATIO" ]; then pair_controls=(--max-length-ratio "$LENGTH_RATIO"); fi
if [ -n "$STATED_ERROR" ]; then pair_controls+=(--max-stated-error "$STATED_ERROR"); fi

echo "== ingest and split" >&2
dataset=$(stage ingest lettingo ingest movielens "$DATA")
if [ "$RECENT" = 0 ]; then SPLIT_TRAIN="${SPLIT_TRAIN-}"; else SPLIT_TRAIN="${SPLIT_TRAIN-$USERS}"; fi
split_train=()
if [ -n "$SPLIT_TRAIN" ]; then split_train=(--train-users "$SPLIT_TRAIN"); fi
split=$(stage split lettingo split "$dataset" --targets "$TARGETS" --recent "$RECENT" --history 30 \
  --test-users "$TEST_USERS" "${split_train[@]}" --name "$NAME")
keep dataset "$dataset"; keep split "$split"

echo "== round 1: profiles of the train users, scored and paired; dpo; export" >&2
train_profiles=$(stage gen_train lettingo gen --split "$split" --users "train:$USERS" --generator "$GENERATOR" --n "$N" \
  --max-tokens "$MAX_TOKENS" --name "$NAME-train")
# the predictor chosen by bench/predictor_accuracy.py: a head fitted on the train users with their base-generator
# profiles (out-of-fold: no user's profiles are scored by a head fitted on them), then frozen
if [ "$RECENT" = 0 ]; then
  PREDICTOR="${PREDICTOR:-reader:bow}"
else
  PREDICTOR="${PREDICTOR:-head:minilm?profiles=${train_profiles#profiles:}}"
fi
scores=$(stage score lettingo score "$train_profiles" --predictor "$PREDICTOR" --targets "$TARGETS")
SECOND="${SECOND/TRAIN/${train_profiles#profiles:}}"  # SECOND may name the train profiles (TRAIN) or their scores
SECOND="${SECOND/SCORES/$scores}"
pairs=$(stage pair lettingo pair "$scores" --rule "$RULE" --max-per-user "$MAX_PAIRS" "${pair_controls[@]}")
# shellcheck disable=SC2086  # DPO_ARGS is a list of flags
adapter=$(stage dpo lettingo dpo "$pairs" --base "$BASE" $DPO_ARGS --name "$NAME")
export_ref=$(stage export lettingo export "$adapter" --quant q8_0,q4_k_m --name "$NAME")
keep train_profiles "$train_profiles"; keep scores "$scores"; keep pairs "$pairs"; keep adapter "$adapter"
keep export "$export_ref"

echo "== test users: the arms" >&2
base_profiles=$(stage gen_test_base lettingo gen --split "$split" --users test --generator "$GENERATOR" \
  --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-base")
aligned_profiles=$(stage gen_test_aligned lettingo gen --split "$split" --users test \
  --generator "gguf:$export_ref?quant=$QUANT" --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-aligned")
# the controls, written by lettingo's own generators: (a) the history's newest whole lines within the base profiles'
# mean length (counted with the default model's tokenizer), (b) each user given the next user's aligned profiles
budget=$(lettingo store show "$base_profiles" --json | python3 -c \
  'import json, sys; print(max(1, round(next(iter(json.load(sys.stdin)["report"]["diversity"].values()))["mean_tokens"])))')
history_profiles=$(stage control_history lettingo gen --split "$split" --users test \
  --generator "history-text?tokens=$budget" --name "$NAME-test-history")
swapped_profiles=$(stage control_swap lettingo gen --split "$split" --users test \
  --generator "swap:$aligned_profiles" --name "$NAME-test-swapped")
keep base_profiles "$base_profiles"; keep aligned_profiles "$aligned_profiles"
keep history_profiles "$history_profiles"; keep swapped_profiles "$swapped_profiles"

evaluate() {  # evaluate ROLE [PROFILES]: one arm by the frozen predictor, on all TARGETS targets
  local role="$1" ref
  if [ $# -eq 1 ]; then
    ref=$(stage "eval_$role" lettingo eval --no-profile --split "$split" --predictor "$PREDICTOR" \
      --targets "$TARGETS" --name "$NAME-$role")
  else
    ref=$(stage "eval_$role" lettingo eval "$2" --predictor "$PREDICTOR" --targets "$TARGETS" --name "$NAME-$role")
  fi
  keep "eval_$role" "$ref"
}
if [ "$RECENT" = 0 ]; then
  # the protocol's own arms: no profile (eval also reports always-majority, item-mean and history-mean), the whole
  # profile history as text, the stats template
  full_history=$(stage control_history_full lettingo gen --split "$split" --users test --generator history-text \
    --name "$NAME-test-history-full")
  stats_profiles=$(stage control_stats lettingo gen --split "$split" --users test --generator stats-text \
    --name "$NAME-test-stats")
  keep history_full_profiles "$full_history"; keep stats_profiles "$stats_profiles"
  evaluate none
  evaluate history_full "$full_history"
  evaluate stats "$stats_profiles"
  # the reference line: the same users' same targets judged in the 10H protocol (head:minilm, no profile)
  ten_h_split=$(stage split_10h lettingo split "$dataset" --targets "$TARGETS" --recent 10 --history 30 \
    --test-users "$TEST_USERS" "${split_train[@]}" --name "$NAME-10h")
  ref=$(stage eval_10h lettingo eval --no-profile --split "$ten_h_split" --targets "$TARGETS" --name "$NAME-10h")
  keep split_10h "$ten_h_split"; keep eval_10h "$ref"
else
  evaluate 10h
fi
evaluate base "$base_profiles"
evaluate aligned "$aligned_profiles"
evaluate history "$history_profiles"
evaluate swapped "$swapped_profiles"
lettingo eval --compare "eval:$NAME-aligned" --compare "eval:$NAME-base"

if [ -n "$REFERENCE" ]; then
  echo "== the bigger writer: $REFERENCE, first $QWEN_USERS test users" >&2
  reference_profiles=$(stage gen_reference lettingo gen --split "$split" --users "test:$QWEN_USERS" \
      --generator "$REFERENCE" --n 1 \
      --max-tokens "$MAX_TOKENS" --name "$NAME-test-reference")
  keep reference_profiles "$reference_profiles"
  evaluate reference "$reference_profiles"
fi

judge_again() {  # judge_again ROLE [PROFILES]: one arm by the second predictor, which chose no pairs
  local ref
  if [ $# -eq 1 ]; then
    ref=$(stage "second_$1" lettingo eval --no-profile --split "$split" --predictor "$SECOND" \
      --targets "$SECOND_TARGETS" --name "$NAME-second-$1")
  else
    ref=$(stage "second_$1" lettingo eval "$2" --predictor "$SECOND" --targets "$SECOND_TARGETS" \
      --name "$NAME-second-$1")
  fi
  keep "second_$1" "$ref"
}
if [ -n "$SECOND" ]; then
  echo "== a second predictor that chose no pairs: $SECOND" >&2
  if [ "$RECENT" = 0 ]; then  # its power: does it read content at all (the history as text - no profile)?
    judge_again none
    judge_again history "$history_profiles"
    judge_again history_full "$full_history"
  fi
  judge_again base "$base_profiles"
  judge_again aligned "$aligned_profiles"
fi

if [ "$RECIPES" = 1 ]; then
  echo "== the recipes: a pool of writers ($GENERATOR, $TEACHER), chosen on validation train users" >&2
  # the pool: round 1's profiles of the train users (the base writer, N each) and the teacher's of the same users
  # shellcheck disable=SC2086  # the *_ARGS are lists of flags
  teacher=$(stage gen_pool_teacher lettingo gen --split "$split" --users "train:$USERS" --generator "$TEACHER" \
    $TEACHER_ARGS --max-tokens "$MAX_TOKENS" --name "$NAME-pool-teacher")
  teacher_scores=$(stage score_pool_teacher lettingo score "$teacher" --predictor "$PREDICTOR" --targets "$TARGETS")
  pool=("$scores" "$teacher_scores")
  # shellcheck disable=SC2086
  sft_adapter=$(stage sft lettingo sft "${pool[@]}" --base "$BASE" $SFT_ARGS --name "$NAME-sft")
  sft_export=$(stage export_sft lettingo export "$sft_adapter" --quant "$QUANT" --prompts 2 --name "$NAME-sft")
  # off-policy pairs: whoever wrote each side, every pair goes onto the base writer's own prompt
  # shellcheck disable=SC2086
  pool_pairs=$(stage pair_pool lettingo pair "${pool[@]}" --for "$GENERATOR" --rule "$RULE" \
    --max-per-user "$MAX_PAIRS" $POOL_PAIR_ARGS --name "$NAME-pool")
  # shellcheck disable=SC2086
  pool_adapter=$(stage dpo_pool lettingo dpo "$pool_pairs" --base "$BASE" $POOL_DPO_ARGS --name "$NAME-dpo-pool")
  pool_export=$(stage export_dpo_pool lettingo export "$pool_adapter" --quant "$QUANT" --prompts 2 \
    --name "$NAME-dpo-pool")
  # sft then dpo: the same pairs, from the SFT writer (its checkpoint is also the reference model)
  # shellcheck disable=SC2086
  sft_dpo_adapter=$(stage dpo_sft lettingo dpo "$pool_pairs" --base "export:${sft_export#export:}" $POOL_DPO_ARGS \
    --name "$NAME-sft-dpo")
  sft_dpo_export=$(stage export_sft_dpo lettingo export "$sft_dpo_adapter" --quant "$QUANT" --prompts 2 \
    --name "$NAME-sft-dpo")
  keep teacher_profiles "$teacher"; keep teacher_scores "$teacher_scores"; keep sft_adapter "$sft_adapter"
  keep sft_export "$sft_export"; keep pool_pairs "$pool_pairs"; keep pool_adapter "$pool_adapter"
  keep pool_export "$pool_export"; keep sft_dpo_adapter "$sft_dpo_adapter"; keep sft_dpo_export "$sft_dpo_export"

  # each recipe is a writer (a generator spec) and its gen flags; the base writer is the validation's reference
  declare -A writer=([base]="$GENERATOR" [dpo]="gguf:${export_ref#export:}?quant=$QUANT"
    [sft]="gguf:${sft_export#export:}?quant=$QUANT" [dpo_pool]="gguf:${pool_export#export:}?quant=$QUANT"
    [sft_dpo]="gguf:${sft_dpo_export#export:}?quant=$QUANT")
  declare -A flags=()
  recipes=()
  prompt_recipes=()
  for prompt in $PROMPTS; do
    writer[prompt_$prompt]="$GENERATOR"; flags[prompt_$prompt]="--prompt $prompt"
    recipes+=("prompt_$prompt"); prompt_recipes+=("prompt_$prompt")
  done
  recipes+=(dpo sft dpo_pool sft_dpo)

  echo "== the recipes on $VAL_USERS validation train users (in no pair, no SFT example)" >&2
  validation="train:$USERS:$((USERS + VAL_USERS))"
  for recipe in base "${recipes[@]}"; do
    # shellcheck disable=SC2086  # flags[...] is a list of flags
    profiles=$(stage "val_gen_$recipe" lettingo gen --split "$split" --users "$validation" \
      --generator "${writer[$recipe]}" ${flags[$recipe]:-} --n "$N_VAL" --max-tokens "$MAX_TOKENS" \
      --name "$NAME-val-$recipe")
    # train users are judged by the reader's networks that never saw them (its out-of-fold networks)
    ref=$(stage "val_eval_$recipe" lettingo eval "$profiles" --users train --predictor "$PREDICTOR" \
      --targets "$TARGETS" --name "$NAME-val-$recipe")
    keep "val_$recipe" "$ref"
  done
  choose() { PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" python3 -m experiments.recipes --refs "$refs" "$@"; }
  best=$(choose "${recipes[@]}")
  best_prompt=$(choose "${prompt_recipes[@]}")
  echo "chosen on validation users: $best (best prompt-only: $best_prompt)" >&2
  keep best_recipe "$best"; keep best_prompt_recipe "$best_prompt"

  echo "== the chosen recipes on the test users, with their controls" >&2
  case "$RECIPE_TEST" in
    all) tested=("${recipes[@]}") ;;
    chosen) tested=("$best" "$best_prompt") ;;
    *) read -ra extra <<< "$RECIPE_TEST"; tested=("$best" "$best_prompt" "${extra[@]}") ;;  # ablations as well
  esac
  for recipe in "${tested[@]}"; do
    if [ -z "${writer[$recipe]+set}" ]; then echo "RECIPE_TEST: no recipe $recipe (${recipes[*]})" >&2; exit 2; fi
  done
  for recipe in $(printf '%s\n' "${tested[@]}" | awk '!seen[$0]++'); do
    if [ "$recipe" = dpo ]; then
      profiles="$aligned_profiles"  # on-policy dpo is round 1's aligned writer: its test profiles exist
    else
      # shellcheck disable=SC2086
      profiles=$(stage "gen_test_$recipe" lettingo gen --split "$split" --users test --generator "${writer[$recipe]}" \
        ${flags[$recipe]:-} --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-$recipe")
    fi
    keep "recipe_profiles_$recipe" "$profiles"
    evaluate "recipe_$recipe" "$profiles"
    if [ -n "$SECOND" ]; then judge_again "recipe_$recipe" "$profiles"; fi
    if [ "$recipe" = "$best" ]; then
      swapped=$(stage control_swap_best lettingo gen --split "$split" --users test --generator "swap:$profiles" \
        --name "$NAME-test-$recipe-swapped")
      keep best_swapped_profiles "$swapped"
      evaluate best_swapped "$swapped"
    fi
  done
  # the teacher with its prompt on the first test users: a recipe that only matches it is distillation
  # shellcheck disable=SC2086
  teacher_test=$(stage gen_test_teacher lettingo gen --split "$split" --users "test:$QWEN_USERS" \
    --generator "$TEACHER" $TEACHER_ARGS --max-tokens "$MAX_TOKENS" --name "$NAME-test-teacher")
  keep teacher_test_profiles "$teacher_test"
  evaluate teacher "$teacher_test"
fi

if [ "$ROUND2" = 1 ]; then
  echo "== round 2, on policy: the aligned generator writes the train users' profiles" >&2
  train2=$(stage gen_train_r2 lettingo gen --split "$split" --users "train:$USERS" \
    --generator "gguf:$export_ref?quant=$QUANT" --n "$N2" --max-tokens "$MAX_TOKENS" --name "$NAME-r2-train")
  scores2=$(stage score_r2 lettingo score "$train2" --predictor "$PREDICTOR" --targets "$TARGETS")
  pairs2=$(stage pair_r2 lettingo pair "$scores2" --rule "$RULE" --max-per-user "$MAX_PAIRS" "${pair_controls[@]}")
  # shellcheck disable=SC2086
  adapter2=$(stage dpo_r2 lettingo dpo "$pairs2" --base "export:${export_ref#export:}" $DPO_ARGS --name "$NAME-r2")
  export2=$(stage export_r2 lettingo export "$adapter2" --quant q8_0,q4_k_m --name "$NAME-r2")
  r2_profiles=$(stage gen_test_r2 lettingo gen --split "$split" --users test \
    --generator "gguf:$export2?quant=$QUANT" --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-r2")
  swapped_r2=$(stage control_swap_r2 lettingo gen --split "$split" --users test --generator "swap:$r2_profiles" \
    --name "$NAME-test-swapped-r2")
  keep train2_profiles "$train2"; keep scores2 "$scores2"; keep pairs2 "$pairs2"; keep adapter2 "$adapter2"
  keep export2 "$export2"; keep r2_profiles "$r2_profiles"; keep swapped_r2_profiles "$swapped_r2"
  evaluate r2 "$r2_profiles"
  evaluate swapped_r2 "$swapped_r2"
  if [ -n "$SECOND" ]; then judge_again r2 "$r2_profiles"; fi
fi

if [ "$GRPO_STEPS" -gt 0 ]; then
  echo "== the online route: grpo on the same train users, the same judge" >&2
  # shellcheck disable=SC2086  # GRPO_ARGS is a list of flags
  grpo_adapter=$(stage grpo lettingo grpo "$split" --users "train:$USERS" --predictor "$PREDICTOR" \
    --targets "$TARGETS" --max-tokens "$MAX_TOKENS" --max-steps "$GRPO_STEPS" --base "$BASE" $GRPO_ARGS \
    --name "$NAME-grpo")
  grpo_export=$(stage export_grpo lettingo export "$grpo_adapter" --quant q8_0,q4_k_m --name "$NAME-grpo")
  grpo_profiles=$(stage gen_test_grpo lettingo gen --split "$split" --users test \
    --generator "gguf:$grpo_export?quant=$QUANT" --n "$N_TEST" --max-tokens "$MAX_TOKENS" --name "$NAME-test-grpo")
  keep grpo_adapter "$grpo_adapter"; keep grpo_export "$grpo_export"; keep grpo_profiles "$grpo_profiles"
  evaluate grpo "$grpo_profiles"
  if [ -n "$SECOND" ]; then judge_again grpo "$grpo_profiles"; fi
fi

PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" python3 -m experiments.paper_report --tag "$TAG" --times "$times" --refs "$refs" --results "$RESULTS" \
  --setting "data=$(basename "$DATA")" --setting "users=$USERS" --setting "test_users=$TEST_USERS" \
  --setting "recent=$RECENT" --setting "split_train=$SPLIT_TRAIN" \
  --setting "targets=$TARGETS" --setting "n=$N" --setting "n_test=$N_TEST" --setting "max_tokens=$MAX_TOKENS" \
  --setting "generator=$GENERATOR" --setting "base=$BASE" --setting "predictor=$PREDICTOR" --setting "rule=$RULE" \
  --setting "max_pairs=$MAX_PAIRS" --setting "length_ratio=$LENGTH_RATIO" --setting "stated_error=$STATED_ERROR" \
  --setting "quant=$QUANT" \
  --setting "dpo_args=$DPO_ARGS" --setting "reference=$REFERENCE" --setting "qwen_users=$QWEN_USERS" \
  --setting "second=$SECOND" --setting "second_targets=$SECOND_TARGETS" --setting "round2=$ROUND2" --setting "n2=$N2" \
  --setting "grpo_steps=$GRPO_STEPS" --setting "grpo_args=$GRPO_ARGS" --setting "recipes=$RECIPES" \
  --setting "teacher=$TEACHER" --setting "teacher_args=$TEACHER_ARGS" --setting "prompts=$PROMPTS" \
  --setting "sft_args=$SFT_ARGS" --setting "pool_pair_args=$POOL_PAIR_ARGS" --setting "pool_dpo_args=$POOL_DPO_ARGS" \
  --setting "val_users=$VAL_USERS" --setting "n_val=$N_VAL" --setting "recipe_test=$RECIPE_TEST"
