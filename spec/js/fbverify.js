// A flatbuffers verifier for the Arrow IPC tables lossfmt reads (Message, Schema, Footer; spec/FORMAT.md
// §1.7.1: the metadata is a flatbuffer "whose offsets stay inside the metadata"). It follows what
// flatbuffers' own verifier checks (pyarrow runs it): every offset, vtable, table, vector and string inside
// the buffer, aligned, strings NUL-terminated (and, as it does, not a table's own size). flatbuffers' JS accessors check none of it, so a damaged
// length would otherwise read past the end (undefined, not an error) for billions of elements.

// A table layout: one entry per field, in field order. A number is a scalar of that many bytes; STR a
// string; a table layout (array) a sub-table; {vec: size} a vector of scalars or structs of `size` bytes
// (its length aligned to 4); {tables: layout} a vector of tables; {union: {type: layout}} a union, its
// type in the field before it.
const STR = 'string';
const EMPTY = [];
// `required`: the fields Arrow's own reader requires (it refuses "Unexpected null field" otherwise).
const KEY_VALUE = Object.assign([STR, STR], { required: [0] });
const INT = [4, 1];
const TYPES = {
  1: EMPTY, 2: INT, 3: [2], 4: EMPTY, 5: EMPTY, 6: EMPTY, 7: [4, 4, 4], 8: [2], 9: [2, 4], 10: [2, STR], 11: [2],
  12: EMPTY, 13: EMPTY, 14: [2, { vec: 4 }], 15: [4], 16: [4], 17: [1], 18: [2], 19: EMPTY, 20: EMPTY, 21: EMPTY,
  22: EMPTY, 23: EMPTY, 24: EMPTY, 25: EMPTY, 26: EMPTY,
};
const DICTIONARY_ENCODING = Object.assign([8, INT, 1, 2], { required: [1] }); // (its index type)
const FIELD = [STR, 1, 1, { union: TYPES }, DICTIONARY_ENCODING, null, { tables: KEY_VALUE }];
FIELD[5] = { tables: FIELD }; // children
const SCHEMA = [2, { tables: FIELD }, { tables: KEY_VALUE }, { vec: 8 }];
const RECORD_BATCH = [8, { vec: 16 }, { vec: 16 }, [1, 1], { vec: 8 }];
const DICTIONARY_BATCH = [8, RECORD_BATCH, 1];
export const MESSAGE = [2, 1, { union: { 1: SCHEMA, 2: DICTIONARY_BATCH, 3: RECORD_BATCH } }, 8, { tables: KEY_VALUE }];
export const FOOTER = [2, SCHEMA, { vec: 24 }, { vec: 24 }, { tables: KEY_VALUE }];
const MAX_DEPTH = 64;

/** Verifies the flatbuffer in `bytes` (a Uint8Array) whose root table has `layout`; throws RangeError. */
export function verifyRoot(bytes, layout) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const need = (at, n, align, what) => {
    if (!(at >= 0 && at + n <= bytes.length)) throw new RangeError(`${what} at ${at} outside the metadata`);
    if (at % align !== 0) throw new RangeError(`${what} at ${at} is not aligned`);
  };
  const follow = (at, what) => {
    need(at, 4, 4, 'offset');
    const o = v.getUint32(at, true);
    if (o === 0 || o > 0x7fffffff) throw new RangeError(`${what} offset at ${at} is ${o}`); // (as flatbuffers)
    return at + o;
  };
  const vector = (at, size, what) => {
    const vec = follow(at, what);
    need(vec, 4, 4, what);
    const n = v.getUint32(vec, true);
    need(vec + 4, n * size, 1, what); // (as flatbuffers: only the length is aligned)
    return [vec + 4, n];
  };
  const table = (at, fields, depth) => {
    if (depth > MAX_DEPTH) throw new RangeError('tables nested too deep');
    need(at, 4, 4, 'table');
    const vt = at - v.getInt32(at, true);
    need(vt, 4, 2, 'vtable');
    const vtSize = v.getUint16(vt, true);
    if (vtSize % 2 !== 0) throw new RangeError(`vtable at ${vt} has odd size ${vtSize}`);
    need(vt, vtSize, 2, 'vtable');
    for (let i = 0; 4 + 2 * i < vtSize; i++) {
      const off = v.getUint16(vt + 4 + 2 * i, true);
      if (off === 0 || i >= fields.length) continue;
      const f = fields[i];
      const size = typeof f === 'number' ? f : 4;
      const pos = at + off;
      need(pos, size, size, `field ${i}`);
      if (typeof f === 'number') continue;
      if (f === STR) {
        const [start, n] = vector(pos, 1, 'string');
        need(start + n, 1, 1, 'string');
        if (bytes[start + n] !== 0) throw new RangeError(`string at ${start} is not NUL-terminated`);
      } else if (Array.isArray(f)) table(follow(pos, 'table'), f, depth + 1);
      else if (f.vec !== undefined) vector(pos, f.vec, 'vector');
      else if (f.tables !== undefined) {
        const [start, n] = vector(pos, 4, 'vector');
        for (let k = 0; k < n; k++) table(follow(start + 4 * k, 'table'), f.tables, depth + 1);
      } else {
        const typeOff = i > 0 && 4 + 2 * (i - 1) < vtSize ? v.getUint16(vt + 2 + 2 * i, true) : 0;
        const type = typeOff ? v.getUint8(at + typeOff) : 0;
        if (f.union[type]) table(follow(pos, 'table'), f.union[type], depth + 1);
      }
    }
    for (const i of fields.required ?? []) {
      if (4 + 2 * i >= vtSize || v.getUint16(vt + 4 + 2 * i, true) === 0) throw new RangeError(`table at ${at} lacks its field ${i}`);
    }
  };
  table(follow(0, 'root'), layout, 0);
}
