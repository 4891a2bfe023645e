/**
 * `npm run bench -- <name> [options]`: runs one benchmark and prints its JSON object.
 *   tokenizer   vocabulary load time, encode/decode tokens/s on ~1 MB of English (bench/tokenizer.ts)
 * Each benchmark takes `--out FILE` to write its result into bench/results/ for the record (BENCHMARKS.md).
 */
const BENCHES: Record<string, string> = {
  tokenizer: './tokenizer.ts',
};

const name = process.argv[2];
const entry = name ? BENCHES[name] : undefined;
if (!entry) {
  console.error(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [--out FILE]`);
  process.exit(2);
}
await import(entry);
export {};
