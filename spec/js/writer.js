// Writing lossfmt files from JavaScript (spec/FORMAT.md §1-§3): a live file that grows by one flush at a
// time (dictionary messages only when a dictionary changed, then one checksummed record batch, in a single
// write), and close(), which compacts it into a standard Arrow IPC file with the schema message at offset 8.
// arrow-js 21 encodes the messages; three of its behaviours need the workarounds named in README.md.

import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  CompressionType, Dictionary, Field, Float64, Int8, Int32, Int64, MetadataVersion, RecordBatch,
  RecordBatchStreamWriter, Schema, Struct, TimestampMicrosecond, Utf8, makeData, vectorFromArray,
} from 'apache-arrow';
import { Footer, FileBlock } from 'apache-arrow/ipc/metadata/file';
import { BufferRegion } from 'apache-arrow/ipc/metadata/message';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { CODECS } from './codecs.js';
import { EOS, MAGIC, PLACEHOLDER, CHECKSUM_KEY, SCHEMA_CHECKSUM_KEY, Sealer, concat, readMessage } from './framing.js';
import { readFile, LossFormatError, stringifyMeta } from './reader.js';
import { lockFile } from './lock.js';

const TAG_ID = 0;
const REDUCTION_ID = 1;
const REDUCTIONS = ['mean', 'sum'];
const MAX_BATCH_ROWS = 2 ** 24;
const ZSTD = CODECS[CompressionType.ZSTD];

/** The v1 columns in order (spec §2), with the given dictionary ids (new files: 0 and 1; a resumed file:
 * the ids its schema declares). */
function fieldsWith(tagId = TAG_ID, reductionId = REDUCTION_ID) {
  return [
    new Field('step', new Int64(), false),
    new Field('tag', new Dictionary(new Utf8(), new Int32(), tagId), false),
    new Field('value', new Float64(), false),
    new Field('count', new Int64(), false),
    new Field('epoch', new Int64(), true),
    new Field('wall_time', new TimestampMicrosecond('UTC'), false),
    new Field('reduction', new Dictionary(new Utf8(), new Int8(), reductionId), false),
  ];
}
const NAMES = fieldsWith().map((f) => f.name);

/** `schema`'s v1 fields, rebuilt with the dictionary ids it declares. */
function fieldsOf(schema) {
  const id = (name) => schema.fields.find((f) => f.name === name).type.id;
  return fieldsWith(id('tag'), id('reduction'));
}

/**
 * arrow-js 21.2.0's writer puts the *compressed* length in each compressed buffer's 8-byte prefix, where the
 * Arrow format wants the uncompressed length (pyarrow then fails: "ZSTD decompression failed: Destination
 * buffer is too small"). This subclass replaces that one method: every buffer ZSTD-compressed, prefixed with
 * its uncompressed length, at an 8-byte aligned body offset.
 */
class ZstdStreamWriter extends RecordBatchStreamWriter {
  constructor() {
    super({ compressionType: CompressionType.ZSTD });
  }

  _compressBodyBuffers(buffers) {
    let offset = 0;
    const out = [];
    const regions = [];
    for (const buffer of buffers) {
      const raw = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      if (raw.length === 0) {
        out.push(new Uint8Array(0), new Uint8Array(0));
        regions.push(new BufferRegion(offset, 0));
        continue;
      }
      const prefix = new Uint8Array(8);
      new DataView(prefix.buffer).setBigInt64(0, BigInt(raw.length), true);
      const compressed = ZSTD.encode(raw);
      out.push(prefix, compressed);
      regions.push(new BufferRegion(offset, 8 + compressed.length));
      offset = align8(offset + 8 + compressed.length);
    }
    return { byteLength: offset, bufferRegions: regions, buffers: out };
  }
}

function align8(n) {
  return (n + 7) & ~7;
}

