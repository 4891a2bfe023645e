import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import type { ByteSource } from '../../src/core/gguf/source.js';
import {
  OllamaMediaType,
  OllamaStore,
  Sha256,
  checkPathSegments,
  parseOllamaManifest,
  parseOllamaName,
  sha256Hex,
  type OllamaLayer,
  type StoreDirectory,
} from '../../src/core/ollama/index.js';
import {
  defaultOllamaModelsPath,
  fromNodePath,
  ollamaModelsPathCandidates,
  openNodeOllamaStore,
} from '../../src/core/ollama/node-dir.js';
import { sampleGGUF } from '../shared/gguf-craft.js';

const nodeSha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

async function expectError(promise: Promise<unknown> | (() => unknown), code: string, ...patterns: RegExp[]): Promise<RullamaError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (e) {
    assert.ok(e instanceof RullamaError, `expected a RullamaError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return e;
  }
  assert.fail(`expected a RullamaError('${code}')`);
}

/** Builds a real Ollama store tree on disk. */
class StoreBuilder {
  constructor(readonly root: string) {}

  async blob(bytes: Uint8Array | string, mediaType: string = OllamaMediaType.model): Promise<OllamaLayer> {
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
    const hex = nodeSha(data);
    await mkdir(join(this.root, 'blobs'), { recursive: true });
    await writeFile(join(this.root, 'blobs', `sha256-${hex}`), data);
    return { mediaType, digest: `sha256:${hex}`, size: data.byteLength };
  }

  async manifest(host: string, namespace: string, model: string, tag: string, body: unknown): Promise<string> {
    const dir = join(this.root, 'manifests', host, namespace, model);
    await mkdir(dir, { recursive: true });
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    await writeFile(join(dir, tag), text);
    return join(dir, tag);
  }

  /** A normal manifest: config + the given layers. */
  async model(name: [string, string, string, string], layers: OllamaLayer[]): Promise<string> {
    const config = await this.blob(JSON.stringify({ model_format: 'gguf', model_family: 'gemma4' }), 'application/vnd.docker.container.image.v1+json');
    return this.manifest(...name, {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config,
      layers,
    });
  }
}

async function tempStore(): Promise<StoreBuilder> {
  return new StoreBuilder(await mkdtemp(join(tmpdir(), 'rullama-ollama-')));
}

/** Wraps a StoreDirectory to count opened and closed files. */
function counting(dir: StoreDirectory): StoreDirectory & { open: number } {
  const self = {
    open: 0,
    entries: (path: readonly string[]) => dir.entries(path),
    displayPath: (path: readonly string[]) => dir.displayPath(path),
    async openFile(path: readonly string[]): Promise<ByteSource> {
      const source = await dir.openFile(path);
      self.open++;
      return {
        name: source.name,
        size: source.size,
        read: (o: number, l: number, s?: AbortSignal) => source.read(o, l, s),
        async close() {
          self.open--;
          await source.close?.();
        },
      };
    },
  };
  return self;
}

describe('SHA-256', () => {
  test('matches node:crypto for every length 0..300 and the block boundaries', () => {
    const lengths = [...Array(301).keys(), 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4095, 4096, 4097, 65536, 1_000_003];
    for (const n of lengths) {
      const data = new Uint8Array(randomBytes(n));
      assert.equal(sha256Hex(data), nodeSha(data), `length ${n}`);
    }
  });

  test('known vectors (FIPS 180-4 examples)', () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    assert.equal(sha256Hex(enc('')), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256Hex(enc('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(
      sha256Hex(enc('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
  });

  test('incremental updates of random sizes equal the one-shot digest', () => {
    for (let trial = 0; trial < 200; trial++) {
      const n = Math.floor(Math.random() * 5000);
      const data = new Uint8Array(randomBytes(n));
      const h = new Sha256();
      let off = 0;
      // Pieces around the block size, random ones, and empty updates in between.
      const sizes = [1, 55, 56, 63, 64, 65, 128, 1 + Math.floor(Math.random() * 300)];
      let i = trial;
      while (off < n) {
        const len = Math.min(n - off, sizes[i++ % sizes.length]!);
        h.update(data.subarray(off, off + len));
        h.update(new Uint8Array(0));
        off += len;
      }
      assert.equal(h.hex(), nodeSha(data), `trial ${trial}, length ${n}`);
    }
  });

  test('digest() can be read twice; update() after it throws; views into larger buffers work', () => {
    const big = new Uint8Array(randomBytes(1000));
    const view = big.subarray(13, 13 + 777);
    const h = new Sha256().update(view);
    const a = h.hex();
    assert.equal(h.hex(), a);
    assert.equal(a, nodeSha(view));
    assert.throws(() => h.update(new Uint8Array(1)));
  });

  test('speed on 8 MiB chunks (reported; must not be pathologically slow)', (t) => {
    const chunk = new Uint8Array(randomBytes(8 << 20));
    new Sha256().update(chunk); // warm up the JIT
    const h = new Sha256();
    const rounds = 12;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) h.update(chunk);
    h.digest();
    const seconds = (performance.now() - t0) / 1000;
    const mbs = (rounds * chunk.byteLength) / 1e6 / seconds;
    t.diagnostic(`SHA-256: ${mbs.toFixed(0)} MB/s`);
    assert.ok(mbs > 30, `SHA-256 ran at only ${mbs.toFixed(1)} MB/s`);
  });
});

describe('Ollama model names', () => {
  test('short, namespaced and fully qualified names, default tag', () => {
    assert.deepEqual(parseOllamaName('gemma4:e2b'), { host: 'registry.ollama.ai', namespace: 'library', model: 'gemma4', tag: 'e2b' });
    assert.deepEqual(parseOllamaName('gemma4'), { host: 'registry.ollama.ai', namespace: 'library', model: 'gemma4', tag: 'latest' });
    assert.deepEqual(parseOllamaName('me/tuned:v1.2'), { host: 'registry.ollama.ai', namespace: 'me', model: 'tuned', tag: 'v1.2' });
    assert.deepEqual(parseOllamaName('hf.co/unsloth/gemma-4-E2B-it-GGUF:Q4_K_M'), {
      host: 'hf.co',
      namespace: 'unsloth',
      model: 'gemma-4-E2B-it-GGUF',
      tag: 'Q4_K_M',
    });
    assert.deepEqual(parseOllamaName('https://registry.ollama.ai/library/gemma4'), {
      host: 'registry.ollama.ai',
      namespace: 'library',
      model: 'gemma4',
      tag: 'latest',
    });
    assert.deepEqual(parseOllamaName('  gemma4:e4b \n'), parseOllamaName('gemma4:e4b'));
  });

  test('names that cannot be parsed or would leave the folder are bad-argument', async () => {
    const hostile = [
      '', ' ', '..', '../x', 'x/..', '../../etc/passwd', '/etc/passwd', '/abs:tag', 'a//b', 'a/b/c/d', 'a/b/c/d:e',
      'C:\\Windows\\x', 'x\\y', 'model:..', 'model:../../x', 'gemma4:', ':tag', 'a:b:c', '.hidden', 'ns/.x',
      'name.with.dots/model', 'model@sha256-abc', 'model:tag+Q4', 'mo del', 'model\0', 'ümlaut', 'a/b/', '/', 'x'.repeat(129),
    ];
    for (const name of hostile) {
      await expectError(() => parseOllamaName(name), 'bad-argument');
    }
  });

  test('path segments are checked before touching the file system', async () => {
    for (const path of [['..'], ['.'], [''], ['a/b'], ['a\\b'], ['ok', '..', 'x'], ['nul\0']]) {
      await expectError(() => checkPathSegments(path), 'bad-argument');
    }
    const b = await tempStore();
    await writeFile(join(b.root, 'x'), 'x');
    const dir = fromNodePath(join(b.root, 'sub'));
    await mkdir(join(b.root, 'sub'));
    await expectError(dir.openFile(['..', 'x']), 'bad-argument');
    await expectError(dir.entries(['..']), 'bad-argument');
    await expectError(() => dir.displayPath(['..', 'x']), 'bad-argument');
    await rm(b.root, { recursive: true, force: true });
  });
});

describe('Ollama store on disk', () => {
  let b: StoreBuilder;
  let gguf: Uint8Array;
  let model: OllamaLayer;
  let bigModel: OllamaLayer;
  let bigBytes: Uint8Array;
  let adapter: OllamaLayer;
  let projector: OllamaLayer;
  let template: OllamaLayer;
  let system: OllamaLayer;
  let params: OllamaLayer;
  let license1: OllamaLayer;
  let license2: OllamaLayer;

  before(async () => {
    b = await tempStore();
    gguf = sampleGGUF();
    model = await b.blob(gguf);
    bigBytes = new Uint8Array(randomBytes(3 * 1024 * 1024 + 17));
    bigModel = await b.blob(bigBytes);
    adapter = await b.blob(new Uint8Array(randomBytes(1000)), OllamaMediaType.adapter);
    projector = await b.blob(new Uint8Array(randomBytes(2000)), OllamaMediaType.projector);
    template = await b.blob('{{ .Prompt }}', OllamaMediaType.template);
    system = await b.blob('You are helpful.', OllamaMediaType.system);
    params = await b.blob('{"temperature":1,"top_k":64}', OllamaMediaType.params);
    license1 = await b.blob('Gemma Terms of Use', OllamaMediaType.license);
    license2 = await b.blob('Apache 2.0', OllamaMediaType.license);
    await b.model(['registry.ollama.ai', 'library', 'gemma4', 'e2b'], [model, template, license1, license2, params]);
    await b.model(['registry.ollama.ai', 'library', 'gemma4', 'latest'], [model, template, system]);
    await b.model(['registry.ollama.ai', 'library', 'gemma4', 'e4b'], [bigModel, template]);
    await b.model(['registry.ollama.ai', 'me', 'gemma4-tuned', 'v1'], [model, adapter, template]);
    await b.model(['registry.ollama.ai', 'me', 'gemma4-vision', 'latest'], [model, projector, template]);
    await b.model(['hf.co', 'unsloth', 'gemma-4-E2B-it-GGUF', 'Q4_K_M'], [model, template]);
    // Noise a real store can have: Finder files, a folder where a tag should be.
    await writeFile(join(b.root, 'manifests', 'registry.ollama.ai', 'library', 'gemma4', '.DS_Store'), 'junk');
    await writeFile(join(b.root, 'manifests', '.DS_Store'), 'junk');
    await mkdir(join(b.root, 'manifests', 'registry.ollama.ai', 'library', 'gemma4', 'not-a-tag'), { recursive: true });
  });

  after(async () => {
    await rm(b.root, { recursive: true, force: true });
  });

  test('list() finds every manifest across hosts, namespaces and tags', async () => {
    const store = new OllamaStore(fromNodePath(b.root));
    const models = await store.list();
    assert.deepEqual(
      models.map((m) => m.name),
      ['hf.co/unsloth/gemma-4-E2B-it-GGUF:Q4_K_M', 'gemma4:e2b', 'gemma4:e4b', 'gemma4:latest', 'me/gemma4-tuned:v1', 'me/gemma4-vision:latest'],
    );
    const e2b = models.find((m) => m.name === 'gemma4:e2b')!;
    assert.equal(e2b.fullName, 'registry.ollama.ai/library/gemma4:e2b');
    assert.deepEqual(e2b.reference, { host: 'registry.ollama.ai', namespace: 'library', model: 'gemma4', tag: 'e2b' });
    assert.deepEqual(e2b.model, model);
    assert.deepEqual(e2b.adapters, []);
    assert.deepEqual(e2b.projectors, []);
    const manifestPath = join(b.root, 'manifests', 'registry.ollama.ai', 'library', 'gemma4', 'e2b');
    assert.equal(e2b.manifestPath, manifestPath);
    const { readFile } = await import('node:fs/promises');
    const manifestBytes = await readFile(manifestPath);
    assert.equal(e2b.id, nodeSha(manifestBytes).slice(0, 12));
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    assert.equal(e2b.size, manifest.config.size + model.size + template.size + license1.size + license2.size + params.size);

    const tuned = models.find((m) => m.name === 'me/gemma4-tuned:v1')!;
    assert.deepEqual(tuned.adapters, [adapter]);
    const vision = models.find((m) => m.name === 'me/gemma4-vision:latest')!;
    assert.deepEqual(vision.projectors, [projector]);
    assert.deepEqual(vision.model, model);
  });

  test('resolve() takes short and long names, the default tag, and any case', async () => {
    const store = new OllamaStore(fromNodePath(b.root));
    const short = await store.resolve('gemma4:e2b');
    const long = await store.resolve('registry.ollama.ai/library/gemma4:e2b');
    assert.equal(short.fullName, long.fullName);
    assert.equal(short.id, long.id);
    const latest = await store.resolve('gemma4');
    assert.equal(latest.name, 'gemma4:latest');
    assert.deepEqual(latest.system, system);
    assert.equal(latest.params, undefined);
    assert.deepEqual((await store.resolve('me/gemma4-tuned:v1')).adapters, [adapter]);
    assert.equal((await store.resolve('hf.co/unsloth/gemma-4-E2B-it-GGUF:Q4_K_M')).model.digest, model.digest);
    assert.equal((await store.resolve('GEMMA4:E2B')).name, 'gemma4:e2b');
    assert.equal((await store.resolve('HF.co/Unsloth/gemma-4-e2b-it-gguf:q4_k_m')).fullName, 'hf.co/unsloth/gemma-4-E2B-it-GGUF:Q4_K_M');
    assert.equal((await store.resolve({ host: 'registry.ollama.ai', namespace: 'me', model: 'gemma4-vision', tag: 'latest' })).projectors.length, 1);
  });

  test('resolve() reports the template, system, params and license layers, and readLayerText reads them', async () => {
    const store = new OllamaStore(fromNodePath(b.root));
    const m = await store.resolve('gemma4:e2b');
    assert.deepEqual(m.template, template);
    assert.deepEqual(m.params, params);
    assert.deepEqual(m.licenses, [license1, license2]);
    assert.equal(m.manifest.schemaVersion, 2);
    assert.equal(m.manifest.layers.length, 5);
    assert.equal(await store.readLayerText(m.template!), '{{ .Prompt }}');
    assert.deepEqual(JSON.parse(await store.readLayerText(m.params!)), { temperature: 1, top_k: 64 });
    assert.equal(await store.readLayerText(m.licenses[1]!), 'Apache 2.0');
    assert.equal(await store.readLayerText((await store.resolve('gemma4')).system!), 'You are helpful.');
    await expectError(store.readLayerText(model, { maxBytes: 10 }), 'bad-argument', /more than the 10 allowed/);
  });

  test('openModel() gives the GGUF bytes, which the GGUF reader accepts', async () => {
    const dir = counting(fromNodePath(b.root));
    const store = new OllamaStore(dir);
    const source = await store.openModel('gemma4:e2b');
    assert.equal(source.size, gguf.byteLength);
    assert.equal(source.name, join(b.root, 'blobs', model.digest.replace(':', '-')));
    assert.deepEqual(await source.read(0, 4), new TextEncoder().encode('GGUF'));
    const file = await readGGUF(source);
    assert.ok(file.tensors.length > 0);
    await source.close?.();
    assert.equal(dir.open, 0, 'every file opened was closed');
    const vision = await store.resolve('me/gemma4-vision');
    const proj = await store.openLayer(vision.projectors[0]!, { verify: true });
    assert.equal(proj.size, 2000);
    await proj.close?.();
    assert.equal(await store.blobPath(adapter), join(b.root, 'blobs', adapter.digest.replace(':', '-')));
  });

  test('openModel({verify: true}) hashes the blob in chunks and reports progress', async () => {
    const dir = counting(fromNodePath(b.root));
    const store = new OllamaStore(dir);
    const progress: { loaded: number; total: number }[] = [];
    const source = await store.openModel('gemma4:e4b', { verify: true, chunkSize: 1 << 20, onProgress: (p) => progress.push(p) });
    assert.equal(source.size, bigBytes.byteLength);
    assert.deepEqual(progress[0], { loaded: 0, total: bigBytes.byteLength });
    assert.deepEqual(progress.at(-1), { loaded: bigBytes.byteLength, total: bigBytes.byteLength });
    assert.equal(progress.length, 1 + 4); // 3 MiB + 17 bytes in 1 MiB chunks
    assert.ok(progress.every((p, i) => i === 0 || p.loaded > progress[i - 1]!.loaded));
    assert.deepEqual(await source.read(bigBytes.byteLength - 17, 17), bigBytes.subarray(bigBytes.byteLength - 17));
    await source.close?.();
    assert.equal(dir.open, 0);
    // The default 8 MiB chunk.
    const again = await store.openModel('gemma4:e4b', { verify: true });
    await again.close?.();
    await expectError(store.openModel('gemma4:e4b', { verify: true, chunkSize: 0 }), 'bad-argument');
  });

  test('a blob whose size differs from the manifest is integrity, naming both sizes', async () => {
    const s = await tempStore();
    const layer = await s.blob(new Uint8Array(randomBytes(500)));
    await s.model(['registry.ollama.ai', 'library', 'short', 'latest'], [{ ...layer, size: 501 }]);
    const dir = counting(fromNodePath(s.root));
    const store = new OllamaStore(dir);
    await expectError(store.openModel('short'), 'integrity', /500 bytes/, /501 bytes/, /sha256-/);
    assert.equal(dir.open, 0, 'the blob was closed after the failure');
    await rm(s.root, { recursive: true, force: true });
  });

  test('a blob whose bytes differ is caught by verify (and only by verify)', async () => {
    const s = await tempStore();
    const layer = await s.blob(new Uint8Array(randomBytes(3000)));
    await s.model(['registry.ollama.ai', 'library', 'flipped', 'v1'], [layer]);
    // Damage one byte in place; the size stays right.
    const file = join(s.root, 'blobs', layer.digest.replace(':', '-'));
    const { readFile } = await import('node:fs/promises');
    const bytes = await readFile(file);
    bytes[1234] = bytes[1234]! ^ 0xff;
    await writeFile(file, bytes);
    const dir = counting(fromNodePath(s.root));
    const store = new OllamaStore(dir);
    const unchecked = await store.openModel('flipped:v1');
    await unchecked.close?.();
    const e = await expectError(store.openModel('flipped:v1', { verify: true, chunkSize: 1024 }), 'integrity', /damaged/);
    assert.ok(e.message.includes(nodeSha(bytes)), 'names the actual digest');
    assert.ok(e.message.includes(layer.digest), 'names the expected digest');
    assert.equal(dir.open, 0);
    // Text layers are always checked.
    const text = await s.blob('hello', OllamaMediaType.template);
    await writeFile(join(s.root, 'blobs', text.digest.replace(':', '-')), 'HELLO');
    await expectError(store.readLayerText(text), 'integrity');
    await rm(s.root, { recursive: true, force: true });
  });

  test('a missing blob is not-found naming the blob path', async () => {
    const s = await tempStore();
    const ghost: OllamaLayer = { mediaType: OllamaMediaType.model, digest: `sha256:${'ab'.repeat(32)}`, size: 10 };
    await s.model(['registry.ollama.ai', 'library', 'ghost', 'latest'], [ghost]);
    const store = new OllamaStore(fromNodePath(s.root));
    const blobPath = join(s.root, 'blobs', `sha256-${'ab'.repeat(32)}`);
    const e = await expectError(store.openModel('ghost'), 'not-found', /ollama pull ghost:latest/);
    assert.ok(e.message.includes(blobPath), e.message);
    // A folder in the blob's place is no better.
    await mkdir(blobPath, { recursive: true });
    await expectError(store.openModel('ghost'), 'not-found');
    await rm(s.root, { recursive: true, force: true });
  });

  test('an unknown model is not-found and lists the installed models', async () => {
    const store = new OllamaStore(fromNodePath(b.root));
    await expectError(
      store.resolve('gemma4:27b'),
      'not-found',
      /"gemma4:27b"/,
      /registry\.ollama\.ai\/library\/gemma4:27b/,
      /installed: hf\.co\/unsloth\/gemma-4-E2B-it-GGUF:Q4_K_M, gemma4:e2b, gemma4:e4b, gemma4:latest, me\/gemma4-tuned:v1, me\/gemma4-vision:latest/,
    );
    await expectError(store.openModel('nobody/nothing'), 'not-found', /installed: /);
  });

  test('an empty store, a folder without manifests, a missing folder: not-found telling what to pick', async () => {
    const s = await tempStore();
    await expectError(new OllamaStore(fromNodePath(s.root)).list(), 'not-found', /no "manifests" folder/, /OLLAMA_MODELS/);
    await expectError(new OllamaStore(fromNodePath(s.root)).resolve('gemma4'), 'not-found', /no "manifests" folder/);
    await expectError(new OllamaStore(fromNodePath(join(s.root, 'nope'))).list(), 'not-found', /does not exist/, /models folder/);
    await mkdir(join(s.root, 'manifests'));
    const store = new OllamaStore(fromNodePath(s.root));
    assert.deepEqual(await store.list(), []);
    await expectError(store.resolve('gemma4:e2b'), 'not-found', /no models yet/, /ollama pull gemma4:e2b/);
    await rm(s.root, { recursive: true, force: true });
  });

  test('given ~/.ollama instead of ~/.ollama/models, the models folder inside is used', async () => {
    const home = await mkdtemp(join(tmpdir(), 'rullama-home-'));
    const inner = new StoreBuilder(join(home, 'models'));
    const layer = await inner.blob(new Uint8Array(randomBytes(64)));
    await inner.model(['registry.ollama.ai', 'library', 'gemma4', 'e2b'], [layer]);
    await writeFile(join(home, 'id_ed25519'), 'not ours');
    const store = new OllamaStore(fromNodePath(home));
    assert.deepEqual((await store.list()).map((m) => m.name), ['gemma4:e2b']);
    const source = await store.openModel('gemma4:e2b', { verify: true });
    assert.equal(source.size, 64);
    await source.close?.();
    await rm(home, { recursive: true, force: true });
  });

  test('malformed manifests are bad-manifest naming the manifest path, and list() skips them', async () => {
    const s = await tempStore();
    const good = await s.blob(new Uint8Array(randomBytes(100)));
    await s.model(['registry.ollama.ai', 'library', 'good', 'latest'], [good]);
    const hex = good.digest.slice('sha256:'.length);
    const cases: [string, unknown, RegExp][] = [
      ['notjson', '{"layers": [', /not valid JSON/],
      ['empty', '', /not valid JSON/],
      ['array', '[]', /not a JSON object/],
      ['nolayers', { schemaVersion: 2, config: good }, /no "layers" array/],
      ['layersobject', { layers: { 0: good } }, /no "layers" array/],
      ['nomodel', { layers: [{ ...good, mediaType: OllamaMediaType.template }] }, /no model layer.*vnd\.ollama\.image\.template/],
      ['emptylayers', { layers: [] }, /no model layer.*none/],
      ['shortdigest', { layers: [{ ...good, digest: 'sha256:abc' }] }, /layer 0 has the digest "sha256:abc"/],
      ['dashdigest', { layers: [{ ...good, digest: `sha256-${hex}` }] }, /not sha256:<64 hex/],
      ['md5', { layers: [{ ...good, digest: `md5:${hex}` }] }, /not sha256:<64 hex/],
      ['pathdigest', { layers: [{ ...good, digest: 'sha256:../../../etc/passwd' }] }, /not sha256:<64 hex/],
      ['nodigest', { layers: [{ mediaType: OllamaMediaType.model, size: 100 }] }, /the digest undefined/],
      ['negative', { layers: [{ ...good, size: -1 }] }, /size -1, not a non-negative integer/],
      ['fraction', { layers: [{ ...good, size: 1.5 }] }, /size 1.5/],
      ['stringsize', { layers: [{ ...good, size: '100' }] }, /size "100"/],
      ['hugesize', { layers: [{ ...good, size: 2 ** 60 }] }, /not a non-negative integer/],
      ['nomediatype', { layers: [{ digest: good.digest, size: 100 }] }, /no mediaType/],
      ['layernull', { layers: [null] }, /layer 0 is not an object/],
      ['badconfig', { config: { ...good, digest: 'nope' }, layers: [good] }, /the config has the digest "nope"/],
    ];
    for (const [tag, body] of cases) await s.manifest('registry.ollama.ai', 'library', 'broken', tag, body);
    // Invalid UTF-8.
    const binPath = join(s.root, 'manifests', 'registry.ollama.ai', 'library', 'broken', 'binary');
    await writeFile(binPath, new Uint8Array([0xff, 0xfe, 0x00, 0x41]));

    const store = new OllamaStore(fromNodePath(s.root));
    for (const [tag, , pattern] of cases) {
      const path = join(s.root, 'manifests', 'registry.ollama.ai', 'library', 'broken', tag);
      const e = await expectError(store.resolve(`broken:${tag}`), 'bad-manifest', pattern);
      assert.ok(e.message.includes(path), `message names ${path}: ${e.message}`);
      await expectError(store.openModel(`broken:${tag}`), 'bad-manifest');
    }
    await expectError(store.resolve('broken:binary'), 'bad-manifest', /not UTF-8/);

    const scan = await store.scan();
    assert.deepEqual(scan.models.map((m) => m.name), ['good:latest']);
    assert.equal(scan.problems.length, cases.length + 1);
    assert.ok(scan.problems.every((p) => p.error.code === 'bad-manifest' && p.name?.startsWith('broken:')));
    assert.deepEqual((await store.list()).map((m) => m.name), ['good:latest']);
    await rm(s.root, { recursive: true, force: true });
  });

  test('parseOllamaManifest accepts a real Ollama manifest and keeps all layers', () => {
    const text = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 487 },
      layers: [
        { mediaType: OllamaMediaType.model, digest: `sha256:${'1'.repeat(64)}`, size: 4683074048 },
        { mediaType: OllamaMediaType.license, digest: `sha256:${'2'.repeat(64)}`, size: 11343 },
      ],
    });
    const m = parseOllamaManifest(text, 'x');
    assert.equal(m.layers.length, 2);
    assert.equal(m.layers[0]!.size, 4683074048);
    assert.equal(m.config!.size, 487);
  });

  test('hostile names and stray paths never leave the folder', async () => {
    const s = await tempStore();
    const models = join(s.root, 'models');
    const outside = new StoreBuilder(s.root);
    // A manifest outside the models folder that a traversal would reach.
    const layer = await outside.blob(new Uint8Array(randomBytes(10)));
    await outside.manifest('x', 'y', 'z', 'latest', { layers: [layer] });
    await mkdir(join(models, 'manifests'), { recursive: true });
    const store = new OllamaStore(fromNodePath(models));
    for (const name of ['../../manifests/x/y/z', '../x', '..', '/etc/passwd', 'a/../../b', 'x/y/../z', 'x:..', '..:latest', 'C:\\x']) {
      await expectError(store.resolve(name), 'bad-argument');
      await expectError(store.openModel(name), 'bad-argument');
    }
    // A manifest whose digest tries to walk out of blobs/ is refused before any file is opened.
    await expectError(store.openLayer({ mediaType: OllamaMediaType.model, digest: 'sha256:../../x', size: 1 }), 'bad-argument');
    await expectError(store.readLayerText({ mediaType: OllamaMediaType.template, digest: '../x', size: 1 }), 'bad-argument');
    // A file at a name Ollama would not accept is reported, not followed.
    await mkdir(join(models, 'manifests', 'registry.ollama.ai', 'bad.ns', 'm'), { recursive: true });
    await writeFile(join(models, 'manifests', 'registry.ollama.ai', 'bad.ns', 'm', 'latest'), '{}');
    const scan = await store.scan();
    assert.equal(scan.models.length, 0);
    assert.equal(scan.problems.length, 1);
    assert.match(scan.problems[0]!.error.message, /not at a valid model path/);
    await rm(s.root, { recursive: true, force: true });
  });

  test('symbolic links to blobs are followed (stores moved to another disk)', async () => {
    const s = await tempStore();
    const elsewhere = await mkdtemp(join(tmpdir(), 'rullama-blobs-'));
    const data = new Uint8Array(randomBytes(256));
    const hex = nodeSha(data);
    await writeFile(join(elsewhere, 'real'), data);
    await mkdir(join(s.root, 'blobs'), { recursive: true });
    await symlink(join(elsewhere, 'real'), join(s.root, 'blobs', `sha256-${hex}`));
    await s.model(['registry.ollama.ai', 'library', 'linked', 'latest'], [{ mediaType: OllamaMediaType.model, digest: `sha256:${hex}`, size: 256 }]);
    const store = new OllamaStore(fromNodePath(s.root));
    const source = await store.openModel('linked', { verify: true });
    assert.deepEqual(await source.read(0, 256), data);
    await source.close?.();
    await rm(s.root, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  });

  test('verify can be cancelled: the signal fires mid-way, or before the start', async () => {
    const dir = counting(fromNodePath(b.root));
    const store = new OllamaStore(dir);
    const controller = new AbortController();
    let calls = 0;
    await expectError(
      store.openModel('gemma4:e4b', {
        verify: true,
        chunkSize: 256 * 1024,
        signal: controller.signal,
        onProgress: (p) => {
          calls++;
          if (p.loaded > 0) controller.abort(new Error('user cancelled'));
        },
      }),
      'aborted',
    );
    assert.ok(calls >= 2 && calls < 6, `stopped soon after the abort (${calls} progress calls)`);
    assert.equal(dir.open, 0, 'the blob was closed');
    await expectError(store.openModel('gemma4:e2b', { verify: true, signal: AbortSignal.abort() }), 'aborted');
    await expectError(store.list({ signal: AbortSignal.abort() }), 'aborted');
    // A timeout-style abort while reading.
    const slow: StoreDirectory = {
      ...dir,
      entries: (p) => dir.entries(p),
      displayPath: (p) => dir.displayPath(p),
      async openFile(path) {
        const source = await dir.openFile(path);
        return {
          ...source,
          name: source.name,
          size: source.size,
          close: () => source.close?.() ?? Promise.resolve(),
          read: async (o, l, sig) => {
            await new Promise((r) => setTimeout(r, 5));
            return source.read(o, l, sig);
          },
        };
      },
    };
    const c2 = new AbortController();
    setTimeout(() => c2.abort(), 20);
    await expectError(new OllamaStore(slow).openModel('gemma4:e4b', { verify: true, chunkSize: 64 * 1024, signal: c2.signal }), 'aborted');
    assert.equal(dir.open, 0);
  });
});

describe('Ollama models folder on this machine', () => {
  test('$OLLAMA_MODELS wins, trimmed of spaces and quotes; else ~/.ollama/models', () => {
    assert.equal(defaultOllamaModelsPath({ OLLAMA_MODELS: '/data/ollama' }, '/home/me'), '/data/ollama');
    assert.equal(defaultOllamaModelsPath({ OLLAMA_MODELS: ' "/data/my models" ' }, '/home/me'), '/data/my models');
    assert.equal(defaultOllamaModelsPath({ OLLAMA_MODELS: "'/x'" }, '/home/me'), '/x');
    assert.equal(defaultOllamaModelsPath({}, '/home/me'), join('/home/me', '.ollama', 'models'));
    assert.equal(defaultOllamaModelsPath({ OLLAMA_MODELS: '  ' }, '/home/me'), join('/home/me', '.ollama', 'models'));
    assert.equal(defaultOllamaModelsPath({}), join(homedir(), '.ollama', 'models'));
    const candidates = ollamaModelsPathCandidates({}, '/home/me');
    assert.equal(candidates[0], join('/home/me', '.ollama', 'models'));
  });

  test('openNodeOllamaStore() with no argument reads $OLLAMA_MODELS', async () => {
    const s = await tempStore();
    const layer = await s.blob(new Uint8Array(randomBytes(32)));
    await s.model(['registry.ollama.ai', 'library', 'fromenv', 'latest'], [layer]);
    const saved = process.env.OLLAMA_MODELS;
    process.env.OLLAMA_MODELS = s.root;
    try {
      assert.equal(defaultOllamaModelsPath(), s.root);
      assert.deepEqual((await openNodeOllamaStore().list()).map((m) => m.name), ['fromenv:latest']);
    } finally {
      if (saved === undefined) delete process.env.OLLAMA_MODELS;
      else process.env.OLLAMA_MODELS = saved;
    }
    await rm(s.root, { recursive: true, force: true });
  });
});
