// Reading a lossfmt file in any state (spec/FORMAT.md §1.2, §2, §3): closed, live, crashed with a torn tail,
// resumed. The framing (message boundaries, checksums, footer) comes from framing.js; arrow-js decodes the
// bodies; this module checks what arrow-js does not (buffer bounds, decompressed sizes, dictionary indices,
// offsets, nulls) so that a damaged complete message is an error, never a short read.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import * as flatbuffers from 'flatbuffers';
import { CompressionType, Message, RecordBatchStreamReader, Schema, Type } from 'apache-arrow';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { Endianness } from 'apache-arrow/fb/endianness';
import { CODECS } from './codecs.js';
import { LossFormatError, MAGIC, SCHEMA_CHECKSUM_KEY, checksumField, concat, readFooter, readMessage, verifyChecksum } from './framing.js';

export { LossFormatError };

/** The v1 columns: name, Arrow type id, and what else pins the type (spec §2). */
export const COLUMNS = [
  { name: 'step', check: (t) => t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned, type: 'int64', nullable: false },
  { name: 'tag', check: (t) => isDict(t, 32), type: 'dictionary<int32, utf8>', nullable: false },
  { name: 'value', check: (t) => t.typeId === Type.Float && t.precision === 2, type: 'float64', nullable: false },
  { name: 'count', check: (t) => t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned, type: 'int64', nullable: false },
  { name: 'epoch', check: (t) => t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned, type: 'int64', nullable: true },
  { name: 'wall_time', check: (t) => t.typeId === Type.Timestamp && t.unit === 2 && t.timezone === 'UTC', type: 'timestamp[us, UTC]', nullable: false },
  { name: 'reduction', check: (t) => isDict(t, 8), type: 'dictionary<int8, utf8>', nullable: false },
];
export const COLUMN_NAMES = COLUMNS.map((c) => c.name);

function isDict(t, bits) {
  return t.typeId === Type.Dictionary && t.indices.bitWidth === bits && t.indices.isSigned && t.dictionary.typeId === Type.Utf8;
}

/** Reads `path`: see readBytes. The file is only read, never modified. */
export function readFile(path) {
  return readBytes(new Uint8Array(readFileSync(path)), path);
}

/**
 * Decodes a whole lossfmt file. Returns {schema, metadata (Map), run, runId, meta, end, closed, rows}, rows
 * being [step, tag, value, count, epoch, wall_time, reduction] arrays in file order (int64 as Number when
 * exact, else BigInt; epoch null when absent; wall_time in microseconds since the Unix epoch, UTC).
 * Throws LossFormatError for a file that is not lossfmt v1 or is damaged; a torn tail is dropped silently.
 */
export function readBytes(bytes, file = '<bytes>') {
  if (bytes.length < MAGIC.length) throw new LossFormatError(file, null, `header incomplete: ${bytes.length} bytes, no complete magic`);
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new LossFormatError(file, null, 'not a lossfmt file (no Arrow magic at byte 0)');
  const head = readMessage(bytes, MAGIC.length, file);
  if (head.torn) throw new LossFormatError(file, null, 'header incomplete: truncated inside the schema message');
  if (head.eos || head.type !== 'schema') throw new LossFormatError(file, MAGIC.length, 'the first message is not a schema');
  verifyChecksum(bytes, head, head.offset, false, file);
  const schema = decodeSchema(bytes, head, file);
  const declared = schema.metadata.get('lossfmt.checksum');
  if (declared !== undefined && declared !== 'crc32c') throw new LossFormatError(file, null, `checksum ${JSON.stringify(declared)} is not supported (lossfmt knows crc32c)`);
  const required = declared === 'crc32c';
  if (required && checksumField(bytes, head) === null) throw new LossFormatError(file, head.offset, `the schema has no ${SCHEMA_CHECKSUM_KEY} (it promises checksums)`);
  const { messages, end, closed } = scan(bytes, schema, head, required, file);
  const batches = decode(bytes, head, messages, file);
  const rows = [];
  for (const { batch, offset } of batches) rows.push(...batchRows(batch, offset, file));
  const meta = parseMeta(schema.metadata.get('lossfmt.meta'), file);
  return {
    schema,
    metadata: schema.metadata,
    run: schema.metadata.get('lossfmt.run') ?? basename(String(file)).replace(/\.arrow$/, ''),
    runId: schema.metadata.get('lossfmt.run_id') ?? null,
    meta,
    end,
    closed,
    rows,
  };
}

