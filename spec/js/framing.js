// The bytes of a lossfmt file (spec/FORMAT.md §1): the magic, the encapsulated Arrow IPC messages, the torn
// tail, the EOS marker and footer of a closed file, and the record batch checksums (§1.6). The reader and the
// writer both go through this module; nothing else looks at message framing.

import * as flatbuffers from 'flatbuffers';
import { Message as FbMessage } from 'apache-arrow/fb/message';
import { MessageHeader } from 'apache-arrow/fb/message-header';
import { MetadataVersion } from 'apache-arrow/fb/metadata-version';
import { Endianness } from 'apache-arrow/fb/endianness';
import { Footer as FbFooter } from 'apache-arrow/fb/footer';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { crc32c } from './crc32c.js';
import { FOOTER, MESSAGE, verifyRoot } from './fbverify.js';

export const MAGIC = new Uint8Array([0x41, 0x52, 0x52, 0x4f, 0x57, 0x31, 0, 0]); // "ARROW1\0\0"
export const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
export const CHECKSUM_KEY = 'lossfmt.crc32c';
export const SCHEMA_CHECKSUM_KEY = 'lossfmt.schema_crc32c';
// A content message's metadata is a few hundred bytes: a longer announced length is damage, not a torn tail.
const MAX_METADATA = 1 << 20;
const MAX_SCHEMA_METADATA = 1 << 28;
export const PLACEHOLDER = '00000000';
const HEX8 = /^[0-9a-f]{8}$/;
const ASCII = new TextEncoder();

/** A file that is not lossfmt, or is damaged (anything but a torn tail). Names the file and the byte offset. */
export class LossFormatError extends Error {
  constructor(file, offset, reason) {
    super(offset == null ? `${file}: ${reason}` : `${file}: ${reason} (message at byte ${offset})`);
    this.name = 'LossFormatError';
    this.file = file;
    this.offset = offset;
  }
}

// §1.7.1: a flatbuffer's offsets stay inside the metadata. flatbuffers' reads do not check that (a byte past
// the end reads as undefined, so a damaged vector length loops or allocates for billions of elements); every
// flatbuffer read in this process, arrow-js's included, goes through these checked ones, which throw.
const BB = flatbuffers.ByteBuffer.prototype;
function inside(bb, at, n) {
  if (!(Number.isInteger(at) && at >= 0 && at + n <= bb.bytes_.length)) throw new RangeError(`flatbuffer offset ${at} outside the metadata`);
}
BB.readUint8 = function readUint8(at) {
  inside(this, at, 1);
  return this.bytes_[at];
};
BB.readUint16 = function readUint16(at) {
  inside(this, at, 2);
  return this.bytes_[at] | (this.bytes_[at + 1] << 8);
};
BB.readInt32 = function readInt32(at) {
  inside(this, at, 4);
  return this.bytes_[at] | (this.bytes_[at + 1] << 8) | (this.bytes_[at + 2] << 16) | (this.bytes_[at + 3] << 24);
};
BB.__vector_len = function vectorLength(at) {
  const vec = at + this.readInt32(at);
  const n = this.readInt32(vec);
  inside(this, vec + 4, n); // (each element is at least a byte)
  return n;
};
const decodeString = BB.__string;
BB.__string = function string(at, encoding) {
  this.__vector_len(at);
  return decodeString.call(this, at, encoding);
};

const TYPE_NAMES = { [MessageHeader.Schema]: 'schema', [MessageHeader.DictionaryBatch]: 'dictionary', [MessageHeader.RecordBatch]: 'record batch' };

function int32(bytes, at) {
  return new DataView(bytes.buffer, bytes.byteOffset + at, 4).getInt32(0, true);
}

/**
 * One message at `at`: {offset, metaStart, metaEnd, end, type, fb} (fb: the flatbuffer Message), {eos: true}
 * for the EOS marker, or {torn: true} when fewer bytes remain than its lengths announce (the only torn tail).
 * A complete message that does not parse throws LossFormatError.
 */