/** The v1 schema with fresh run metadata (spec §3); `lossfmt.checksum` promises a CRC-32C on every batch. */
export function makeSchema(run, meta = {}) {
  return new Schema(fieldsWith(), new Map([
    ['lossfmt.version', '1'],
    ['lossfmt.run', run],
    ['lossfmt.run_id', randomUUID().replaceAll('-', '')],
    ['lossfmt.created', new Date().toISOString().replace('Z', '000+00:00')],
    ['lossfmt.host', hostname()],
    ['lossfmt.pid', String(process.pid)],
    ['lossfmt.meta', stringifyMeta(meta)],
    ['lossfmt.checksum', 'crc32c'],
    [SCHEMA_CHECKSUM_KEY, PLACEHOLDER],
  ]));
}

/** The messages of arrow-js' stream output for `batches` (schema first, EOS dropped), one Uint8Array each,
 * with the dictionary id of each dictionary message. */
function encode(schema, batches) {
  const w = new ZstdStreamWriter();
  w.reset(undefined, schema);
  for (const b of batches) w.write(b);
  w.finish();
  const bytes = w.toUint8Array(true);
  const messages = [];
  for (let at = 0; ;) {
    const m = readMessage(bytes, at, '<arrow-js output>');
    if (m.eos || m.torn) break;
    const id = m.type === 'dictionary' ? Number(m.fb.header(new FbDictionaryBatch()).id()) : null;
    messages.push({ type: m.type, id, bytes: bytes.slice(at, m.end) });
    at = m.end;
  }
  return messages;
}

/** One record batch of `rows` ([step, tag, value, count, epoch, wall_time, reduction]) with the given
 * dictionary vectors; the checksum placeholder goes in its message's custom metadata. */
function makeBatch(schema, rows, tags, tagIndex, reductions) {
  const n = rows.length;
  const { fields } = schema;
  const step = new BigInt64Array(n);
  const tag = new Int32Array(n);
  const value = new Float64Array(n);
  const count = new BigInt64Array(n);
  const epoch = new BigInt64Array(n);
  const valid = new Uint8Array(Math.ceil(n / 8));
  const wall = new BigInt64Array(n);
  const reduction = new Int8Array(n);
  let nulls = 0;
  rows.forEach(([s, t, v, c, e, w, r], i) => {
    step[i] = BigInt(s);
    tag[i] = tagIndex.get(t);
    value[i] = v;
    count[i] = BigInt(c);
    if (e === null) nulls++;
    else {
      epoch[i] = BigInt(e);
      valid[i >> 3] |= 1 << (i & 7);
    }
    wall[i] = BigInt(w);
    reduction[i] = REDUCTIONS.indexOf(r);
  });
  const children = [
    makeData({ type: fields[0].type, length: n, data: step }),
    makeData({ type: fields[1].type, length: n, data: tag, dictionary: tags }),
    makeData({ type: fields[2].type, length: n, data: value }),
    makeData({ type: fields[3].type, length: n, data: count }),
    makeData({ type: fields[4].type, length: n, data: epoch, nullCount: nulls, nullBitmap: nulls ? valid : null }),
    makeData({ type: fields[5].type, length: n, data: wall }),
    makeData({ type: fields[6].type, length: n, data: reduction, dictionary: reductions }),
  ];
  const data = makeData({ type: new Struct(fields), length: n, children });
  return new RecordBatch(schema, data, new Map([[CHECKSUM_KEY, PLACEHOLDER]]));
}

function checkInt(name, v, min = -(2n ** 63n)) {
  const ok = (typeof v === 'number' && Number.isSafeInteger(v)) || typeof v === 'bigint';
  if (!ok || BigInt(v) < min || BigInt(v) >= 2n ** 63n) {
    throw new TypeError(`${name} must be an integer${min > -(2n ** 63n) ? ` >= ${min}` : ''} in int64 range, got ${String(v)}`);
  }
}

/**
 * Logs events to a lossfmt file. add() keeps the event in memory; flush() appends one flush unit with a
 * single write (the file stays readable, and a killed process loses nothing flushed); close() flushes and
 * compacts. Synchronous: JavaScript has one thread, so there is no flusher. Open one with
 * `await LossWriter.open(path, {run, meta})`: it creates the file, or resumes an existing lossfmt file (spec
 * §1.4), holding the file's lock until close().
 */