function decodeSchema(bytes, head, file) {
  let schema;
  try {
    schema = Message.decode(bytes.subarray(head.metaStart, head.metaEnd)).header();
  } catch (e) {
    throw new LossFormatError(file, head.offset, `schema message does not decode (${e.message})`);
  }
  if (head.fb.header(new FbSchema()).endianness() !== Endianness.Little) throw new LossFormatError(file, head.offset, 'big-endian data (lossfmt is little-endian)');
  const version = schema.metadata.get('lossfmt.version');
  if (version === undefined) throw new LossFormatError(file, null, 'not a lossfmt file (Arrow file without lossfmt metadata)');
  if (version !== '1') throw new LossFormatError(file, null, `lossfmt format version ${version} is not supported (this reader reads version 1); upgrade`);
  for (const col of COLUMNS) {
    const field = schema.fields.find((f) => f.name === col.name);
    if (!field) throw new LossFormatError(file, null, `column ${JSON.stringify(col.name)} is missing`);
    if (!col.check(field.type)) throw new LossFormatError(file, null, `column ${JSON.stringify(col.name)} has type ${field.type}, expected ${col.type}`);
  }
  return schema;
}

/**
 * The messages of the file's content after the schema (record batches verified against their checksums),
 * `end` (just after the last complete record batch, or the schema) and whether the file is closed. A file
 * that ends with "ARROW1" claims a footer: its stream must end with EOS at `end`, and its footer must list
 * exactly the stream's messages and repeat its schema; anything else about it is damage, never a torn tail.
 */
function scan(bytes, schema, head, required, file) {
  const claimed = bytes.length >= head.end + 18 && MAGIC.subarray(0, 6).every((b, i) => bytes[bytes.length - 6 + i] === b);
  const messages = [];
  let end = head.end;
  let eosAt = null;
  for (let at = head.end; ;) {
    const m = readMessage(bytes, at, file);
    if (m.torn) {
      if (claimed) throw new LossFormatError(file, at, 'a message runs past the end of a closed file');
      break;
    }
    if (m.eos) {
      eosAt = at;
      break;
    }
    if (m.type === 'schema') throw new LossFormatError(file, at, 'a second schema message');
    if (m.type === 'record batch') {
      verifyChecksum(bytes, m, end, required, file);
      end = m.end;
    }
    messages.push(m);
    at = m.end;
  }
  if (!claimed) return { messages: messages.filter((m) => m.end <= end), end, closed: false }; // trailing dictionaries: a torn flush
  // Closed: EOS right after the last batch; in an empty closed file, after its (at most one per id) dictionaries.
  const batches = messages.some((m) => m.type === 'record batch');
  if (eosAt === null || (batches && eosAt !== end)) throw new LossFormatError(file, end, "a closed file's stream does not end with EOS after its last batch");
  const footer = readFooter(bytes, eosAt);
  if (footer === null) throw new LossFormatError(file, bytes.length - 10, 'the footer length does not match the stream');
  checkFooter(footer, schema, messages, file);
  return { messages, end: eosAt, closed: true };
}

/** A closed file's footer says nothing the verified stream does not: its blocks are exactly the stream's
 * messages, and its schema is the stream's (the footer's copy of the schema checksum is not compared). */
