// Hostile-input loops for the GGUF reader, shared by the Node and Chromium suites. Each input must
// either parse or fail with a RullamaError, quickly, and never make the reader ask for a huge range.
import { RullamaError } from '../../src/core/errors.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { bytesSource, type ByteSource } from '../../src/core/gguf/source.js';
import { sampleGGUF } from './gguf-craft.js';

export interface FuzzReport {
  cases: number;
  parsed: number;
  rejected: Record<string, number>;
  /** Inputs that threw something other than a RullamaError, or read too much. */
  failures: string[];
  /** Largest single read the reader asked for. */
  maxRead: number;
}

/** Tracks the largest read, so a bogus length cannot make the reader allocate gigabytes. */
function watched(bytes: Uint8Array, report: FuzzReport): ByteSource {
  const inner = bytesSource(bytes, 'fuzz');
  return {
    name: inner.name,
    size: inner.size,
    read(offset, length, signal) {
      report.maxRead = Math.max(report.maxRead, length);
      return inner.read(offset, length, signal);
    },
  };
}

async function one(bytes: Uint8Array, label: string, report: FuzzReport): Promise<void> {
  report.cases++;
  try {
    await readGGUF(watched(bytes, report));
    report.parsed++;
  } catch (e) {
    if (e instanceof RullamaError) report.rejected[e.code] = (report.rejected[e.code] ?? 0) + 1;
    else report.failures.push(`${label}: ${String(e)}`);
  }
}

function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

export async function fuzzGGUF(seed = 1234, rounds = 1500): Promise<FuzzReport> {
  const report: FuzzReport = { cases: 0, parsed: 0, rejected: {}, failures: [], maxRead: 0 };
  const valid = sampleGGUF();
  const rand = prng(seed);
  // Every truncation of the valid file.
  for (let n = 0; n < valid.length; n++) await one(valid.subarray(0, n), `truncated to ${n}`, report);
  // Bit flips, one to four per file, anywhere in the header (where they change meaning).
  const headerEnd = valid.length - 324;
  for (let i = 0; i < rounds; i++) {
    const copy = valid.slice();
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) copy[Math.floor(rand() * headerEnd)]! ^= 1 << Math.floor(rand() * 8);
    await one(copy, `bit flips round ${i}`, report);
  }
  // Random bytes, with and without a valid magic and version in front.
  for (let i = 0; i < rounds / 3; i++) {
    const copy = new Uint8Array(Math.floor(rand() * 2048));
    for (let j = 0; j < copy.length; j++) copy[j] = Math.floor(rand() * 256);
    if (i % 2 === 0 && copy.length >= 8) copy.set(valid.subarray(0, 8));
    await one(copy, `random round ${i}`, report);
  }
  return report;
}
