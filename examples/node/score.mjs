// Score raw records with a fused model: features and model in one ONNX file, no Python, no DuckDB.
//
//   node score.mjs <bundle-dir> <records.json> [events.json]
//
// records.json is a JSON array of raw records, fields exactly as they land (timestamps as
// ISO-8601 strings). events.json holds the entity state the runtime looked up: for each entity
// of the bundle's manifest.entity_state, its events by entity key, as raw records
// ({"user": {"u_000042": [{...}, ...]}}), e.g. read from the online store. Without it every
// entity is new. Prints one JSON line per record with the model's outputs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";

const INT64_NULL = -(2n ** 63n);
const STRING_NULL = "\u0000";

function encode(records, fields) {
  // The fused graph's input convention: one [N] tensor per raw field, SQL NULL in-band.
  const feeds = {};
  for (const f of fields) {
    const values = records.map((r) => r[f.name] ?? null);
    if (f.type === "string") {
      feeds[f.name] = new ort.Tensor("string", values.map((v) => (v === null ? STRING_NULL : v)), [values.length]);
    } else if (f.type === "timestamp") {
      const micros = values.map((v) => (v === null ? INT64_NULL : epochMicros(v)));
      feeds[f.name] = new ort.Tensor("int64", BigInt64Array.from(micros), [values.length]);
    } else if (f.type === "double") {
      feeds[f.name] = new ort.Tensor("float64", Float64Array.from(values.map((v) => (v === null ? NaN : v))), [values.length]);
    } else if (f.type === "integer") {
      feeds[f.name] = new ort.Tensor("int64", BigInt64Array.from(values.map((v) => (v === null ? INT64_NULL : BigInt(v)))), [values.length]);
    } else {
      feeds[f.name] = new ort.Tensor("bool", Uint8Array.from(values.map((v) => (v ? 1 : 0))), [values.length]);
    }
  }
  return feeds;
}

function epochMicros(iso) {
  // Naive timestamps are UTC, as in the landing files; int64 microseconds since 1970, as DuckDB holds them.
  const utc = /[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`;
  const millis = Date.parse(utc);
  const fraction = /\.(\d+)/.exec(iso);
  const micros = fraction ? Number(fraction[1].padEnd(6, "0").slice(0, 6)) % 1000 : 0;
  return BigInt(millis) * 1000n + BigInt(micros);
}

function encodeMatrix(rows, field, width) {
  // [N, K] events of each row's entity (padding is masked out by the validity input).
  const n = rows.length;
  const flat = [];
  for (const events of rows) {
    for (let k = 0; k < width; k++) flat.push(k < events.length ? events[k][field.name] ?? null : null);
  }
  const one = encode(flat.map((v) => ({ [field.name]: v })), [field])[field.name];
  return new ort.Tensor(one.type, one.data, [n, width]);
}

function eventFeeds(records, manifest, state, wanted) {
  // Row i's events: its entity's looked-up events (those the request does not re-send), then the
  // request's records of the same entity, itself included: the graph's frames keep the past only.
  const feeds = {};
  const byName = Object.fromEntries(manifest.input_schema.map((f) => [f.name, f]));
  for (const spec of manifest.entity_state) {
    const held = state[spec.name] ?? {};
    const resent = new Set(records.map((r) => String(r[spec.event_key])));
    const rows = records.map((r) => {
      const key = r[spec.key] === null || r[spec.key] === undefined ? null : String(r[spec.key]);
      const stored = key === null ? [] : (held[key] ?? []).filter((e) => !resent.has(String(e[spec.event_key])));
      const peers = records.filter((p) => (p[spec.key] === null || p[spec.key] === undefined ? null : String(p[spec.key])) === key);
      return [...stored, ...peers];
    });
    const width = Math.max(1, ...rows.map((r) => r.length));
    for (const name of [spec.event_key, spec.time, ...spec.fields]) {
      const input = `${spec.relation}__${name}`;
      if (wanted.includes(input)) feeds[input] = encodeMatrix(rows, byName[name], width);
    }
    const valid = `${spec.relation}____valid`;
    if (wanted.includes(valid)) {
      feeds[valid] = new ort.Tensor("bool", Uint8Array.from(rows.flatMap((r) => [...Array(width)].map((_, k) => (k < r.length ? 1 : 0)))), [rows.length, width]);
    }
  }
  return feeds;
}

const [bundleDir, recordsPath, eventsPath] = process.argv.slice(2);
if (!bundleDir || !recordsPath) {
  console.error("usage: node score.mjs <bundle-dir> <records.json>");
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(bundleDir, "manifest.json"), "utf8"));
if (!manifest.fused) {
  console.error(`bundle has no fused model: ${manifest.fused_refused}`);
  process.exit(1);
}
const byName = Object.fromEntries(manifest.input_schema.map((f) => [f.name, f]));
const fields = manifest.fused.inputs.map((name) => byName[name]);
const session = await ort.InferenceSession.create(readFileSync(join(bundleDir, manifest.fused.file)));
const records = JSON.parse(readFileSync(recordsPath, "utf8"));
const state = eventsPath ? JSON.parse(readFileSync(eventsPath, "utf8")) : {};
const feeds = { ...encode(records, fields), ...eventFeeds(records, manifest, state, manifest.fused.event_inputs ?? []) };
const outputs = await session.run(feeds);
// Rows the graph marks "unsure" (DuckDB would raise, or a number is past float64's exact range)
// are scored by the SQL path in Python; this example has none to fall back to and says so.
if (outputs.unsure && outputs.unsure.data.some((u) => u)) {
  console.error("some records need the SQL path (the fused graph marked them unsure); score them with Python");
  process.exit(3);
}
const last = outputs[session.outputNames[session.outputNames.length - 1]];
const width = last.dims.length > 1 ? last.dims[1] : 1;
for (let i = 0; i < records.length; i++) {
  const row = Array.from(last.data.slice(i * width, (i + 1) * width));
  if (manifest.task === "binary") console.log(JSON.stringify({ score: row[1], label: row[1] >= manifest.threshold ? 1 : 0 }));
  else if (manifest.task === "regression") console.log(JSON.stringify({ prediction: row[0] }));
  else console.log(JSON.stringify({ probabilities: row }));
}
