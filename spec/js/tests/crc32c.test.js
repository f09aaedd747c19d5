// The checksum (spec/FORMAT.md §1.6): CRC-32C itself, and sealing/verifying a span with the placeholder.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, crc32cHex } from '../crc32c.js';

test('crc32c of "123456789" is the RFC 3720 check value 0xe3069283', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32cHex(new TextEncoder().encode('123456789')), 'e3069283');
});

test('crc32c continues across chunks and of nothing is 0', () => {
  const all = new TextEncoder().encode('lossfmt checksums span several messages');
  assert.equal(crc32c(all.subarray(10), crc32c(all.subarray(0, 10))), crc32c(all));
  assert.equal(crc32c(new Uint8Array(0)), 0);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});
