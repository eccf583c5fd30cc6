#!/usr/bin/env bash
# The layer rule of DESIGN.md, checked: a file in a layer folder includes only project headers of
# its own layer or of the layers below it. Prints every include that points up or sideways and
# exits 1 when there is one. tools/ and tests/ sit on top and may include any layer.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A allowed=(
  [tensor]="tensor"
  [nn]="tensor nn"
  [vit]="tensor nn vit"
  [llm]="tensor nn llm"
  [internvl]="tensor nn vit llm internvl"
  [data]="tensor nn vit llm data"
  [mpo]="tensor nn vit llm internvl data mpo"
)
layers="${!allowed[*]}"

bad=0 checked=0
for layer in "${!allowed[@]}"; do
  [ -d "$layer" ] || continue
  while IFS= read -r -d '' file; do
    checked=$((checked + 1))
    while IFS= read -r line; do
      number=${line%%:*}
      target=$(sed -E 's/^[0-9]+:[[:space:]]*#[[:space:]]*include[[:space:]]+"([^/"]+)\/.*/\1/' <<<"$line")
      [[ " $layers tools tests " == *" $target "* ]] || continue  # not a project layer (a system path)
      if [[ " ${allowed[$layer]} " != *" $target "* ]]; then
        echo "$file:$number: $layer/ includes $target/ (allowed: ${allowed[$layer]})"
        bad=1
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^/"]+/' "$file" || true)
  done < <(find "$layer" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0)
done
if [ "$bad" -ne 0 ]; then
  echo "check_layers: includes must point down the layer order (DESIGN.md)"
  exit 1
fi
echo "check_layers: $checked files, every include points down the layer order"
