/**
 * The engine worker's entry (built as dist/rullama-worker.js): hosts the engine off the page's
 * main thread. The page talks to it through src/client (RullamaClient).
 */
import { serveEngine } from './host.js';
import type { Endpoint } from './protocol.js';

serveEngine(self as unknown as Endpoint);
