// What a new user sees after `npm start`: the demo page, served by scripts/serve.mjs, opened in
// headless Chromium. A screenshot lands in test-output/demo.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
// @ts-expect-error: a plain .mjs dev script without type declarations
import { startServer } from '../../scripts/serve.mjs';

const root = new URL('../../', import.meta.url);

test('the demo page reads the demo model and tokenizes in the browser', async () => {
  assert.ok(existsSync(new URL('dist/rullama.js', root)), 'dist/rullama.js is missing: run `npm run build` first');
  await import('../../scripts/demo-model.js');
  const server: Server = await startServer(0);
  const port = (server.address() as { port: number }).port;
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--enable-unsafe-webgpu'],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.setViewport({ width: 1000, height: 900 });
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('Read '), { timeout: 60000 });
    const status = await page.$eval('#status', (el) => el.textContent);
    assert.match(status ?? '', /^Read \d+ tensors of a gemma4 model/);
    const tokenCount = await page.evaluate(() => document.querySelector('rullama-inspect')!.shadowRoot!.querySelectorAll('[part=token]').length);
    assert.ok(tokenCount > 5, `the tokenizer playground shows ${tokenCount} tokens`);
    await mkdir(new URL('test-output/', root), { recursive: true });
    await page.screenshot({ path: fileURLToPath(new URL('test-output/demo.png', root)), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
