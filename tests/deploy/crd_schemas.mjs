// Validates Kubernetes objects of CRD kinds (Gateway API, KEDA, Prometheus Operator) against the CRDs' own
// OpenAPI schemas, as carried by the @kubernetes-models/* npm packages (MACHINE.md §17).
//   node tests/deploy/crd_schemas.mjs <folder holding node_modules/@kubernetes-models> < objects.json
// stdin: a JSON list of objects. stdout: a JSON list, one entry per object: {kind, name, error} (error null
// when valid). An object of a kind this file does not know is an error too, never passed over.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const MODELS = {
  "gateway.networking.k8s.io/v1": ["@kubernetes-models/gateway-api", "gateway.networking.k8s.io/v1"],
  "keda.sh/v1alpha1": ["@kubernetes-models/keda", "keda.sh/v1alpha1"],
  "monitoring.coreos.com/v1": ["@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1"],
};

const root = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const name = object?.metadata?.name ?? "";
  const found = MODELS[object.apiVersion];
  let error = null;
  if (!found) {
    error = `no schema here for ${object.apiVersion}`;
  } else {
    const file = join(root, "node_modules", found[0], found[1], `${object.kind}.js`);
    try {
      const module = await import(pathToFileURL(file).href);
      new module[object.kind](object).validate();  // throws the first schema violations
    } catch (e) {
      error = e.code === "ERR_MODULE_NOT_FOUND" ? `no schema here for ${object.apiVersion} ${object.kind}` : e.message;
    }
  }
  results.push({ kind: object.kind, name, error });
}
process.stdout.write(JSON.stringify(results));
