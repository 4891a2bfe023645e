/**
 * Training checkpoints in the origin private file system (OPFS), under `rullama-checkpoints/`,
 * one file per run key (the trainer's run id: a hash of the model, the adapter layout, the data
 * and the options), so a page reloaded with the same model and dataset continues where it stopped.
 * A write replaces the file whole (createWritable commits on close), so a crash mid-write leaves
 * the previous checkpoint.
 */
import { RullamaError } from '../core/errors.js';

const DIRECTORY = 'rullama-checkpoints';

async function directory(create: boolean): Promise<FileSystemDirectoryHandle | null> {
  const storage = (globalThis.navigator as Navigator | undefined)?.storage;
  if (!storage?.getDirectory) throw new RullamaError('unsupported', 'this browser has no origin private file system (OPFS) for checkpoints');
  const root = await storage.getDirectory();
  try {
    return await root.getDirectoryHandle(DIRECTORY, { create });
  } catch (e) {
    if ((e as Error)?.name === 'NotFoundError') return null;
    throw e;
  }
}

function fileName(key: string): string {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(key)) throw new RullamaError('bad-argument', `not a checkpoint key: ${key}`);
  return `${key}.ckpt`;
}

/** Stores `bytes` as the checkpoint of `key` (replacing the one before). */
export async function saveCheckpoint(key: string, bytes: Uint8Array): Promise<void> {
  const dir = (await directory(true))!;
  const handle = await dir.getFileHandle(fileName(key), { create: true });
  const writable = await handle.createWritable();
  try {
    await writable.write(bytes as Uint8Array<ArrayBuffer>);
    await writable.close();
  } catch (e) {
    await writable.abort().catch(() => {});
    throw e;
  }
}

/** The checkpoint of `key`, or null when there is none. */
export async function loadCheckpoint(key: string): Promise<Uint8Array<ArrayBuffer> | null> {
  const dir = await directory(false);
  if (!dir) return null;
  try {
    const file = await (await dir.getFileHandle(fileName(key))).getFile();
    return new Uint8Array(await file.arrayBuffer());
  } catch (e) {
    if ((e as Error)?.name === 'NotFoundError') return null;
    throw e;
  }
}

/** Deletes the checkpoint of `key` (nothing when there is none). */
export async function deleteCheckpoint(key: string): Promise<void> {
  const dir = await directory(false);
  try {
    await dir?.removeEntry(fileName(key));
  } catch (e) {
    if ((e as Error)?.name !== 'NotFoundError') throw e;
  }
}
