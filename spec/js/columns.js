// The columns of lossfmt v1 (spec/FORMAT.md §2): the one place the JS reader names them.

import { Type } from 'apache-arrow';

function isDict(t, bits) {
  return t.typeId === Type.Dictionary && t.indices.bitWidth === bits && t.indices.isSigned && t.dictionary.typeId === Type.Utf8;
}

function isInt64(t) {
  return t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned;
}

/** Each column: its name, a check of its Arrow type, the type as the spec writes it, and whether it may
 * hold nulls (checked on the data, not on the field's nullable flag). */
export const COLUMNS = [
  { name: 'step', check: isInt64, type: 'int64', nullable: false },
  { name: 'tag', check: (t) => isDict(t, 32), type: 'dictionary<int32, utf8>', nullable: false },
  { name: 'value', check: (t) => t.typeId === Type.Float && t.precision === 2, type: 'float64', nullable: false },
  { name: 'count', check: isInt64, type: 'int64', nullable: false },
  { name: 'epoch', check: isInt64, type: 'int64', nullable: true },
  { name: 'wall_time', check: (t) => t.typeId === Type.Timestamp && t.unit === 2 && t.timezone === 'UTC', type: 'timestamp[us, UTC]', nullable: false },
  { name: 'reduction', check: (t) => isDict(t, 8), type: 'dictionary<int8, utf8>', nullable: false },
];
export const COLUMN_NAMES = COLUMNS.map((c) => c.name);
