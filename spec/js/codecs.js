// Body compression codecs (spec/FORMAT.md §1.1): ZSTD, which every reader MUST support and every v1 writer
// uses, and LZ4_FRAME, which readers SHOULD support. arrow-js 21 ships none: they are registered in its
// compressionRegistry once, when this module is first imported.

import { compressionRegistry, CompressionType } from 'apache-arrow';
import { decompress as zstdDecompress } from 'fzstd';
import * as zstdWasm from '@bokuweb/zstd-wasm';
import lz4 from 'lz4js';

await zstdWasm.init();

/** A copy at byte offset 0 of a fresh ArrayBuffer: arrow-js makes typed arrays (Float64Array, BigInt64Array)
 * directly over a codec's output, which throws unless the output starts at an 8-byte aligned offset. */
function aligned(bytes) {
  return bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
}

export const CODECS = {
  [CompressionType.ZSTD]: {
    name: 'ZSTD',
    encode: (bytes) => aligned(zstdWasm.compress(bytes, 3)),
    decode: (bytes) => aligned(zstdDecompress(bytes)),
  },
  [CompressionType.LZ4_FRAME]: {
    name: 'LZ4_FRAME',
    decode: (bytes) => aligned(Uint8Array.from(lz4.decompress(bytes))),
  },
};

compressionRegistry.set(CompressionType.ZSTD, CODECS[CompressionType.ZSTD]);
compressionRegistry.set(CompressionType.LZ4_FRAME, { decode: CODECS[CompressionType.LZ4_FRAME].decode });
