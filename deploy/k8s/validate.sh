#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/k8s/ without a cluster:
#   1. kubernetes-validate --strict (PyPI; it bundles the Kubernetes schemas, so it works
#      offline once installed): every resource against the Kubernetes 1.37 schema, unknown
#      fields are errors;
#   2. check-jobs.py: what the schema cannot see (it has no enums: `completionMode: Bogus`
#      passes it): Indexed, completions == N of --shard I/N, the parts on a shared claim;
#   3. that both checks can fail: broken copies of the manifests must be rejected;
#   4. with BINARY: the pods' commands, run here as the Job controller would run them, and the
#      merge compared byte for byte with one whole run (see check-jobs.py).
#
#   bash deploy/k8s/validate.sh [BINARY]
#
# kubernetes-validate is installed once into a venv, $KUBERNETES_VALIDATE_VENV (default
# /tmp/udprange-kubernetes-validate), with python3 -m venv and pip.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=1.37.0
venv=${KUBERNETES_VALIDATE_VENV:-/tmp/udprange-kubernetes-validate}
binary=${1:-}
say() { printf '[k8s-validate] %s\n' "$*"; }
fail() {
    printf '[k8s-validate] FAIL: %s\n' "$*" >&2
    exit 1
}
[[ $# -le 1 ]] || fail "usage: bash deploy/k8s/validate.sh [BINARY]"
[[ -z $binary || -x $binary ]] || fail "'$binary' is not an executable file"

validator=$venv/bin/kubernetes-validate
if [[ $("$validator" --version 2>/dev/null) != "$version" ]]; then
    say "installing kubernetes-validate $version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" ||
        fail "pip install kubernetes-validate==$version failed"
fi
python=$venv/bin/python

manifests=("$here"/*.yaml)
say "kubernetes-validate --strict (Kubernetes $version schemas): ${manifests[*]##*/}"
"$validator" --strict "${manifests[@]}" || fail "the manifests do not validate"
"$python" "$here/check-jobs.py" "$here" || fail "check-jobs.py rejects the manifests"

# The checks must be able to fail: each broken copy must be rejected by the check named.
tmp=$(mktemp -d /tmp/udprange-k8s-validate.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
broken() { # check description sed-expression
    local check=$1 what=$2 expr=$3 dir=$tmp/$RANDOM
    mkdir "$dir"
    cp "$here"/*.yaml "$dir/"
    sed -i "$expr" "$dir/simulate-indexed-job.yaml"
    if cmp -s "$here/simulate-indexed-job.yaml" "$dir/simulate-indexed-job.yaml"; then
        fail "the edit '$expr' for '$what' changed nothing"
    fi
    local rejected=true
    case $check in
    schema) "$validator" --strict --quiet "$dir/simulate-indexed-job.yaml" >"$dir/out" 2>&1 && rejected=false ;;
    check-jobs) "$python" "$here/check-jobs.py" "$dir" >"$dir/out" 2>&1 && rejected=false ;;
    esac
    $rejected || fail "a broken manifest ($what) passed the $check check"
    say "rejected by the $check check, as it should be: $what: $(grep -m1 -E "ERROR|FAIL" "$dir/out" | sed -E "s/.*(against version [0-9.]+|FAIL): //" | cut -c1-110)"
}
broken schema "a misspelled field (paralelism)" 's/^  parallelism:/  paralelism:/'
broken schema "a string for completions" 's/^  completions: 16/  completions: "16"/'
broken check-jobs "completionMode: Bogus (the schema passes it)" 's/completionMode: Indexed/completionMode: Bogus/'
broken check-jobs "completions 8 against --shard I/16" 's/^  completions: 16/  completions: 8/'

if [[ -n $binary ]]; then
    "$python" "$here/check-jobs.py" "$here" "$binary" || fail "the pods' commands, run here, failed"
fi
say "PASS"
