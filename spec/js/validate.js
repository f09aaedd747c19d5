// Validation of dictionary and record batch messages (spec/FORMAT.md §1.7), independent of arrow-js, which
// checks none of this: before decoding, the body (buffer bounds, codec, decompressed sizes) and the layout
// (one field node per column, the buffers its type prescribes, node lengths); after decoding, the data
// (buffers long enough, offsets, UTF-8, dictionary indices, nulls, reduction values). Every column is
// checked, whichever a reader returns.

import { CompressionType, Type } from 'apache-arrow';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { CODECS } from './codecs.js';
import { COLUMNS } from './columns.js';
import { LossFormatError } from './framing.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const FIXED = new Set([Type.Bool, Type.Int, Type.Float, Type.Decimal, Type.Date, Type.Time, Type.Timestamp, Type.Interval, Type.Duration, Type.FixedSizeBinary]);
const VARIABLE = new Set([Type.Utf8, Type.Binary, Type.LargeUtf8, Type.LargeBinary]);

/** [field nodes, buffers] a column of `type` has in a V5 body, or null for a type this reader does not lay
 * out (views, run-end encoding: arrow-js then decides). */
function layout(type) {
  const children = (type.children ?? []).map((f) => layout(f.type));
  if (children.includes(null)) return null;
  const sum = (k) => children.reduce((n, c) => n + c[k], 0);
  const id = type.typeId;
  if (id === Type.Null) return [1, 0];
  if (FIXED.has(id) || id === Type.Dictionary) return [1, 2];
  if (VARIABLE.has(id)) return [1, 3];
  if (id === Type.List || id === Type.LargeList || id === Type.Map) return [1 + sum(0), 2 + sum(1)];
  if (id === Type.FixedSizeList || id === Type.Struct) return [1 + sum(0), 1 + sum(1)];
  if (id === Type.Union) return [1 + sum(0), (type.mode === 1 ? 2 : 1) + sum(1)]; // dense: types + offsets
  return null;
}

/**
 * Checks message `m` (a dictionary or record batch of the file with `schema`) before arrow-js decodes it:
 * buffers inside the body, the body ending within 64 bytes of its last buffer, a codec this reader has,
 * each compressed buffer decompressing to the length its prefix announces, and the layout of §1.7.3.
 */
export function checkBody(bytes, m, schema, file) {
  const fail = (reason) => {
    throw new LossFormatError(file, m.offset, `${m.type} message: ${reason}`);
  };
  let rb;
  let types;
  try {
    if (m.type === 'dictionary') {
      const d = m.fb.header(new FbDictionaryBatch());
      const id = Number(d.id());
      const type = schema.dictionaries.get(id);
      if (!type) fail(`dictionary id ${id} is not declared by the schema`);
      rb = d.data();
      types = [type];
    } else {
      rb = m.fb.header(new FbRecordBatch());
      types = schema.fields.map((f) => f.type);
    }
  } catch (e) {
    if (e instanceof LossFormatError) throw e;
    fail(`header does not parse (${e.message})`);
  }
  if (rb === null) fail('no record batch header');
  checkLayout(rb, types, fail);
  checkBuffers(bytes, m, rb, fail);
}

function checkLayout(rb, types, fail) {
  const layouts = types.map(layout);
  if (layouts.includes(null)) return;
  const nodes = layouts.reduce((n, l) => n + l[0], 0);
  const buffers = layouts.reduce((n, l) => n + l[1], 0);
  if (rb.nodesLength() !== nodes || rb.buffersLength() !== buffers) {
    fail(`${rb.nodesLength()} field nodes and ${rb.buffersLength()} buffers, the schema's columns need ${nodes} and ${buffers}`);
  }
  const rows = rb.length();
  let at = 0;
  for (const [i, l] of layouts.entries()) {
    const node = rb.nodes(at);
    if (node.length() !== rows) fail(`column ${i} has ${node.length()} values for ${rows} rows`);
    if (node.nullCount() < 0n || node.nullCount() > node.length()) fail(`column ${i} has a null count of ${node.nullCount()}`);
    at += l[0];
  }
}

