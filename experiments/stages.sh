# Sourced by the experiment scripts (paper.sh, sft_pool.sh), which set $times and $refs first.
# stage NAME COMMAND...: run a command, append "NAME START END" to $times, print its stdout (the new reference)
stage() {
  local name="$1"; shift
  local start end
  start=$(date +%s.%N)
  "$@" || return  # a failed command fails the script (set -e does not reach into $(...))
  end=$(date +%s.%N)
  echo "$name $start $end" >> "$times"
}
# keep ROLE REF: remember an artifact for the report
keep() { echo "$1=$2" >> "$refs"; }
