import { RullamaError } from '../errors.js';

export const OLLAMA_DEFAULT_HOST = 'registry.ollama.ai';
export const OLLAMA_DEFAULT_NAMESPACE = 'library';
export const OLLAMA_DEFAULT_TAG = 'latest';

/** A fully qualified model name: `host/namespace/model:tag`. */
export interface OllamaModelReference {
  host: string;
  namespace: string;
  model: string;
  tag: string;
}

const MAX_PART = 128;
const PART = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

function checkPart(kind: string, part: string, name: string): string {
  const ok =
    part.length > 0 &&
    part.length <= MAX_PART &&
    PART.test(part) &&
    !part.includes('..') &&
    !(kind === 'namespace' && part.includes('.'));
  if (!ok) {
    const why =
      part === ''
        ? `an empty ${kind}`
        : `the ${kind} ${JSON.stringify(part)}, which must be 1-${MAX_PART} of A-Z a-z 0-9 _ - .` +
          (kind === 'namespace' ? ' (no dots)' : ' (not starting with a dot, no "..")');
      throw new RullamaError(
        'bad-argument',
        `cannot parse the model name ${JSON.stringify(name)}: it has ${why}; ` +
          'names look like gemma4, gemma4:e2b, user/model:tag or host/namespace/model:tag',
      );
  }
  return part;
}

/**
 * Parses an Ollama model name the way `ollama run` reads it: `model`, `model:tag`,
 * `namespace/model[:tag]` or `host/namespace/model[:tag]`; a missing host is registry.ollama.ai,
 * a missing namespace `library`, a missing tag `latest`. An `http://` or `https://` prefix is
 * dropped, as Ollama does. Throws RullamaError('bad-argument') for anything else (digests,
 * `..`, empty parts, separators, absolute paths), so a parsed name can never leave the store.
 */
export function parseOllamaName(name: string): OllamaModelReference {
  if (typeof name !== 'string') throw new RullamaError('bad-argument', `a model name must be a string, not ${typeof name}`);
  let s = name.trim();
  if (s.startsWith('http://')) s = s.slice('http://'.length);
  else if (s.startsWith('https://')) s = s.slice('https://'.length);
  if (s === '') throw new RullamaError('bad-argument', 'the model name is empty');
  if (s.includes('@') || s.includes('+')) {
    throw new RullamaError(
      'bad-argument',
      `cannot parse the model name ${JSON.stringify(name)}: digests (@) and builds (+) are not supported; use host/namespace/model:tag`,
    );
  }
  const segments = s.split('/');
  if (segments.length > 3) {
    throw new RullamaError(
      'bad-argument',
      `cannot parse the model name ${JSON.stringify(name)}: it has ${segments.length} parts separated by "/", at most 3 (host/namespace/model:tag)`,
    );
  }
  const last = segments[segments.length - 1]!;
  const colon = last.indexOf(':');
  const model = colon < 0 ? last : last.slice(0, colon);
  const tag = colon < 0 ? OLLAMA_DEFAULT_TAG : last.slice(colon + 1);
  if (colon >= 0 && tag.includes(':')) {
    throw new RullamaError('bad-argument', `cannot parse the model name ${JSON.stringify(name)}: more than one ":"`);
  }
  const namespace = segments.length >= 2 ? segments[segments.length - 2]! : OLLAMA_DEFAULT_NAMESPACE;
  const host = segments.length === 3 ? segments[0]! : OLLAMA_DEFAULT_HOST;
  return {
    host: checkPart('host', host, name),
    namespace: checkPart('namespace', namespace, name),
    model: checkPart('model name', model, name),
    tag: checkPart('tag', tag, name),
  };
}

/** Checks a reference built by hand (not by parseOllamaName); throws 'bad-argument'. */
export function checkOllamaReference(ref: OllamaModelReference): OllamaModelReference {
  const name = `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
  checkPart('host', ref.host, name);
  checkPart('namespace', ref.namespace, name);
  checkPart('model name', ref.model, name);
  checkPart('tag', ref.tag, name);
  return ref;
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/**
 * The name as `ollama list` shows it: `model:tag` on registry.ollama.ai/library, `namespace/model:tag`
 * for other namespaces there, `host/namespace/model:tag` for other hosts. The tag is always shown.
 */
export function ollamaDisplayName(ref: OllamaModelReference): string {
  const base = `${ref.model}:${ref.tag}`;
  if (!same(ref.host, OLLAMA_DEFAULT_HOST)) return `${ref.host}/${ref.namespace}/${base}`;
  if (!same(ref.namespace, OLLAMA_DEFAULT_NAMESPACE)) return `${ref.namespace}/${base}`;
  return base;
}

/** The fully qualified name: `host/namespace/model:tag`. */
export function ollamaFullName(ref: OllamaModelReference): string {
  return `${ref.host}/${ref.namespace}/${ref.model}:${ref.tag}`;
}

/** Whether two references name the same model; Ollama compares names without regard to ASCII case. */
export function sameOllamaModel(a: OllamaModelReference, b: OllamaModelReference): boolean {
  return same(a.host, b.host) && same(a.namespace, b.namespace) && same(a.model, b.model) && same(a.tag, b.tag);
}