function checkFooter({ footer, start }, schema, messages, file) {
  const want = (type) => messages.filter((m) => m.type === type).map((m) => `${m.offset}:${m.metaEnd - m.offset}:${m.end - m.metaEnd}`);
  const blocks = (n, get) => Array.from({ length: n }, (_, i) => get(i)).map((b) => `${b.offset()}:${b.metaDataLength()}:${b.bodyLength()}`);
  let got;
  let footerSchema;
  try {
    got = {
      batches: blocks(footer.recordBatchesLength(), (i) => footer.recordBatches(i)),
      dicts: blocks(footer.dictionariesLength(), (i) => footer.dictionaries(i)),
    };
    footerSchema = Schema.decode(footer.schema(), new Map(), footer.version());
  } catch (e) {
    throw new LossFormatError(file, start, `the footer does not parse (${e.message})`);
  }
  if (got.batches.join() !== want('record batch').join() || got.dicts.join() !== want('dictionary').join()) {
    throw new LossFormatError(file, start, "the footer's blocks do not match the stream's messages");
  }
  if (schemaKey(footerSchema) !== schemaKey(schema)) throw new LossFormatError(file, start, "the footer's schema differs from the stream's");
}

function schemaKey(schema) {
  const fields = schema.fields.map((f) => `${f.name}:${f.type}:${f.nullable}`);
  const metadata = [...schema.metadata].filter(([k]) => k !== SCHEMA_CHECKSUM_KEY).sort();
  return JSON.stringify([fields, metadata]);
}

/**
 * Decodes the content's record batches with arrow-js, each message on its own (spec §1.2's incremental rule:
 * the schema, per dictionary id the last full dictionary and its deltas, then the message), so a failure
 * names the message that caused it.
 */
function decode(bytes, head, messages, file) {
  const chains = new Map(); // dictionary id -> its messages in effect (the last full one, then deltas)
  const out = [];
  for (const m of messages) {
    checkBody(bytes, m, file);
    let parts;
    if (m.type === 'dictionary') {
      const header = m.fb.header(new FbDictionaryBatch());
      const id = Number(header.id());
      const chain = header.isDelta() ? [...(chains.get(id) ?? []), m] : [m];
      chains.set(id, chain);
      parts = [head, ...chain];
    } else {
      parts = [head, ...[...chains.values()].flat(), m];
    }
    let batches;
    try {
      batches = [...RecordBatchStreamReader.from(concat(parts.map((p) => bytes.subarray(p.offset, p.end))))];
    } catch (e) {
      throw new LossFormatError(file, m.offset, `${m.type} message does not decode (${e.message})`);
    }
    // A stream without a record batch yields one empty placeholder: a dictionary check yields nothing else.
    if (m.type === 'record batch') out.push({ batch: batches[0], offset: m.offset });
  }
  return out;
}

/** Bounds and codec of every buffer of a dictionary or record batch body; each compressed buffer must
 * decompress to the length its 8-byte prefix announces (arrow-js does not check this). */
