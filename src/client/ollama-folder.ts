/**
 * The Ollama models folder (~/.ollama/models, or its parent): asked for once through the
 * directory picker, remembered in IndexedDB, and asked permission for again after a reload (the
 * browser requires a click for that).
 */
import { RullamaError } from '../core/errors.js';
import { getHandle, putHandle } from './storage.js';

const KEY = 'ollama-models';

type PermissionState = 'granted' | 'denied' | 'prompt';
interface PermissionHandle {
  queryPermission?(options: { mode: 'read' }): Promise<PermissionState>;
  requestPermission?(options: { mode: 'read' }): Promise<PermissionState>;
}
type Picker = (options?: { id?: string; mode?: 'read' | 'readwrite'; startIn?: string }) => Promise<FileSystemDirectoryHandle>;

let current: FileSystemDirectoryHandle | null = null;

/** Whether this browser can ask for a folder (Chromium-based browsers can; Firefox and Safari cannot). */
export function canPickFolder(): boolean {
  return typeof (globalThis as { showDirectoryPicker?: Picker }).showDirectoryPicker === 'function';
}

/**
 * The remembered folder: `ready` when it can be read now, `needs-permission` when a click must
 * grant access again (call `grantOllamaFolder` from that click), `none` when none was picked.
 */
export async function rememberedOllamaFolder(): Promise<{ status: 'ready' | 'needs-permission' | 'none'; handle: FileSystemDirectoryHandle | null }> {
  const handle = current ?? (await getHandle<FileSystemDirectoryHandle>(KEY).catch(() => null));
  if (!handle) return { status: 'none', handle: null };
  current = handle;
  const state = (await (handle as unknown as PermissionHandle).queryPermission?.({ mode: 'read' })) ?? 'granted';
  return { status: state === 'granted' ? 'ready' : 'needs-permission', handle };
}

/**
 * From a click: grants read access to the remembered folder again, or asks for one with the
 * directory picker. Resolves with a readable folder handle.
 */
export async function grantOllamaFolder(): Promise<FileSystemDirectoryHandle> {
  const { status, handle } = await rememberedOllamaFolder();
  if (status === 'ready') return handle!;
  if (status === 'needs-permission') {
    const state = await (handle as unknown as PermissionHandle).requestPermission?.({ mode: 'read' });
    if (state === 'granted') return handle!;
  }
  return pickOllamaFolder();
}

/** From a click: asks for the Ollama models folder and remembers it. */
export async function pickOllamaFolder(): Promise<FileSystemDirectoryHandle> {
  const picker = (globalThis as { showDirectoryPicker?: Picker }).showDirectoryPicker;
  if (!picker) {
    throw new RullamaError('unsupported', 'this browser cannot open folders (showDirectoryPicker): use Chrome or Edge, or pick the model file itself from ~/.ollama/models/blobs');
  }
  let handle: FileSystemDirectoryHandle;
  try {
    handle = await picker({ id: 'rullama-ollama', mode: 'read' });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw new RullamaError('aborted', 'no folder was picked', { cause: e });
    throw new RullamaError('io', `cannot open the folder: ${(e as Error).message}`, { cause: e });
  }
  await setOllamaFolder(handle);
  return handle;
}

/** Remembers `handle` as the Ollama models folder (a picked folder, or an OPFS folder). */
export async function setOllamaFolder(handle: FileSystemDirectoryHandle): Promise<void> {
  current = handle;
  await putHandle(KEY, handle).catch(() => {});
}
