// Node only: the only file of the Ollama store that imports node:*, so that browser bundles,
// which import index.ts, never pull it in. Import it directly: 'core/ollama/node-dir.js'.
import { readdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { RullamaError } from '../errors.js';
import { nodeFileSource } from '../gguf/node-source.js';
import type { ByteSource } from '../gguf/source.js';
import { checkPathSegments, type StoreDirectory, type StoreEntry } from './directory.js';
import { OllamaStore } from './store.js';

function fsError(cause: unknown, what: string, path: string): RullamaError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new RullamaError('not-found', `no such ${what}: ${path}`, { cause });
  if (code === 'EACCES' || code === 'EPERM') return new RullamaError('io', `no permission to read ${path}`, { cause });
  return new RullamaError('io', `cannot read ${path}: ${String(cause)}`, { cause });
}

/** A StoreDirectory over a local folder. Symbolic links are followed. */
export function fromNodePath(root: string): StoreDirectory {
  const base = resolve(root);
  const full = (path: readonly string[]): string => {
    checkPathSegments(path);
    return join(base, ...path);
  };
  return {
    displayPath: (path) => full(path),

    async entries(path): Promise<StoreEntry[]> {
      const dir = full(path);
      let dirents;
      try {
        dirents = await readdir(dir, { withFileTypes: true });
      } catch (cause) {
        throw fsError(cause, 'folder', dir);
      }
      const out: StoreEntry[] = [];
      await Promise.all(
        dirents.map(async (d) => {
          let isFile = d.isFile();
          let isDir = d.isDirectory();
          if (d.isSymbolicLink()) {
            try {
              const s = await stat(join(dir, d.name));
              isFile = s.isFile();
              isDir = s.isDirectory();
            } catch {
              return; // a dangling link is not there
            }
          }
          if (isFile) out.push({ name: d.name, kind: 'file' });
          else if (isDir) out.push({ name: d.name, kind: 'directory' });
        }),
      );
      out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return out;
    },

    async openFile(path): Promise<ByteSource> {
      const file = full(path);
      let info;
      try {
        info = await stat(file);
      } catch (cause) {
        throw fsError(cause, 'file', file);
      }
      if (!info.isFile()) throw new RullamaError('not-found', `${file} is not a file`);
      return nodeFileSource(file);
    },
  };
}

/**
 * Where Ollama keeps its models, as Ollama decides it: $OLLAMA_MODELS (spaces and quotes
 * trimmed) when set, else ~/.ollama/models. (The Linux system service runs as the `ollama` user,
 * whose models are in /usr/share/ollama/.ollama/models; see ollamaModelsPathCandidates.)
 */
export function defaultOllamaModelsPath(env: Record<string, string | undefined> = process.env, home: string = homedir()): string {
  const fromEnv = (env.OLLAMA_MODELS ?? '').replace(/^["' ]+|["' ]+$/g, '');
  if (fromEnv !== '') return fromEnv;
  return join(home, '.ollama', 'models');
}

/** Places worth trying, best first: the default path, then the Linux service's folder. */
export function ollamaModelsPathCandidates(env: Record<string, string | undefined> = process.env, home: string = homedir()): string[] {
  const candidates = [defaultOllamaModelsPath(env, home)];
  if (process.platform === 'linux') candidates.push('/usr/share/ollama/.ollama/models');
  return [...new Set(candidates)];
}

/** An OllamaStore over a local folder, by default the one Ollama uses. */
export function openNodeOllamaStore(root: string = defaultOllamaModelsPath()): OllamaStore {
  return new OllamaStore(fromNodePath(root));
}
