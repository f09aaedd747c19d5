// Reading a lossfmt file in any state (spec/FORMAT.md §1.2, §2, §3): closed, live, crashed with a torn tail,
// resumed. The framing (message boundaries, checksums, footer) comes from framing.js; arrow-js decodes the
// bodies; this module checks what arrow-js does not (buffer bounds, decompressed sizes, dictionary indices,
// offsets, nulls) so that a damaged complete message is an error, never a short read.

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { Message, RecordBatchStreamReader, Schema } from 'apache-arrow';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { Endianness } from 'apache-arrow/fb/endianness';
import { checkBatch, checkBody } from './validate.js';
import { COLUMNS, COLUMN_NAMES } from './columns.js';
import { LossFormatError, MAGIC, SCHEMA_CHECKSUM_KEY, checksumField, concat, endsClosed, messagesAfter, readFooter, readMessage, verifyChecksum, verifyFooter } from './framing.js';

export { LossFormatError, COLUMNS, COLUMN_NAMES };

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
  const { messages, end, resumeAt, closed } = scan(bytes, schema, head, required, file);
  const batches = decode(bytes, head, schema, messages, file);
  const rows = [];
  for (const { batch, offset } of batches) {
    for (const row of batchRows(batch, offset, schema, file)) rows.push(row); // (a spread overflows the stack past ~130K rows)
  }
  const meta = parseMeta(schema.metadata.get('lossfmt.meta'), file);
  return {
    schema,
    metadata: schema.metadata,
    run: schema.metadata.get('lossfmt.run') || basename(String(file)).replace(/\.arrow$/, ''), // (empty: as missing)
    runId: schema.metadata.get('lossfmt.run_id') ?? null,
    meta,
    end,
    resumeAt: resumeAt ?? end,
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
    const named = schema.fields.filter((f) => f.name === col.name);
    if (named.length > 1) throw new LossFormatError(file, null, `column ${JSON.stringify(col.name)} is there ${named.length} times (column names are unique)`);
    const field = named[0];
    if (!field) throw new LossFormatError(file, null, `column ${JSON.stringify(col.name)} is missing`);
    if (!col.check(field.type)) throw new LossFormatError(file, null, `column ${JSON.stringify(col.name)} has type ${field.type}, expected ${col.type}`);
  }
  return schema;
}

/**
 * The messages of the file's content after the schema (record batches verified against their checksums),
 * `end` (just after the last complete record batch, or the schema) and whether the file is closed. A file
 * that ends as a closed file (`endsClosed`) claims a footer: its stream must end with EOS at `end`, and its footer must list
 * exactly the stream's messages and repeat its schema; anything else about it is damage, never a torn tail.
 */
