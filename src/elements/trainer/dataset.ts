/** Reading a dataset for <rullama-trainer>: a picked or dropped file, or the `data-url` attribute. */
import { RullamaError } from '../../core/errors.js';

/** The text of a data URL (relative to the page). */
export async function fetchDataset(url: string, signal?: AbortSignal): Promise<string> {
  let response: Response;
  try {
    response = await fetch(new URL(url, document.baseURI), { signal });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw new RullamaError('aborted', 'reading the dataset was cancelled');
    throw new RullamaError('io', `cannot read the dataset ${url}: ${(e as Error)?.message ?? e}`, { cause: e });
  }
  if (!response.ok) throw new RullamaError(response.status === 404 || response.status === 410 ? 'not-found' : 'io', `the dataset ${url} answered HTTP ${response.status}`);
  return response.text();
}

/** The text of a dropped or picked file (a GGUF or other binary file is refused). */
export async function readDatasetFile(file: Blob): Promise<string> {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  if (head.length === 4 && String.fromCharCode(...head) === 'GGUF') throw new RullamaError('bad-argument', 'this is a GGUF model file, not a dataset (JSON Lines or text)');
  const text = await file.text();
  if (text.includes('\u0000')) throw new RullamaError('bad-argument', 'this file is not text: a dataset is JSON Lines or plain text');
  return text;
}
