#!/bin/sh
# Trains with dcms-trainer-cli, then recomputes the held-out accuracy from the
# safetensors file with training/check_model.py (stdlib Python) and compares
# it with the accuracy the trainer reported.
# usage: check_model_test.sh DCMS_TRAINER_CLI PYTHON3 SOURCE_DIR
set -eu
cli=$1 py=$2 src=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
csv=$src/tests/data/breast_cancer.csv
run() { # name config-json
    printf '%s' "$2" >"$tmp/$1.json"
    "$cli" --csv "$csv" --config "$tmp/$1.json" --out "$tmp/$1.safetensors" \
        --metrics "$tmp/$1.metrics.json" --quiet >"$tmp/$1.out"
    reported=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$tmp/$1.metrics.json")
    checked=$("$py" "$src/training/check_model.py" "$tmp/$1.safetensors" "$csv" diagnosis 5 4)
    echo "$1: reported $reported, check_model.py $checked"
    "$py" -c 'import json,sys; c=json.loads(sys.argv[2]); r=float(sys.argv[1]);
assert c["rows"] == 113, c; assert abs(c["accuracy"] - r) < 1e-9, (r, c)' "$reported" "$checked"
}
run logistic '{"label":"diagnosis","split":{"method":"modulo","folds":5,"holdout_fold":4},"model":"logistic_regression","optimizer":"sgd","epochs":1000,"batch_size":0,"learning_rate":0.1,"l2":0,"seed":1,"metadata":{"contract_id":"c","training_id":"t"}}'
run mlp '{"label":"diagnosis","split":{"method":"modulo","folds":5,"holdout_fold":4},"model":"mlp","hidden":[16],"optimizer":"sgd","epochs":500,"learning_rate":0.1,"seed":7,"dtype":"F32"}'
run mlp2 '{"label":"diagnosis","split":{"method":"modulo","folds":5,"holdout_fold":4},"model":"mlp","hidden":[8,4],"optimizer":"adam","epochs":30,"batch_size":32,"learning_rate":0.01,"seed":2}'
run dp '{"label":"diagnosis","split":{"method":"modulo","folds":5,"holdout_fold":4},"model":"logistic_regression","optimizer":"sgd","epochs":20,"batch_size":64,"learning_rate":0.5,"dp":{"noise_multiplier":1.0,"max_grad_norm":1.0}}'
# A fixed DP seed is refused outside a test build.
printf '%s' '{"label":"diagnosis","batch_size":64,"dp":{"noise_multiplier":1,"max_grad_norm":1},"test_seed":1}' >"$tmp/seed.json"
if "$cli" --csv "$csv" --config "$tmp/seed.json" --out "$tmp/s.safetensors" 2>"$tmp/seed.err"; then
    echo "test_seed accepted by a release build" >&2
    exit 1
fi
grep -q "accepted only by a test build" "$tmp/seed.err"
echo ok