function checkBuffers(bytes, m, rb, fail) {
  const bodyLength = m.end - m.metaEnd;
  const compression = rb.compression();
  const codec = compression === null ? null : CODECS[compression.codec()];
  if (compression !== null && !codec) fail(`compressed with codec ${CompressionType[compression.codec()] ?? compression.codec()}, which this reader does not support`);
  if (compression !== null && compression.method() !== 0) fail(`body compression method ${compression.method()} is not BUFFER`);
  let last = 0;
  for (let i = 0; i < rb.buffersLength(); i++) {
    const b = rb.buffers(i);
    const offset = Number(b.offset());
    const length = Number(b.length());
    if (offset < 0 || length < 0 || offset + length > bodyLength) fail(`buffer ${i} (${offset}+${length}) lies outside the ${bodyLength}-byte body`);
    last = Math.max(last, offset + length);
    if (codec === null || length === 0) continue;
    if (length < 8) fail(`compressed buffer ${i} is shorter than its 8-byte length prefix`);
    const start = m.metaEnd + offset;
    const announced = new DataView(bytes.buffer, bytes.byteOffset + start, 8).getBigInt64(0, true);
    if (announced === -1n) continue;
    let out;
    try {
      out = codec.decode(bytes.subarray(start + 8, start + length));
    } catch (e) {
      fail(`buffer ${i} does not decompress with ${codec.name} (${e.message})`);
    }
    if (BigInt(out.length) !== announced) fail(`buffer ${i} decompresses to ${out.length} bytes, its prefix announces ${announced}`);
  }
  if (bodyLength - last >= 64) fail(`the body runs ${bodyLength - last} bytes past its last buffer`);
}

/** Checks a decoded batch (§1.7.3-4): every column's data, no nulls in the non-nullable lossfmt columns,
 * reduction entries "mean" or "sum". */
export function checkBatch(batch, offset, schema, file) {
  const fail = (reason) => {
    throw new LossFormatError(file, offset, `record batch: ${reason}`);
  };
  for (const [i, field] of schema.fields.entries()) {
    const data = batch.getChildAt(i).data;
    if (data.length !== 1) fail(`column ${field.name} has ${data.length} chunks`);
    checkData(data[0], batch.numRows, fail, field.name);
  }
  for (const col of COLUMNS) {
    const d = batch.getChild(col.name).data[0];
    if (d.nullCount !== 0 && !col.nullable) fail(`column ${col.name} has ${d.nullCount} nulls`);
    if (d.dictionary?.nullCount) fail(`column ${col.name}'s dictionary has nulls`);
  }
  for (const r of batch.getChild('reduction').data[0].dictionary) {
    if (r !== 'mean' && r !== 'sum') fail(`reduction dictionary holds ${JSON.stringify(r)}, not "mean" or "sum"`);
  }
}

/** One column's data: length, validity bitmap, data buffer long enough, string offsets and UTF-8,
 * dictionary indices and values. Nested children are checked the same way. */
function checkData(d, rows, fail, name) {
  if (d.length !== rows) fail(`column ${name} has ${d.length} values for ${rows} rows`);
  if (d.nullCount !== 0) checkBitmap(d, fail, name);
  const id = d.type.typeId;
  if (FIXED.has(id) || id === Type.Dictionary) {
    const perValue = id === Type.Bool ? 1 / 8 : d.stride ?? 1;
    if (d.values.length < Math.ceil((d.offset + d.length) * perValue)) fail(`column ${name}'s data buffer is too short for ${d.length} values`);
  }
  if (VARIABLE.has(id)) checkStrings(d, fail, name, id === Type.Utf8 || id === Type.LargeUtf8);
  if (id === Type.Dictionary) checkDictionary(d, fail, name);
  for (const [i, child] of (d.children ?? []).entries()) {
    if (id === Type.Struct) checkData(child, d.length, fail, `${name}.${d.type.children[i].name}`);
  }
}

function checkBitmap(d, fail, name) {
  if (!d.nullBitmap || d.nullBitmap.length * 8 < d.offset + d.length) fail(`column ${name}'s validity bitmap is too short`);
  let nulls = 0;
  for (let i = d.offset; i < d.offset + d.length; i++) if (!((d.nullBitmap[i >> 3] >> (i & 7)) & 1)) nulls++;
  if (nulls !== d.nullCount) fail(`column ${name} says ${d.nullCount} nulls, its bitmap has ${nulls}`);
}

function checkStrings(d, fail, name, utf8) {
  const { valueOffsets: offs, values } = d;
  if (!offs || offs.length < d.offset + d.length + 1) fail(`column ${name}'s offsets are too short`);
  for (let i = d.offset; i < d.offset + d.length; i++) {
    if (offs[i] < 0 || offs[i + 1] < offs[i] || offs[i + 1] > values.length) fail(`column ${name}'s offsets are out of order or bounds`);
  }
  if (!utf8) return;
  try {
    UTF8.decode(values.subarray(Number(offs[d.offset]), Number(offs[d.offset + d.length])));
  } catch {
    fail(`column ${name} is not valid UTF-8`);
  }
}

function checkDictionary(d, fail, name) {
  const dict = d.dictionary;
  for (let i = d.offset; i < d.offset + d.length; i++) {
    const k = d.values[i];
    if (k < 0 || k >= dict.length) fail(`column ${name}: index ${k} at row ${i} is outside its ${dict.length}-entry dictionary`);
  }
  for (const chunk of dict.data) checkData(chunk, chunk.length, fail, `${name}'s dictionary`);
}