export function readMessage(bytes, at, file) {
  if (bytes.length - at < 8) {
    // A torn tail starts like a message: the bytes left are a prefix of the continuation marker FF FF FF FF.
    if (bytes.subarray(at, at + 4).every((b) => b === 0xff)) return { torn: true };
    throw new LossFormatError(file, at, 'no IPC continuation marker 0xFFFFFFFF');
  }
  if (int32(bytes, at) !== -1) throw new LossFormatError(file, at, 'no IPC continuation marker 0xFFFFFFFF');
  const metaLength = int32(bytes, at + 4);
  if (metaLength === 0) return { eos: true };
  if (metaLength < 0 || metaLength % 8 !== 0 || metaLength > (at === MAGIC.length ? MAX_SCHEMA_METADATA : MAX_METADATA)) {
    throw new LossFormatError(file, at, `impossible metadata length ${metaLength}`);
  }
  const metaStart = at + 8;
  const metaEnd = metaStart + metaLength;
  if (metaEnd > bytes.length) return { torn: true };
  let fb;
  let bodyLength;
  let type;
  let version;
  try {
    verifyRoot(bytes.subarray(metaStart, metaEnd), MESSAGE);
    fb = FbMessage.getRootAsMessage(new flatbuffers.ByteBuffer(bytes.subarray(metaStart, metaEnd)));
    type = fb.headerType();
    bodyLength = fb.bodyLength();
    version = fb.version();
  } catch (e) {
    throw new LossFormatError(file, at, `metadata is not a flatbuffer Message (${e.message})`);
  }
  if (!(type in TYPE_NAMES)) throw new LossFormatError(file, at, `unexpected message type ${type}`);
  if (version !== MetadataVersion.V5) throw new LossFormatError(file, at, `metadata version ${version + 1} is not V5`);
  if (bodyLength < 0n || bodyLength > BigInt(Number.MAX_SAFE_INTEGER) || bodyLength % 8n !== 0n) {
    throw new LossFormatError(file, at, `bad body length ${bodyLength} (a multiple of 8 is required)`);
  }
  // §1.7.2 before the torn-tail rule: a body length its buffers contradict is damage, not a crash mid-write.
  checkBodyLength(fb, type, Number(bodyLength), (reason) => new LossFormatError(file, at, reason));
  const end = metaEnd + Number(bodyLength);
  if (end > bytes.length) return { torn: true };
  return { offset: at, metaStart, metaEnd, end, type: TYPE_NAMES[type], fb };
}

/**
 * Where, after the incomplete message at `at`, complete messages start that run whole to the end of the file
 * (or to an EOS, or to a message cut short by the end), or -1. A crash leaves nothing after its torn message:
 * such messages are later flushes, and the length at `at` is damage, not a torn tail (§1.2).
 */
export function messagesAfter(bytes, at) {
  for (let q = at + 8; bytes.length - q >= 8; q += 8) {
    if (int32(bytes, q) === -1 && tiles(bytes, q)) return q;
  }
  return -1;
}

function tiles(bytes, at) {
  let complete = false;
  while (bytes.length - at >= 8) {
    let m;
    try {
      m = readMessage(bytes, at, '');
    } catch {
      return false;
    }
    if (m.torn || m.eos) return complete;
    if (m.type === 'schema') return false;
    complete = true;
    at = m.end;
  }
  return complete;
}

/** A batch's buffers lie inside its body, which ends less than 64 bytes after the last of them (§1.7.2). */
function checkBodyLength(fb, type, bodyLength, error) {
  if (type === MessageHeader.Schema) return;
  let last = 0;
  try {
    const rb = type === MessageHeader.RecordBatch ? fb.header(new FbRecordBatch()) : fb.header(new FbDictionaryBatch())?.data();
    if (!rb) return; // (no header: reported by the body checks)
    for (let i = 0; i < rb.buffersLength(); i++) {
      const b = rb.buffers(i);
      const [offset, length] = [b.offset(), b.length()];
      if (offset < 0n || length < 0n || offset + length > BigInt(bodyLength)) throw error(`buffer ${i} (${offset}+${length}) lies outside the ${bodyLength}-byte body`);
      last = Math.max(last, Number(offset + length));
    }
  } catch (e) {
    if (e instanceof LossFormatError) throw e;
    throw error(`metadata is not a flatbuffer Message (${e.message})`);
  }
  if (bodyLength - last >= 64) throw error(`body length ${bodyLength} does not match its buffers (end ${last})`);
}

