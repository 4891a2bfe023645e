/**
 * Writes test fixtures (streaming, never whole files in memory):
 *
 *   node --import ./scripts/ts-loader.mjs scripts/fixtures.ts tiny --config <name>|--all --out <dir> [--seed N]
 *   node --import ./scripts/ts-loader.mjs scripts/fixtures.ts e2b --out <file> [--seed N] [--kv-on-shared] [--hash]
 *   node --import ./scripts/ts-loader.mjs scripts/fixtures.ts ollama-store --out <dir> [--name N] [--tag T] [--config <tiny name>] [--seed N]
 *   node --import ./scripts/ts-loader.mjs scripts/fixtures.ts text-only <in.gguf> <out.gguf>
 *   node --import ./scripts/ts-loader.mjs scripts/fixtures.ts list
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import {
  TINY_CONFIGS,
  TINY_CONFIG_NAMES,
  textOnlyCopy,
  typeSummary,
  writeE2BShapedModel,
  writeOllamaStore,
  writeTinyModel,
  type TinyConfigName,
  type WrittenFile,
} from '../test/fixtures/index.js';

const USAGE = `usage:
  fixtures.ts tiny --config <name>|--all --out <dir> [--seed N]
  fixtures.ts e2b --out <file> [--seed N] [--kv-on-shared] [--hash]
  fixtures.ts ollama-store --out <dir> [--name gemma4-tiny] [--tag latest] [--config tiny-e2b] [--seed N]
  fixtures.ts text-only <in.gguf> <out.gguf>
  fixtures.ts list
tiny configs: ${TINY_CONFIG_NAMES.join(', ')}`;

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

function report(w: WrittenFile): void {
  console.log(`wrote ${w.path}: ${mb(w.bytes)} in ${secs(w.ms)}, ${w.tensors.length} tensors (${typeSummary(w.tensors)})${w.sha256 ? `, sha256 ${w.sha256}` : ''}`);
}

function die(message: string): never {
  console.error(message);
  console.error(USAGE);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      all: { type: 'boolean' },
      out: { type: 'string' },
      seed: { type: 'string' },
      name: { type: 'string' },
      tag: { type: 'string' },
      'kv-on-shared': { type: 'boolean' },
      hash: { type: 'boolean' },
    },
  });
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  if (!Number.isInteger(seed)) die(`--seed must be an integer, got ${values.seed}`);

  switch (command) {
    case 'list':
      for (const name of TINY_CONFIG_NAMES) console.log(`${name.padEnd(12)} ${TINY_CONFIGS[name].description}`);
      return;
    case 'tiny': {
      if (!values.out) die('tiny needs --out <dir>');
      const names: TinyConfigName[] = values.all ? TINY_CONFIG_NAMES : values.config ? [values.config as TinyConfigName] : die('tiny needs --config <name> or --all');
      for (const n of names) if (!(n in TINY_CONFIGS)) die(`unknown config ${n}`);
      await mkdir(values.out, { recursive: true });
      for (const n of names) report(await writeTinyModel(n, values.out, seed));
      return;
    }
    case 'e2b': {
      if (!values.out) die('e2b needs --out <file>');
      await mkdir(dirname(values.out), { recursive: true });
      report(await writeE2BShapedModel(values.out, { seed, hash: values.hash ?? false, kvOnSharedLayers: values['kv-on-shared'] ?? false }));
      return;
    }
    case 'ollama-store': {
      if (!values.out) die('ollama-store needs --out <dir>');
      const config = values.config ?? 'tiny-e2b';
      if (!(config in TINY_CONFIGS)) die(`unknown config ${config}`);
      const r = await writeOllamaStore(values.out, {
        seed,
        config: TINY_CONFIGS[config as TinyConfigName],
        ...(values.name ? { name: values.name } : {}),
        ...(values.tag ? { tag: values.tag } : {}),
      });
      console.log(`wrote Ollama store ${r.root} in ${secs(r.ms)}`);
      console.log(`  manifest ${r.manifestPath}`);
      for (const b of [r.config, ...r.layers]) console.log(`  ${b.mediaType.padEnd(48)} ${b.digest} ${mb(b.size)}`);
      return;
    }
    case 'text-only': {
      const [input, output] = positionals;
      if (!input || !output) die('text-only needs <in.gguf> <out.gguf>');
      const t0 = performance.now();
      const r = await textOnlyCopy(input, output);
      console.log(`wrote ${output}: ${mb(r.bytes)} in ${secs(performance.now() - t0)}, ${r.tensorCount} tensors kept, ${r.droppedTensors.length} encoder tensors and ${r.droppedKeys.length} encoder keys dropped, tokenizer.ggml.model = gemma4`);
      return;
    }
    default:
      die(command ? `unknown command ${command}` : 'no command');
  }
}

await main(process.argv.slice(2));
