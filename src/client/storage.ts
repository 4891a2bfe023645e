/**
 * What rullama keeps in the page's IndexedDB (database "rullama"): saved conversations (messages
 * plus the KV snapshot, so a reload resumes without prefilling again) and the Ollama folder handle
 * the user picked.
 */
import type { ChatMessage } from '../core/chat/index.js';
import { RullamaError } from '../core/errors.js';

const DB_NAME = 'rullama';
const DB_VERSION = 1;
const CONVERSATIONS = 'conversations';
const HANDLES = 'handles';

/** Format version of a saved conversation record. */
export const SAVED_CONVERSATION_VERSION = 1;

export interface SavedConversation {
  version: number;
  /** The model it was saved with (its source key): a snapshot only fits that model. */
  model: string;
  messages: ChatMessage[];
  /** The conversation's KV cache and tokens (Conversation.saveState), or null. */
  snapshot: ArrayBuffer | null;
  savedAt: number;
}

let opened: Promise<IDBDatabase> | null = null;

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(new RullamaError('io', `IndexedDB: ${r.error?.message ?? 'request failed'}`, { cause: r.error }));
  });
}

function database(): Promise<IDBDatabase> {
  if (typeof indexedDB === 'undefined') return Promise.reject(new RullamaError('unsupported', 'this browser has no IndexedDB'));
  opened ??= new Promise<IDBDatabase>((resolve, reject) => {
    const r = indexedDB.open(DB_NAME, DB_VERSION);
    r.onupgradeneeded = () => {
      const db = r.result;
      if (!db.objectStoreNames.contains(CONVERSATIONS)) db.createObjectStore(CONVERSATIONS);
      if (!db.objectStoreNames.contains(HANDLES)) db.createObjectStore(HANDLES);
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => {
      opened = null;
      reject(new RullamaError('io', `IndexedDB: ${r.error?.message ?? 'cannot open'}`, { cause: r.error }));
    };
  });
  return opened;
}

async function store(name: string, mode: IDBTransactionMode): Promise<IDBObjectStore> {
  return (await database()).transaction(name, mode).objectStore(name);
}

export async function putConversation(key: string, record: SavedConversation): Promise<void> {
  await request((await store(CONVERSATIONS, 'readwrite')).put(record, key));
}

export async function getConversation(key: string): Promise<SavedConversation | null> {
  const record = (await request((await store(CONVERSATIONS, 'readonly')).get(key))) as SavedConversation | undefined;
  if (!record || record.version !== SAVED_CONVERSATION_VERSION || !Array.isArray(record.messages)) return null;
  return record;
}

export async function deleteConversation(key: string): Promise<void> {
  await request((await store(CONVERSATIONS, 'readwrite')).delete(key));
}

export async function putHandle(key: string, handle: FileSystemHandle): Promise<void> {
  await request((await store(HANDLES, 'readwrite')).put(handle, key));
}

export async function getHandle<T extends FileSystemHandle>(key: string): Promise<T | null> {
  return ((await request((await store(HANDLES, 'readonly')).get(key))) as T | undefined) ?? null;
}