function checkBody(bytes, m, file) {
  const fail = (reason) => {
    throw new LossFormatError(file, m.offset, `${m.type} message: ${reason}`);
  };
  let rb;
  try {
    rb = m.type === 'dictionary' ? m.fb.header(new FbDictionaryBatch()).data() : m.fb.header(new FbRecordBatch());
  } catch (e) {
    fail(`header does not parse (${e.message})`);
  }
  if (rb === null) fail('no record batch header');
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

/** Validates one decoded batch (spec §2: non-null columns, indices inside the dictionary, valid UTF-8) and
 * returns its rows. */
function batchRows(batch, offset, file) {
  const fail = (reason) => {
    throw new LossFormatError(file, offset, `record batch: ${reason}`);
  };
  const n = batch.numRows;
  const cols = {};
  for (const col of COLUMNS) {
    const data = batch.getChild(col.name).data;
    if (data.length !== 1) fail(`column ${col.name} has ${data.length} chunks`);
    const d = data[0];
    if (d.length !== n) fail(`column ${col.name} has ${d.length} values for ${n} rows`);
    if (d.values.length < d.offset + n) fail(`column ${col.name}'s data buffer holds ${d.values.length} values, not ${n}`);
    if (d.nullCount !== 0 && !col.nullable) fail(`column ${col.name} has ${d.nullCount} nulls`);
    if (d.nullCount !== 0) checkBitmap(d, fail, col.name);
    if (d.dictionary) checkDictionary(d, fail, col.name);
    if (col.name === 'reduction') {
      for (const r of d.dictionary) if (r !== 'mean' && r !== 'sum') fail(`reduction dictionary holds ${JSON.stringify(r)}, not "mean" or "sum"`);
    }
    cols[col.name] = batch.getChild(col.name);
  }
  const rows = new Array(n);
  for (let i = 0; i < n; i++) {
    rows[i] = [int(cols.step.get(i)), cols.tag.get(i), cols.value.get(i), int(cols.count.get(i)),
      cols.epoch.isValid(i) ? int(cols.epoch.get(i)) : null, int(cols.wall_time.data[0].values[i]), cols.reduction.get(i)];
  }
  return rows;
}

function checkBitmap(d, fail, name) {
  if (!d.nullBitmap || d.nullBitmap.length * 8 < d.offset + d.length) fail(`column ${name}'s validity bitmap is too short`);
  let nulls = 0;
  for (let i = d.offset; i < d.offset + d.length; i++) if (!((d.nullBitmap[i >> 3] >> (i & 7)) & 1)) nulls++;
  if (nulls !== d.nullCount) fail(`column ${name} says ${d.nullCount} nulls, its bitmap has ${nulls}`);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function checkDictionary(d, fail, name) {
  const dict = d.dictionary;
  for (let i = d.offset; i < d.offset + d.length; i++) {
    const k = d.values[i];
    if (k < 0 || k >= dict.length) fail(`column ${name}: index ${k} at row ${i} is outside its ${dict.length}-entry dictionary`);
  }
  for (const chunk of dict.data) {
    if (chunk.nullCount !== 0) fail(`column ${name}'s dictionary has nulls`);
    const { valueOffsets: offs, values } = chunk;
    if (!offs || offs.length < chunk.offset + chunk.length + 1) fail(`column ${name}'s dictionary offsets are too short`);
    for (let i = chunk.offset; i < chunk.offset + chunk.length; i++) {
      if (offs[i] < 0 || offs[i + 1] < offs[i] || offs[i + 1] > values.length) fail(`column ${name}'s dictionary offsets are out of order or bounds`);
    }
    try {
      UTF8.decode(values.subarray(offs[chunk.offset], offs[chunk.offset + chunk.length]));
    } catch {
      fail(`column ${name}'s dictionary is not valid UTF-8`);
    }
  }
}

function int(v) {
  const b = BigInt(v);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

const FLOATS = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** `lossfmt.meta` (spec §3): an RFC 8259 JSON object in which {"$float": "NaN" | "Infinity" | "-Infinity"}
 * stands for a non-finite double; files written before that rule hold the bare tokens NaN, Infinity and
 * -Infinity (Python's json extension), accepted too. */
export function parseMeta(text, file) {
  if (text === undefined) return {};
  const sentinel = '\u0000lossfmt:';
  const rfc = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (tok) => (tok[0] === '"' ? tok : JSON.stringify(sentinel + tok)));
  const revive = (_k, v) => {
    if (typeof v === 'string' && v.startsWith(sentinel)) return FLOATS[v.slice(sentinel.length)];
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === '$float' && v.$float in FLOATS) return FLOATS[v.$float];
    }
    return v;
  };
  try {
    return JSON.parse(rfc, revive);
  } catch (e) {
    throw new LossFormatError(file, null, `lossfmt.meta is not JSON (${e.message})`);
  }
}

/** `meta` as lossfmt.meta: RFC 8259 JSON, each non-finite number as {"$float": "NaN"} (or "Infinity",
 * "-Infinity"), which JSON.stringify would otherwise turn into null. */
export function stringifyMeta(meta) {
  return JSON.stringify(meta, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? { $float: String(v) } : v));
}
