#!/usr/bin/env bash
# libsd.so exports only the public API: every exported symbol that names namespace sd is in it
# (a function, class member, vtable or typeinfo of sd::...), and each part of its qualified name
# is declared in the public headers (code, not comments). What else is exported is LibTorch's and
# libstdc++'s templates and inline functions instantiated in libsd, which the compiler keeps
# visible so that programs share them.
# Usage: check_exports.sh NM LIBRARY PUBLIC_HEADER_DIR
set -euo pipefail
nm_tool=$1 library=$2 headers=$3

symbols=$("$nm_tool" -D --defined-only -C "$library" | cut -d' ' -f3-)
ours=$(grep -F 'sd::' <<<"$symbols" || true)
prefix='((typeinfo|typeinfo name|vtable|VTT|guard variable) for )?'
status=0

outside=$(grep -v -E "^${prefix}sd::" <<<"$ours" || true)
if [[ -n "$outside" ]]; then
  echo "error: exported symbols that involve libsd's types outside namespace sd:"
  sed 's/^/  /' <<<"$outside"
  status=1
fi

# The identifiers of the public headers' code.
words=$(sed 's://.*$::' "$headers"/*.h | grep -oE '[A-Za-z_][A-Za-z_0-9]*' | sort -u)
in_sd=$(grep -E "^${prefix}sd::" <<<"$ours" || true)
undeclared=""
while IFS= read -r symbol; do
  [[ -z "$symbol" ]] && continue
  # "sd::Pipeline::load(std::string const&, ...)" -> Pipeline load
  qualified=$(sed -E "s/^${prefix}//; s/\[abi:[a-z0-9]+\]//g; s/[(<].*$//; s/ .*$//" <<<"$symbol")
  for part in $(sed 's/::/ /g' <<<"$qualified"); do
    part=${part#\~}
    [[ "$part" == operator* ]] && continue
    if ! grep -qxF -- "$part" <<<"$words"; then
      undeclared+="  $symbol  ('$part')"$'\n'
      break
    fi
  done
done <<<"$in_sd"
if [[ -n "$undeclared" ]]; then
  echo "error: libsd.so exports symbols that no public header declares:"
  printf '%s' "$undeclared"
  status=1
fi

count() { grep -c . <<<"$1" || true; }
echo "libsd.so exports $(count "$in_sd") symbols of namespace sd, $(( $(count "$symbols") - $(count "$ours") )) others" \
     "(LibTorch/libstdc++ instantiations); $(count "$outside") with libsd's types outside namespace sd"
exit $status