export class LossWriter {
  /**
   * Opens `path` for writing: a new file (run: its name, default the file name; meta: JSON-able user
   * metadata), or an existing lossfmt v1 file, resumed: truncated at its `end` (a closed file becomes live
   * again, a torn tail is dropped), its schema and metadata kept, `meta` merged into lossfmt.meta at close.
   * LossFormatError (file untouched) for a file that is not lossfmt v1 or has columns this writer does not
   * know; WriterBusyError while another writer (JS or Python) has it open.
   */
  static async open(path, { run, meta } = {}) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT); // never truncated before it is checked
    let release;
    try {
      release = await lockFile(path);
      return new LossWriter(path, fd, release, { run, meta });
    } catch (e) {
      release?.();
      closeSync(fd);
      throw e;
    }
  }

  /** Use LossWriter.open(): the constructor expects the open, locked file. */
  constructor(path, fd, release, { run, meta }) {
    this.path = path;
    this.fd = fd;
    this.release = release;
    this.pending = [];
    this.tagIndex = new Map(); // tag -> its index in the tag dictionary of this writer's stream
    this.tagVector = null; // that dictionary: one chunk per flush that added tags (each a delta on disk)
    this.reductions = vectorFromArray(REDUCTIONS, new Utf8());
    this.written = new Map(); // dictionary id -> how many of its chunks this writer has written
    this.sealer = new Sealer();
    this.metaUpdate = null;
    if (fstatSync(fd).size === 0) {
      this.schema = makeSchema(run ?? basename(path).replace(/\.arrow$/, ''), meta ?? {});
      const [schemaMessage] = encode(this.schema, []);
      this.sealer.seal(schemaMessage.bytes);
      const header = concat([MAGIC, schemaMessage.bytes]);
      writeSync(fd, header, 0, header.length, 0);
      this.size = header.length;
    } else {
      const content = readFile(path); // LossFormatError for a foreign or damaged file, left untouched
      checkResumable(content, path);
      this.schema = new Schema(fieldsOf(content.schema), content.metadata); // the file's own dictionary ids
      this.metaUpdate = meta ?? null;
      // The new stream's first flush writes both dictionaries in full (nothing written yet).
      ftruncateSync(fd, content.resumeAt); // after the last batch: an empty closed file's dictionaries go too
      this.size = content.resumeAt;
    }
  }

  /** Records one event (no I/O). TypeError / RangeError for bad input, Error after close(). */
  add(step, value, { tag = 'loss', count = 1, epoch = null, reduction = 'mean', wallTime = Date.now() * 1000 } = {}) {
    if (this.fd === null) throw new Error(`${this.path}: add() after close()`);
    checkInt('step', step);
    if (typeof value !== 'number') throw new TypeError(`value must be a number, got ${typeof value}`);
    if (typeof tag !== 'string' || tag === '') throw new TypeError(`tag must be a non-empty string, got ${JSON.stringify(tag)}`);
    checkInt('count', count, 1n);
    if (epoch !== null) checkInt('epoch', epoch);
    if (!REDUCTIONS.includes(reduction)) throw new RangeError(`reduction must be "mean" or "sum", got ${JSON.stringify(reduction)}`);
    checkInt('wallTime', wallTime);
    this.pending.push([step, tag, value, count, epoch, wallTime, reduction]);
  }

  /** Appends every pending event as one flush (one write); after it returns, a reader sees them all. */
  flush() {
    if (this.fd === null) throw new Error(`${this.path}: flush() after close()`);
    if (this.pending.length === 0) return;
    const added = [];
    for (const [, t] of this.pending) {
      if (!this.tagIndex.has(t)) {
        this.tagIndex.set(t, this.tagIndex.size);
        added.push(t);
      }
    }
    if (added.length > 0) {
      const chunk = vectorFromArray(added, new Utf8());
      this.tagVector = this.tagVector === null ? chunk : this.tagVector.concat(chunk);
    }
    const batch = makeBatch(this.schema, this.pending, this.tagVector, this.tagIndex, this.reductions);
    // A fresh arrow-js writer per flush writes the schema and every dictionary chunk again (the first in
    // full, later ones as deltas): keep the chunks not written yet, and the batch.
    const seen = new Map();
    const keep = encode(this.schema, [batch]).filter((m) => {
      if (m.type !== 'dictionary') return m.type === 'record batch';
      const index = seen.get(m.id) ?? 0;
      seen.set(m.id, index + 1);
      return index >= (this.written.get(m.id) ?? 0);
    });
    const bytes = this.sealer.seal(concat(keep.map((m) => m.bytes)));
    writeSync(this.fd, bytes, 0, bytes.length, this.size);
    this.size += bytes.length;
    this.written = seen;
    this.pending = [];
  }

  /** Flushes, then compacts the file into a closed Arrow IPC file (written aside, fsynced, renamed over). */
  close() {
    if (this.fd === null) return;
    try {
      this.flush();
      compactFile(this.path, this.metaUpdate);
    } finally {
      closeSync(this.fd);
      this.fd = null;
      this.release();
    }
  }
}

