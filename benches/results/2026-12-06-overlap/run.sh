#!/usr/bin/env bash
# How the rows of this directory were made (BENCHMARKS.md, "What overlapping the leader's
# fsync would buy"). Build the experiment first, from a scratch worktree, never main:
#   git worktree add /tmp/exp HEAD && (cd /tmp/exp && git apply $PWD/benches/results/2026-12-06-overlap/experiment.patch \
#     && cargo build --release --bin raftsafe) && cp "$CARGO_TARGET_DIR/release/raftsafe" /tmp/raftsafe-exp
# One binary serves both arms: without the variable it is the code of main.
# A: the leader's log append synced (as shipped); B: unsynced on the leader only.
set -u
cd "$(dirname "$0")/../../.."
OUTBASE="${OUTBASE:-/tmp/ab-results}"; mkdir -p "$OUTBASE"
for r in 1 2 3; do
  for arm in A B; do
    if [ $arm = A ]; then
      env -u RAFTSAFE_EXPERIMENT_UNSYNCED_LEADER_LOG RAFTSAFE_BIN=/tmp/raftsafe-exp SYSTEMS="etcd raftsafe" REPEATS=1 DURATION=10 \
        CASES="put-leader-1 put-leader-64 put-follower-1 get-leader-64 get-follower-64" OUT="$OUTBASE/$arm$r" benches/compare.sh > "$OUTBASE/$arm$r.log" 2>&1
    else
      RAFTSAFE_EXPERIMENT_UNSYNCED_LEADER_LOG=1 RAFTSAFE_BIN=/tmp/raftsafe-exp SYSTEMS="etcd raftsafe" REPEATS=1 DURATION=10 \
        CASES="put-leader-1 put-leader-64 put-follower-1" OUT="$OUTBASE/$arm$r" benches/compare.sh > "$OUTBASE/$arm$r.log" 2>&1
    fi
    echo "$arm$r done rc=$? $(date +%T)"
  done
done