function scan(bytes, schema, head, required, file) {
  const claimed = endsClosed(bytes, head.end);
  const messages = [];
  let end = head.end;
  let eosAt = null;
  for (let at = head.end; ;) {
    const m = readMessage(bytes, at, file);
    if (m.torn) {
      if (claimed) throw new LossFormatError(file, at, 'a message runs past the end of a closed file');
      const after = messagesAfter(bytes, at);
      if (after >= 0) {
        throw new LossFormatError(file, at, `its length runs past the end of the file, but whole messages follow it from byte ${after}: a damaged length, not a torn tail`);
      }
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
  const magic = MAGIC.subarray(0, 6).every((b, i) => bytes[bytes.length - 6 + i] === b);
  if (!claimed && !(eosAt !== null && magic)) return { messages: messages.filter((m) => m.end <= end), end, closed: false }; // trailing dictionaries: a torn flush
  // Closed: EOS right after the last batch; in an empty closed file, after its (at most one per id) dictionaries.
  const batches = messages.some((m) => m.type === 'record batch');
  if (eosAt === null || (batches && eosAt !== end)) throw new LossFormatError(file, end, "a closed file's stream does not end with EOS after its last batch");
  const footer = readFooter(bytes, eosAt);
  if (footer === null) throw new LossFormatError(file, bytes.length - 10, 'the footer length does not match the stream');
  checkFooter(footer, schema, messages, file);
  return { messages, end: eosAt, resumeAt: end, closed: true }; // (resume: after the last batch, §1.4)
}

/** A closed file's footer says nothing the verified stream does not: its blocks are exactly the stream's
 * messages, and its schema is the stream's (the footer's copy of the schema checksum is not compared). */
function checkFooter({ footer, start }, schema, messages, file) {
  const want = (type) => messages.filter((m) => m.type === type).map((m) => `${m.offset}:${m.metaEnd - m.offset}:${m.end - m.metaEnd}`);
  const blocks = (n, get) => Array.from({ length: n }, (_, i) => get(i)).map((b) => `${b.offset()}:${b.metaDataLength()}:${b.bodyLength()}`);
  let got;
  let footerSchema;
  let footerKey;
  try {
    verifyFooter({ footer });
    got = {
      batches: blocks(footer.recordBatchesLength(), (i) => footer.recordBatches(i)),
      dicts: blocks(footer.dictionariesLength(), (i) => footer.dictionaries(i)),
    };
    footerSchema = Schema.decode(footer.schema(), new Map(), footer.version());
    if ([...footerSchema.metadata.values()].includes(null)) throw new RangeError('a metadata key without a value');
    footerKey = schemaKey(footerSchema); // (a type arrow-js decodes half, a list without its child, throws)
  } catch (e) {
    throw new LossFormatError(file, start, `the footer does not parse (${e.message})`);
  }
  if (got.batches.join() !== want('record batch').join() || got.dicts.join() !== want('dictionary').join()) {
    throw new LossFormatError(file, start, "the footer's blocks do not match the stream's messages");
  }
  if (footerKey !== schemaKey(schema)) throw new LossFormatError(file, start, "the footer's schema differs from the stream's");
}

/** What two schemas must share to be equal (§1.3): fields (names, types, dictionary ids and flags, nullable,
 * field metadata) and metadata, the schema checksum aside (§1.6: the footer's copy is not meaningful). */
function schemaKey(schema) {
  const type = (t) => (t.dictionary ? [String(t), t.id, t.isOrdered, type(t.dictionary)] : [String(t), (t.children ?? []).map(field)]);
  const field = (f) => [f.name, type(f.type), f.nullable, [...f.metadata].sort()];
  const metadata = [...schema.metadata].filter(([k]) => k !== SCHEMA_CHECKSUM_KEY).sort();
  return JSON.stringify([schema.fields.map(field), metadata]);
}

/**
 * Decodes the content's record batches with arrow-js, each message on its own (spec §1.2's incremental rule:
 * the schema, per dictionary id the last full dictionary and its deltas, then the message), so a failure
 * names the message that caused it.
 */
function decode(bytes, head, schema, messages, file) {
  const chains = new Map(); // dictionary id -> its messages in effect (the last full one, then deltas)
  const out = [];
  for (const m of messages) {
    checkBody(bytes, m, schema, file);
    let parts;
    if (m.type === 'dictionary') {
      const header = m.fb.header(new FbDictionaryBatch());
      // §1.1: no null values, used or not; told by the field node's null count, as the Python reader does.
      if (header.data()?.nodesLength() && header.data().nodes(0).nullCount() > 0n) {
        throw new LossFormatError(file, m.offset, 'dictionary message: a null dictionary value');
      }
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

/** The rows of one decoded, validated batch. */
function batchRows(batch, offset, schema, file) {
  checkBatch(batch, offset, schema, file);
  const n = batch.numRows;
  const cols = Object.fromEntries(COLUMN_NAMES.map((name) => [name, batch.getChild(name)]));
  const rows = new Array(n);
  for (let i = 0; i < n; i++) {
    rows[i] = [int(cols.step.get(i)), cols.tag.get(i), cols.value.get(i), int(cols.count.get(i)),
      cols.epoch.isValid(i) ? int(cols.epoch.get(i)) : null, int(cols.wall_time.data[0].values[i]), cols.reduction.get(i)];
  }
  return rows;
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
  if (text === undefined || text === '') return {}; // (an empty value is none: spec §3)
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
