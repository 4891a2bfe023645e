import { expect } from '@open-wc/testing';
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { OllamaMediaType, OllamaStore, Sha256, fromDirectoryHandle, type OllamaLayer } from '../../src/core/ollama/index.js';
import { sampleGGUF } from '../shared/gguf-craft.js';

// The async iteration of directory handles is not in the project's DOM lib.
type IterableDirectory = FileSystemDirectoryHandle & { keys(): AsyncIterable<string> };

async function subtleHex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

async function writeFileAt(dir: FileSystemDirectoryHandle, path: string[], data: Uint8Array | string): Promise<void> {
  let d = dir;
  for (const name of path.slice(0, -1)) d = await d.getDirectoryHandle(name, { create: true });
  const writable = await (await d.getFileHandle(path[path.length - 1]!, { create: true })).createWritable();
  await writable.write(typeof data === 'string' ? data : (data as Uint8Array<ArrayBuffer>));
  await writable.close();
}

async function expectError(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<RullamaError> {
  try {
    await promise;
  } catch (e) {
    expect(e).to.be.instanceOf(RullamaError);
    expect((e as RullamaError).code, (e as Error).message).to.equal(code);
    if (pattern) expect((e as Error).message).to.match(pattern);
    return e as RullamaError;
  }
  throw new Error(`expected RullamaError('${code}')`);
}

describe('Ollama store through a FileSystemDirectoryHandle (OPFS) in Chromium', () => {
  let opfs: FileSystemDirectoryHandle;
  let root: FileSystemDirectoryHandle;
  const rootName = `ollama-test-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  let gguf: Uint8Array;
  let model: OllamaLayer;
  let big: Uint8Array;
  let bigLayer: OllamaLayer;
  let adapter: OllamaLayer;
  let template: OllamaLayer;

  const blob = async (data: Uint8Array | string, mediaType: string = OllamaMediaType.model): Promise<OllamaLayer> => {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const hex = await subtleHex(bytes);
    await writeFileAt(root, ['blobs', `sha256-${hex}`], bytes);
    return { mediaType, digest: `sha256:${hex}`, size: bytes.byteLength };
  };
  const manifest = async (path: [string, string, string, string], layers: OllamaLayer[]): Promise<void> => {
    const config = await blob('{"model_format":"gguf"}', 'application/vnd.docker.container.image.v1+json');
    const body = { schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config, layers };
    await writeFileAt(root, ['manifests', ...path], JSON.stringify(body));
  };

  before(async () => {
    opfs = await navigator.storage.getDirectory();
    root = await opfs.getDirectoryHandle(rootName, { create: true });
    gguf = sampleGGUF();
    model = await blob(gguf);
    big = randomBytes(2 * 1024 * 1024 + 5);
    bigLayer = await blob(big);
    adapter = await blob(randomBytes(300), OllamaMediaType.adapter);
    template = await blob('{{ .Prompt }}', OllamaMediaType.template);
    await manifest(['registry.ollama.ai', 'library', 'gemma4', 'e2b'], [model, template]);
    await manifest(['registry.ollama.ai', 'library', 'gemma4', 'latest'], [bigLayer, template]);
    await manifest(['registry.ollama.ai', 'me', 'tuned', 'v1'], [model, adapter, template]);
    await manifest(['hf.co', 'unsloth', 'gemma-4-GGUF', 'Q4_K_M'], [model]);
    // A manifest whose blob is damaged (same size, other bytes) and one whose blob is missing.
    const damaged = await blob(randomBytes(1000));
    const other = randomBytes(1000);
    await writeFileAt(root, ['blobs', damaged.digest.replace(':', '-')], other);
    await manifest(['registry.ollama.ai', 'library', 'damaged', 'latest'], [damaged]);
    await manifest(['registry.ollama.ai', 'library', 'ghost', 'latest'], [
      { mediaType: OllamaMediaType.model, digest: `sha256:${'cd'.repeat(32)}`, size: 10 },
    ]);
    await writeFileAt(root, ['manifests', 'registry.ollama.ai', 'library', 'broken', 'latest'], '{"layers": ');
  });

  after(async () => {
    await opfs.removeEntry(rootName, { recursive: true });
  });

  it('SHA-256 matches crypto.subtle at block boundaries and reports its speed', async () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000, 100_003]) {
      const data = randomBytes(n);
      expect(new Sha256().update(data).hex(), `length ${n}`).to.equal(await subtleHex(data));
      const h = new Sha256();
      for (let i = 0; i < n; i += 37) h.update(data.subarray(i, Math.min(n, i + 37)));
      expect(h.hex(), `length ${n} in pieces`).to.equal(await subtleHex(data));
    }
    const chunk = randomBytes(8 << 20);
    new Sha256().update(chunk);
    const t0 = performance.now();
    const h = new Sha256();
    for (let i = 0; i < 8; i++) h.update(chunk);
    h.digest();
    const mbs = (8 * chunk.byteLength) / 1e6 / ((performance.now() - t0) / 1000);
    console.log(`SHA-256 in Chromium: ${mbs.toFixed(0)} MB/s`);
    expect(mbs).to.be.above(30);
  });

  it('lists every model of the folder', async () => {
    const store = new OllamaStore(fromDirectoryHandle(root));
    const scan = await store.scan();
    expect(scan.models.map((m) => m.name)).to.deep.equal([
      'hf.co/unsloth/gemma-4-GGUF:Q4_K_M',
      'damaged:latest',
      'gemma4:e2b',
      'gemma4:latest',
      'ghost:latest',
      'me/tuned:v1',
    ]);
    expect(scan.problems.map((p) => p.name)).to.deep.equal(['broken:latest']);
    expect(scan.problems[0]!.error.code).to.equal('bad-manifest');
    const tuned = scan.models.find((m) => m.name === 'me/tuned:v1')!;
    expect(tuned.adapters).to.deep.equal([adapter]);
    expect(tuned.manifestPath).to.equal(`${rootName}/manifests/registry.ollama.ai/me/tuned/v1`);
  });

  it('resolves names and opens the model, which the GGUF reader reads', async () => {
    const store = new OllamaStore(fromDirectoryHandle(root));
    const m = await store.resolve('gemma4:e2b');
    expect(m.fullName).to.equal('registry.ollama.ai/library/gemma4:e2b');
    expect(m.template).to.deep.equal(template);
    expect(await store.readLayerText(m.template!)).to.equal('{{ .Prompt }}');
    expect((await store.resolve('gemma4')).model).to.deep.equal(bigLayer);
    const source = await store.openModel('gemma4:e2b', { verify: true });
    expect(source.size).to.equal(gguf.byteLength);
    expect(source.name).to.equal(`${rootName}/blobs/${model.digest.replace(':', '-')}`);
    const file = await readGGUF(source);
    expect(file.tensors.length).to.be.above(0);
  });

  it('verifies a multi-chunk blob with progress, and can be cancelled', async () => {
    const store = new OllamaStore(fromDirectoryHandle(root));
    const progress: number[] = [];
    const source = await store.openModel('gemma4', { verify: true, chunkSize: 512 * 1024, onProgress: (p) => progress.push(p.loaded) });
    expect(progress).to.deep.equal([0, 524288, 1048576, 1572864, 2097152, big.byteLength]);
    expect(Array.from(await source.read(big.byteLength - 5, 5))).to.deep.equal(Array.from(big.subarray(big.byteLength - 5)));

    const controller = new AbortController();
    await expectError(
      store.openModel('gemma4', {
        verify: true,
        chunkSize: 256 * 1024,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.loaded > 0) controller.abort();
        },
      }),
      'aborted',
    );
  });

  it('reports damaged and missing blobs, unknown models, hostile names', async () => {
    const store = new OllamaStore(fromDirectoryHandle(root));
    const unchecked = await store.openModel('damaged');
    expect(unchecked.size).to.equal(1000);
    await expectError(store.openModel('damaged', { verify: true }), 'integrity', /damaged or was changed/);
    await expectError(store.openModel('ghost'), 'not-found', new RegExp(`${rootName}/blobs/sha256-${'cd'.repeat(32)}`));
    await expectError(store.resolve('gemma4:27b'), 'not-found', /installed: .*gemma4:e2b.*me\/tuned:v1/);
    await expectError(store.resolve('broken'), 'bad-manifest', /not valid JSON/);
    for (const name of ['..', '../x', '/etc/passwd', 'a//b', 'x:..']) await expectError(store.resolve(name), 'bad-argument');
    await expectError(fromDirectoryHandle(root).openFile(['..', 'x']), 'bad-argument');
  });

  it('a folder without manifests tells the user to pick the models folder; ~/.ollama is accepted', async () => {
    const empty = await opfs.getDirectoryHandle(`${rootName}-empty`, { create: true });
    try {
      await expectError(new OllamaStore(fromDirectoryHandle(empty)).list(), 'not-found', /no "manifests" folder.*models folder/);
      // The same tree one level down, as if the user picked ~/.ollama.
      const dotOllama = await opfs.getDirectoryHandle(`${rootName}-home`, { create: true });
      const models = await dotOllama.getDirectoryHandle('models', { create: true });
      const hex = await subtleHex(gguf);
      await writeFileAt(models, ['blobs', `sha256-${hex}`], gguf);
      await writeFileAt(
        models,
        ['manifests', 'registry.ollama.ai', 'library', 'gemma4', 'e2b'],
        JSON.stringify({ layers: [{ mediaType: OllamaMediaType.model, digest: `sha256:${hex}`, size: gguf.byteLength }] }),
      );
      const store = new OllamaStore(fromDirectoryHandle(dotOllama));
      expect((await store.list()).map((m) => m.name)).to.deep.equal(['gemma4:e2b']);
      expect((await store.openModel('gemma4:e2b', { verify: true })).size).to.equal(gguf.byteLength);
      const names: string[] = [];
      for await (const name of (dotOllama as IterableDirectory).keys()) names.push(name);
      expect(names).to.deep.equal(['models']);
    } finally {
      await opfs.removeEntry(`${rootName}-empty`, { recursive: true });
      await opfs.removeEntry(`${rootName}-home`, { recursive: true }).catch(() => {});
    }
  });
});
