// What a new user sees after `npm start`: the demo page, served by scripts/serve.mjs, opened in
// headless Chromium (WebGPU on SwiftShader where there is no GPU). The chat loads the demo model
// in its worker, a question is typed and sent with Enter, and the answer streams in (the demo
// model is the project's own small Gemma 4, trained on WordNet and the KJV: it defines words). A screenshot lands in test-output/demo.png.
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

interface ChatLike extends HTMLElement {
  messages: { role: string; content: string }[];
  maxTokens?: number;
  modelInfo: { name: string } | null;
  stats: { generatedTokens: number } | null;
}

test('the demo page loads the demo model in a worker and answers in the chat', { timeout: 300_000 }, async () => {
  assert.ok(existsSync(new URL('dist/rullama.js', root)), 'dist/rullama.js is missing: run `npm run build` first');
  assert.ok(existsSync(new URL('dist/rullama-worker.js', root)), 'dist/rullama-worker.js is missing: run `npm run build` first');
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
    await page.setViewport({ width: 1000, height: 1000 });
    await page.goto(`http://127.0.0.1:${port}/`);

    // The model loads in the worker (downloaded into the OPFS cache first).
    await page.waitForFunction(() => (document.getElementById('chat') as ChatLike | null)?.modelInfo !== null && document.getElementById('chat')?.getAttribute('state') === 'idle', { timeout: 120_000 });
    assert.match((await page.$eval('#status', (el) => el.textContent)) ?? '', /^demo\.gguf is ready: \d+ layers/);

    // Ask like a person: type in the chat's box, press Enter.
    await page.evaluate(() => {
      const chat = document.getElementById('chat') as ChatLike;
      chat.maxTokens = 24; // SwiftShader takes a while per token
      chat.shadowRoot!.querySelector('textarea')!.focus();
    });
    await page.keyboard.type('What does water mean?');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('chat')?.getAttribute('state') === 'generating', { timeout: 60_000 });
    await page.waitForFunction(() => (document.getElementById('chat') as ChatLike).messages.length === 2, { timeout: 120_000 });
    await page.waitForFunction(() => document.getElementById('chat')?.getAttribute('state') === 'idle', { timeout: 240_000 });

    const chat = await page.evaluate(() => {
      const el = document.getElementById('chat') as ChatLike;
      const root = el.shadowRoot!;
      return {
        messages: el.messages,
        generated: el.stats?.generatedTokens,
        rendered: root.querySelectorAll('[part~=message]').length,
        stats: root.querySelector('[part=stats]')?.textContent ?? '',
        announced: root.querySelector('[role=status]')?.textContent ?? '',
      };
    });
    assert.equal(chat.messages[0]!.content, 'What does water mean?');
    assert.equal(chat.messages[1]!.role, 'assistant');
    assert.ok(chat.generated! >= 1 && chat.generated! <= 24, `generated ${chat.generated} tokens`);
    // The trained demo model answers with the definition (WordNet: "binary compound … liquid …").
    assert.match(String(chat.messages[1]!.content), /water|liquid|compound/i, `answer: ${chat.messages[1]!.content}`);
    assert.equal(chat.rendered, 2);
    assert.match(chat.stats, /tokens\/s/);
    assert.match(chat.announced, /^Assistant:/);
    assert.match((await page.$eval('#status', (el) => el.textContent)) ?? '', /^Answered at [\d.]+ tokens\/s\.$/);

    await mkdir(new URL('test-output/', root), { recursive: true });
    await page.screenshot({ path: fileURLToPath(new URL('test-output/demo.png', root)), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});

test('the states story shows each state of the chat', { timeout: 300_000 }, async () => {
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
    await page.setViewport({ width: 1280, height: 1000 });
    await page.goto(`http://127.0.0.1:${port}/stories/states.html`);
    const state = (id: string) => page.$eval(`#${id}`, (el) => el.getAttribute('state'));
    await page.waitForFunction(() => document.getElementById('generating')?.getAttribute('state') === 'generating', { timeout: 180_000 });
    await page.waitForFunction(() => document.getElementById('error')?.getAttribute('state') === 'error', { timeout: 30_000 });
    assert.equal(await state('loading'), 'loading'); // a 64 KB/s download of the demo model (minutes)
    assert.equal(await state('ready'), 'idle');
    assert.equal(await state('idle'), 'idle');
    const errorText = await page.$eval('#error', (el) => el.shadowRoot!.querySelector('[part=error]')!.textContent!);
    assert.match(errorText, /not-found|io/);
    const rtl = await page.$eval('#rtl', (el) => el.shadowRoot!.querySelector('[part=send-button]')!.textContent);
    assert.equal(rtl, 'إرسال');
    await page.screenshot({ path: fileURLToPath(new URL('test-output/states.png', root)), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
