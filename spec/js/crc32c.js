// CRC-32C (Castagnoli, RFC 3720), the checksum of spec/FORMAT.md §1.6: reflected polynomial 0x82F63B78,
// initial value and final xor 0xFFFFFFFF. Table-driven, one byte at a time: lossfmt spans are small.

const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c >>> 0;
}

/** CRC-32C of `bytes` (a Uint8Array), continuing from `crc` (the value of the bytes before them). */
export function crc32c(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** The checksum as the 8 lowercase hex characters stored in a record batch's custom metadata. */
export function crc32cHex(bytes) {
  return crc32c(bytes).toString(16).padStart(8, '0');
}
