# kube-apiserver 1.20 encodes a mutating webhook's JSON patch for its audit annotation with
# json-iterator, whose vendored reflect2 v1.0.1 iterates maps with the Go runtime's internal
# iterator layout of Go < 1.18. Built with Debian 12's Go 1.19 it faults ("unexpected fault
# address") on the first JSON patch, taking the API server down. Encode that annotation with the
# standard library instead (the same bytes: both sort map keys).
f=vendor/k8s.io/apiserver/pkg/admission/plugin/webhook/mutating/dispatcher.go
if ! grep -q 'tessera: stdlib JSON' "$f"; then
  sed -i \
    -e 's#^var encodingjson = json.CaseSensitiveJSONIterator()$#var encodingjson = stdlibJSON{} // tessera: stdlib JSON (scripts/cluster/patches)\n\ntype stdlibJSON struct{}\n\nfunc (stdlibJSON) Marshal(v interface{}) ([]byte, error) { return gojson.Marshal(v) }#' \
    -e 's#^import (#import (\n\tgojson "encoding/json"#' "$f"
  grep -q 'tessera: stdlib JSON' "$f" || { echo "patch of $f did not apply" >&2; exit 1; }
fi
