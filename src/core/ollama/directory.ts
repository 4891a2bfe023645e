import { RullamaError } from '../errors.js';
import type { ByteSource } from '../gguf/source.js';

/** One child of a folder. Anything that is neither a file nor a folder is left out. */
export interface StoreEntry {
  name: string;
  kind: 'file' | 'directory';
}

/**
 * Read-only access to a folder tree, so that the same Ollama store logic runs over a Node path
 * (`fromNodePath` in node-dir.ts) and over a browser FileSystemDirectoryHandle
 * (`fromDirectoryHandle` in handle-dir.ts). Paths are arrays of plain names relative to the root;
 * implementations reject `..`, `.`, empty names and names with separators (checkPathSegments).
 *
 * A missing file or folder, or one of the wrong kind, is RullamaError('not-found'); any other
 * failure (permissions, I/O) is RullamaError('io').
 */
export interface StoreDirectory {
  /** The children of a folder (`[]` is the root). */
  entries(path: readonly string[]): Promise<StoreEntry[]>;
  /** Opens a file for random access. Callers close it (when the source has close()). */
  openFile(path: readonly string[]): Promise<ByteSource>;
  /** How to show a path to a person in messages (`/home/me/.ollama/models/blobs/sha256-…`). */
  displayPath(path: readonly string[]): string;
}

/**
 * Throws RullamaError('bad-argument') unless every segment is a plain file or folder name:
 * not empty, not `.` or `..`, no `/`, `\` or NUL. Keeps hostile names inside the root.
 */
export function checkPathSegments(path: readonly string[]): void {
  for (const segment of path) {
    if (
      typeof segment !== 'string' ||
      segment === '' ||
      segment === '.' ||
      segment === '..' ||
      /[/\\\0]/.test(segment)
    ) {
      throw new RullamaError('bad-argument', `invalid path segment ${JSON.stringify(segment)} in ${JSON.stringify(path)}`);
    }
  }
}
