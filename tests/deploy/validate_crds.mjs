// Validate prometheus-operator objects (ServiceMonitor, PrometheusRule, PodMonitor) against
// their CRD schemas, using @kubernetes-models/prometheus-operator.
//
// Usage: node validate_crds.mjs NODE_MODULES_DIR < docs.json
// stdin: a JSON array of objects (YAML documents converted by the caller; no YAML parser
// ships in the tools' node_modules). Prints one JSON line per object:
//   {"kind": ..., "name": ..., "ok": true} or {"kind": ..., "name": ..., "ok": false, "error": ...}
// and exits 1 when any object is invalid or of a kind this script does not know.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node validate_crds.mjs NODE_MODULES_DIR < docs.json");
  process.exit(2);
}
const entry = path.join(modules, "@kubernetes-models", "prometheus-operator", "monitoring.coreos.com", "v1", "index.js");
const v1 = await import(pathToFileURL(entry).href);
const models = {
  ServiceMonitor: v1.ServiceMonitor,
  PrometheusRule: v1.PrometheusRule,
  PodMonitor: v1.PodMonitor,
};

const docs = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(docs)) {
  console.error("stdin must be a JSON array of objects");
  process.exit(2);
}
let failed = 0;
for (const doc of docs) {
  const kind = doc?.kind;
  const name = doc?.metadata?.name ?? "";
  const Model = models[kind];
  let result;
  if (doc?.apiVersion !== "monitoring.coreos.com/v1" || !Model) {
    result = { kind, name, ok: false, error: `no CRD schema here for ${doc?.apiVersion} ${kind}` };
  } else {
    try {
      new Model(doc).validate();
      result = { kind, name, ok: true };
    } catch (err) {
      result = { kind, name, ok: false, error: String(err?.message ?? err) };
    }
  }
  if (!result.ok) failed += 1;
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
