// The `rullama` command line. One JSON object (or array) on stdout per command; errors are one
// line on stderr with a non-zero exit, so scripts can rely on both.
import { parseArgs } from 'node:util';
import { RullamaError } from '../core/errors.js';
import { nodeFileSource } from '../core/gguf/node-source.js';
import { readGGUF } from '../core/gguf/read.js';
import { summarizeGGUF } from '../core/gguf/inspect.js';
import { Tokenizer } from '../core/tokenizer/index.js';

const USAGE = `usage:
  rullama inspect <model.gguf>
  rullama tokenize --model <model.gguf> [--no-bos] [--no-special] -- <text>
  rullama detokenize --model <model.gguf> <id,id,...|id id ...>`;

class UsageError extends Error {}

async function openModel(path: string | undefined) {
  if (!path) throw new UsageError('--model <path> is required');
  const source = await nodeFileSource(path);
  try {
    return await readGGUF(source);
  } finally {
    await source.close();
  }
}

async function inspect(args: string[]): Promise<unknown> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('inspect takes one GGUF path');
  return summarizeGGUF(await openModel(positionals[0]));
}

async function tokenize(args: string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { model: { type: 'string' }, 'no-bos': { type: 'boolean' }, 'no-special': { type: 'boolean' } },
  });
  const tokenizer = Tokenizer.fromGGUF(await openModel(values.model));
  return tokenizer.encode(positionals.join(' '), { addBos: !values['no-bos'], parseSpecial: !values['no-special'] });
}

async function detokenize(args: string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { model: { type: 'string' } } });
  const ids = positionals.join(',').split(/[\s,\[\]]+/).filter(Boolean).map((s) => {
    const id = Number(s);
    if (!Number.isInteger(id)) throw new UsageError(`not a token id: ${s}`);
    return id;
  });
  const tokenizer = Tokenizer.fromGGUF(await openModel(values.model));
  return tokenizer.decode(ids);
}

const COMMANDS: Record<string, (args: string[]) => Promise<unknown>> = { inspect, tokenize, detokenize };

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`rullama: unknown command ${name}\n${USAGE}`);
    return 2;
  }
  try {
    const result = await command(rest);
    process.stdout.write(typeof result === 'string' ? `${result}\n` : `${JSON.stringify(result, null, name === 'inspect' ? 2 : 0)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`rullama ${name}: ${(e as Error).message}\n${USAGE}`);
      return 2;
    }
    console.error(`rullama ${name}: ${e instanceof RullamaError ? `${e.message} [${e.code}]` : String(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