/**
 * Where the record batch message `m`'s checksum value lies in the file and what it says: {at, value}, or
 * null when the message carries no `lossfmt.crc32c` key. `at` is the file offset of the 8 value characters.
 */
export function checksumField(bytes, m) {
  const [holder, key] = m.type === 'schema' ? [m.fb.header(new FbSchema()), SCHEMA_CHECKSUM_KEY] : [m.fb, CHECKSUM_KEY];
  for (let i = 0; i < holder.customMetadataLength(); i++) {
    const kv = holder.customMetadata(i);
    if (kv.key() !== key) continue;
    const value = kv.value() ?? '';
    // The value's position: the KeyValue table's field 1 (vtable slot 6) points at a length-prefixed string.
    const field = kv.bb.__offset(kv.bb_pos, 6);
    if (!field) return { at: -1, value: '', length: 0 }; // (no value: not 8 hex digits)
    const slot = kv.bb_pos + field;
    const str = slot + kv.bb.readInt32(slot);
    return { at: m.metaStart + str + 4, value, length: kv.bb.readInt32(str) };
  }
  return null;
}

/** CRC-32C of bytes[start, end) with the 8 checksum characters at `at` read as ASCII '0'. */
export function spanChecksum(bytes, start, end, at) {
  let crc = crc32c(bytes.subarray(start, at));
  crc = crc32c(ASCII.encode(PLACEHOLDER), crc);
  return crc32c(bytes.subarray(at + 8, end), crc);
}

/**
 * Verifies message `m`'s checksum: a record batch's span starts at `spanStart` (the end of the previous
 * batch, or of the schema message); the schema message's span is itself. `required`: the file promises one.
 */
export function verifyChecksum(bytes, m, spanStart, required, file) {
  const key = m.type === 'schema' ? SCHEMA_CHECKSUM_KEY : CHECKSUM_KEY;
  const field = checksumField(bytes, m);
  if (field === null) {
    if (required) throw new LossFormatError(file, m.offset, `${m.type} message has no ${key} (the file's schema promises checksums)`);
    return;
  }
  // A schema checksum of 00000000 was never filled in (a writer wrote the placeholder only): not verified.
  if (m.type === 'schema' && field.value === PLACEHOLDER) return;
  if (field.length !== 8 || !HEX8.test(field.value)) {
    throw new LossFormatError(file, m.offset, `${key} is ${JSON.stringify(field.value)}, not 8 lowercase hex digits`);
  }
  const actual = spanChecksum(bytes, spanStart, m.end, field.at).toString(16).padStart(8, '0');
  if (actual !== field.value) {
    throw new LossFormatError(file, m.offset, `checksum mismatch: ${key} says ${field.value}, bytes ${spanStart}..${m.end} give ${actual}`);
  }
}

/**
 * Fills in the checksum of every record batch message in `chunk` (whole messages as an Arrow writer emits
 * them, optionally after the magic, optionally followed by EOS and footer), in place. One Sealer per stream:
 * a batch's span starts where the previous batch (or, before the first one, the schema message) ended, and
 * the running CRC carries across chunks.
 */
export class Sealer {
  constructor() {
    this.crc = 0; // CRC-32C of the span bytes seen so far (the current batch's dictionaries)
  }

