import { RullamaError } from '../errors.js';
import { blobSource, type ByteSource } from '../gguf/source.js';
import { checkPathSegments, type StoreDirectory, type StoreEntry } from './directory.js';

// The async iteration of FileSystemDirectoryHandle is in lib "DOM.AsyncIterable", which this
// project does not include; this is the part we use.
interface IterableDirectoryHandle {
  values(): AsyncIterable<FileSystemHandle>;
}

function domError(cause: unknown, what: string, path: string): RullamaError {
  const name = (cause as { name?: string } | undefined)?.name;
  if (name === 'NotFoundError') return new RullamaError('not-found', `no such ${what}: ${path}`, { cause });
  if (name === 'TypeMismatchError') {
    return new RullamaError('not-found', `${path} is not a ${what}`, { cause });
  }
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return new RullamaError('io', `no permission to read ${path}; pick the folder again`, { cause });
  }
  return new RullamaError('io', `cannot read ${path}: ${String(cause)}`, { cause });
}

/**
 * A StoreDirectory over a FileSystemDirectoryHandle (from showDirectoryPicker(), a drop, or
 * OPFS), in a page or a worker. Files are read through File (Blob) slices, so nothing is
 * loaded whole. Read permission must already be granted.
 */
export function fromDirectoryHandle(handle: FileSystemDirectoryHandle): StoreDirectory {
  const show = (path: readonly string[]): string => [handle.name, ...path].join('/');

  const directory = async (path: readonly string[]): Promise<FileSystemDirectoryHandle> => {
    checkPathSegments(path);
    let dir = handle;
    for (let i = 0; i < path.length; i++) {
      try {
        dir = await dir.getDirectoryHandle(path[i]!);
      } catch (cause) {
        throw domError(cause, 'folder', show(path.slice(0, i + 1)));
      }
    }
    return dir;
  };

  return {
    displayPath: (path) => {
      checkPathSegments(path);
      return show(path);
    },

    async entries(path): Promise<StoreEntry[]> {
      const dir = await directory(path);
      const out: StoreEntry[] = [];
      try {
        for await (const child of (dir as unknown as IterableDirectoryHandle).values()) {
          if (child.kind === 'file' || child.kind === 'directory') out.push({ name: child.name, kind: child.kind });
        }
      } catch (cause) {
        throw domError(cause, 'folder', show(path));
      }
      out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return out;
    },

    async openFile(path): Promise<ByteSource> {
      checkPathSegments(path);
      if (path.length === 0) throw new RullamaError('bad-argument', 'openFile needs a file path, not the root');
      const dir = await directory(path.slice(0, -1));
      let file: File;
      try {
        file = await (await dir.getFileHandle(path[path.length - 1]!)).getFile();
      } catch (cause) {
        throw domError(cause, 'file', show(path));
      }
      return blobSource(file, show(path));
    },
  };
}
