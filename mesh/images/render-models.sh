#!/bin/sh
# Renders the model repository into an image, as switchboard.inference.triton_launch.prepare()
# does for the local mesh: ${EXECUTION_ENV_PATH} becomes the image's models-env.
#   render-models.sh SOURCE TARGET ENV_PATH cpu|gpu KEEP_TEST_MODELS(true|false)
# gpu: SmolLM2's instance goes on the GPU with every layer offloaded (docs/models.md); the ONNX
# models stay on the CPU. Without KEEP_TEST_MODELS the test-* models are left out; the
# inference service's canary skips routes whose models the repository does not hold.
set -eu
[ $# -eq 5 ] || { echo "usage: $0 SOURCE TARGET ENV_PATH cpu|gpu KEEP_TEST_MODELS" >&2; exit 2; }
source=$1 target=$2 env_path=$3 variant=$4 keep_test_models=$5

mkdir -p "$target"
cp -R "$source"/. "$target"/
find "$target" -name __pycache__ -prune -exec rm -rf {} +
find "$target" -name '*.pyc' -exec rm -f {} +
case $keep_test_models in
  true) ;;
  false) rm -rf "$target"/test-* ;;
  *) echo "KEEP_TEST_MODELS must be true or false, not '$keep_test_models'" >&2; exit 2 ;;
esac
for config in "$target"/*/config.pbtxt; do
  sed -i "s|\${EXECUTION_ENV_PATH}|$env_path|g" "$config"
done

smollm2=$target/smollm2-135m-instruct/config.pbtxt
case $variant in
  cpu) ;;
  gpu)
    sed -i 's/kind: KIND_CPU/kind: KIND_GPU/' "$smollm2"
    sed -i '/key: "N_GPU_LAYERS"/{n;s/string_value: "0"/string_value: "-1"/;}' "$smollm2"
    grep -q 'kind: KIND_GPU' "$smollm2" && grep -q 'string_value: "-1"' "$smollm2" || {
      echo "could not put $smollm2 on the GPU: its instance_group or N_GPU_LAYERS changed" >&2
      exit 1
    }
    ;;
  *) echo "variant must be cpu or gpu, not '$variant'" >&2; exit 2 ;;
esac
if grep -l '${EXECUTION_ENV_PATH}' "$target"/*/config.pbtxt; then
  echo "placeholders left in the configs above" >&2
  exit 1
fi
