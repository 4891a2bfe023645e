/**
 * What the model attributes of <rullama-chat> and <rullama-model> name, as a client ModelInput:
 * a picked File, a URL, or an Ollama model (whose folder may need a click first).
 */
import type { ModelInput } from '../../client/client.js';
import { grantOllamaFolder, rememberedOllamaFolder } from '../../client/ollama-folder.js';
import { RullamaError } from '../../core/errors.js';

export interface ModelSourceProps {
  file?: Blob | null;
  model?: string | null;
  ollamaModel?: string | null;
}

/** The Ollama folder must be picked, or its permission granted again, from a click. */
export class NeedsFolderError extends RullamaError {
  constructor(
    readonly status: 'none' | 'needs-permission',
    readonly model: string,
  ) {
    super('not-found', status === 'none' ? `choose the Ollama models folder to load ${model}` : `allow reading the Ollama models folder to load ${model}`);
  }
}

export function hasSource(p: ModelSourceProps): boolean {
  return !!(p.file || p.model || p.ollamaModel);
}

/** The ModelInput for `p`. `fromClick`: may show the folder picker or a permission prompt. */
export async function resolveModelInput(p: ModelSourceProps, fromClick = false): Promise<ModelInput> {
  if (p.file) return p.file;
  if (p.ollamaModel) {
    const remembered = await rememberedOllamaFolder();
    if (remembered.status === 'ready') return { ollama: remembered.handle!, model: p.ollamaModel };
    if (!fromClick) throw new NeedsFolderError(remembered.status, p.ollamaModel);
    return { ollama: await grantOllamaFolder(), model: p.ollamaModel };
  }
  if (p.model) return p.model;
  throw new RullamaError('bad-argument', 'no model is set: give the element a model, ollama-model or model-ref attribute (or a file)');
}
