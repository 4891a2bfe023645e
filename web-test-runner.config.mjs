// Browser tests: headless Debian Chromium with WebGPU (SwiftShader on machines without a GPU).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromeLauncher } from '@web/test-runner-chrome';
import { esbuildPlugin } from '@web/dev-server-esbuild';
import { rangeFolderMiddleware, wgslPlugin } from './scripts/wtr-plugins.mjs';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  throw new Error(`Chromium not found at ${executablePath}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
}

export default {
  files: ['test/browser/**/*.test.ts'],
  nodeResolve: true,
  concurrency: 1,
  testFramework: { config: { timeout: 120000 } },
  testsFinishTimeout: 30 * 60 * 1000,
  browserStartTimeout: 120000,
  middleware: [
    rangeFolderMiddleware('/shared/', fileURLToPath(new URL('../shared', import.meta.url))),
    rangeFolderMiddleware('/test-output/', fileURLToPath(new URL('./test-output', import.meta.url))),
    (await import('./scripts/wtr-flaky.mjs')).flakyRangeMiddleware('/flaky/', fileURLToPath(new URL('./test-output', import.meta.url))),
  ],
  plugins: [
    wgslPlugin(),
    esbuildPlugin({ ts: true, target: 'es2022', tsconfig: fileURLToPath(new URL('./tsconfig.json', import.meta.url)) }),
  ],
  browsers: [
    chromeLauncher({
      launchOptions: {
        executablePath,
        headless: true,
        args: [
          '--enable-unsafe-webgpu',
          '--no-sandbox',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--no-first-run',
        ],
      },
    }),
  ],
};