  seal(chunk) {
    let at = startsWithMagic(chunk) ? MAGIC.length : 0;
    while (at < chunk.length) {
      const m = readMessage(chunk, at, '<chunk>');
      if (m.eos) break;
      if (m.torn) throw new Error(`Sealer: chunk ends inside a message at byte ${at}`);
      if (m.type === 'schema') {
        const field = checksumField(chunk, m);
        if (field !== null) chunk.set(ASCII.encode(spanChecksum(chunk, at, m.end, field.at).toString(16).padStart(8, '0')), field.at);
        this.crc = 0;
      } else if (m.type === 'dictionary') this.crc = crc32c(chunk.subarray(at, m.end), this.crc);
      else {
        const field = checksumField(chunk, m);
        if (field === null || field.value !== PLACEHOLDER) throw new Error('Sealer: a record batch without the checksum placeholder');
        const crc = crc32c(chunk.subarray(at, m.end), this.crc);
        chunk.set(ASCII.encode(crc.toString(16).padStart(8, '0')), field.at);
        this.crc = 0;
      }
      at = m.end;
    }
    return chunk;
  }
}

function startsWithMagic(bytes) {
  return bytes.length >= MAGIC.length && MAGIC.every((b, i) => bytes[i] === b);
}

export function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Whether `bytes` ends as a closed file does (§1.2): "ARROW1" after a footer length L that points just past an
 * EOS marker, after the schema message ending at `schemaEnd`. A live file whose torn last message happens to
 * end with the bytes "ARROW1" (a tag stored uncompressed) does not.
 */
export function endsClosed(bytes, schemaEnd) {
  const size = bytes.length;
  if (size < schemaEnd + 18 || !MAGIC.subarray(0, 6).every((b, i) => bytes[size - 6 + i] === b)) return false;
  const footerStart = size - 10 - int32(bytes, size - 10);
  if (!(schemaEnd + 8 <= footerStart && footerStart < size - 10 && EOS.every((b, i) => bytes[footerStart - 8 + i] === b))) return false;
  // And a footer there whose blocks end at that EOS (bytes that only look like one, in a torn tail, are not).
  try {
    const { footer } = readFooter(bytes, footerStart - 8);
    let last = schemaEnd;
    const blocks = [[footer.recordBatchesLength(), (i) => footer.recordBatches(i)], [footer.dictionariesLength(), (i) => footer.dictionaries(i)]];
    for (const [n, get] of blocks) {
      for (let i = 0; i < n; i++) {
        const b = get(i);
        last = Math.max(last, Number(b.offset()) + b.metaDataLength() + Number(b.bodyLength()));
      }
    }
    return last === footerStart - 8;
  } catch {
    return false; // (a damaged footer after a stream that ends with EOS is still closed: the reader's scan)
  }
}

/**
 * The footer of a closed file, or null when the bytes after the EOS marker at `eosAt` are not a complete
 * footer (then the file is not closed). Returns {footer, start} with the flatbuffer Footer.
 */
export function readFooter(bytes, eosAt) {
  const tail = bytes.length - 10;
  if (eosAt + 8 > tail) return null;
  const footerLength = int32(bytes, tail);
  if (bytes.length !== eosAt + 8 + footerLength + 10) return null;
  if (!MAGIC.subarray(0, 6).every((b, i) => bytes[tail + 4 + i] === b)) return null;
  const start = eosAt + 8;
  return { footer: FbFooter.getRootAsFooter(new flatbuffers.ByteBuffer(bytes.subarray(start, start + footerLength))), start };
}

/**
 * Verifies a Footer flatbuffer (§1.3: any damage in a closed file is corruption, even where a lenient reader
 * would not look): the flatbuffer itself (fbverify.js), its version V5 and its schema (little-endian). Throws RangeError.
 */
export function verifyFooter({ footer }) {
  if (footer.bb.capacity() % 8 !== 0) throw new RangeError(`footer length ${footer.bb.capacity()} is not a multiple of 8`);
  verifyRoot(footer.bb.bytes(), FOOTER);
  if (footer.version() !== MetadataVersion.V5) throw new RangeError(`footer metadata version ${footer.version() + 1} is not V5`);
  if (footer.schema() === null) throw new RangeError('the footer has no schema');
  if (footer.schema().endianness() !== Endianness.Little) throw new RangeError("the footer's schema is big-endian");
}