/** A file a v1 writer may append to: exactly the seven columns, in order (it could neither fill nor keep
 * others through compaction). */
function checkResumable(content, path) {
  const names = content.schema.fields.map((f) => f.name);
  if (names.join() !== NAMES.join()) {
    throw new LossFormatError(path, null, `has columns ${JSON.stringify(names)}, this writer appends only ${JSON.stringify(NAMES)}; refusing to resume (the file is left untouched)`);
  }
}

/** The closed-file bytes of `schema` and `rows` (spec §1.3): magic, schema message at offset 8, one dictionary
 * per field, batches of up to 2^24 rows, EOS, footer. arrow-js' own file writer cannot be used: it puts no
 * schema message at offset 8 (only "ARROW1" and two bytes of padding before the first dictionary). */
export function closedFileBytes(schema, rows) {
  const tags = [];
  const tagIndex = new Map();
  for (const r of rows) if (!tagIndex.has(r[1])) tagIndex.set(r[1], tags.push(r[1]) - 1);
  const tagVector = vectorFromArray(tags, new Utf8());
  const reductions = vectorFromArray(REDUCTIONS, new Utf8());
  const batches = [];
  for (let i = 0; i < rows.length; i += MAX_BATCH_ROWS) {
    batches.push(makeBatch(schema, rows.slice(i, i + MAX_BATCH_ROWS), tagVector, tagIndex, reductions));
  }
  // arrow-js writes dictionaries with the first batch: an empty run is the schema message alone.
  const messages = encode(schema, batches);
  const stream = concat([MAGIC, ...messages.map((m) => m.bytes), EOS]);
  new Sealer().seal(stream);
  const dictBlocks = [];
  const batchBlocks = [];
  let at = MAGIC.length;
  for (;;) {
    const m = readMessage(stream, at, '<closed file>');
    if (m.eos) break;
    const block = new FileBlock(m.metaEnd - m.offset, m.end - m.metaEnd, m.offset);
    if (m.type === 'dictionary') dictBlocks.push(block);
    if (m.type === 'record batch') batchBlocks.push(block);
    at = m.end;
  }
  const footer = Footer.encode(new Footer(schema, MetadataVersion.V5, batchBlocks, dictBlocks));
  const length = new Uint8Array(4);
  new DataView(length.buffer).setInt32(0, footer.length, true);
  return concat([stream, footer, length, MAGIC.subarray(0, 6)]);
}

/** Compacts the lossfmt file at `path` (any state) into a closed file: tmp file, fsync, rename, fsync dir.
 * `metaUpdate` is merged into its lossfmt.meta. The caller holds the file's lock. */
export function compactFile(path, metaUpdate = null) {
  const content = readFile(path);
  const metadata = new Map(content.metadata);
  if (metaUpdate) metadata.set('lossfmt.meta', stringifyMeta({ ...content.meta, ...metaUpdate }));
  if (metadata.has(SCHEMA_CHECKSUM_KEY)) metadata.set(SCHEMA_CHECKSUM_KEY, PLACEHOLDER); // sealed again
  const bytes = closedFileBytes(new Schema(fieldsOf(content.schema), metadata), content.rows);
  const tmp = join(dirname(path), `${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
