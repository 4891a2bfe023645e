import { open } from 'node:fs/promises';
import { RullamaError, throwIfAborted } from '../errors.js';
import { checkRange, type ByteSource } from './source.js';

/** A source over a local file (Node only; not part of the browser bundle). Close it when done. */
export async function nodeFileSource(path: string): Promise<ByteSource & { close(): Promise<void> }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RullamaError('not-found', `no such file: ${path}`, { cause });
    throw new RullamaError('io', `cannot open ${path}: ${String(cause)}`, { cause });
  }
  const { size } = await handle.stat();
  const fh = handle;
  const self = {
    name: path,
    size,
    async read(offset: number, length: number, signal?: AbortSignal) {
      checkRange(self, offset, length);
      throwIfAborted(signal);
      const bytes = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(bytes, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new RullamaError('truncated', `${path} ended early`, { offset: offset + done });
        }
        done += bytesRead;
      }
      return bytes;
    },
    close: () => fh.close(),
  } satisfies ByteSource & { close(): Promise<void> };
  return self;
}
