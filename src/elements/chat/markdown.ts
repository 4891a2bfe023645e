/**
 * Model output (untrusted) to DOM: markdown through `marked`, then DOMPurify (its own instance,
 * so the page's DOMPurify hooks are not touched). Raw HTML in the text is shown as text, not
 * parsed; links open in a new tab without referrer and only for http(s) and mailto; images become
 * links (no request leaves the page on its own, so a prompt injection cannot smuggle the
 * conversation out in an image URL); ids and names are dropped (no clobbering of the element's
 * own nodes). Code blocks get a copy button.
 */
import createDOMPurify from 'dompurify';
import { Marked, type Tokens } from 'marked';

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    // Raw HTML from the model is text ("use a <div> here"), never markup.
    html(token: Tokens.HTML | Tokens.Tag): string {
      return escapeHtml(token.text);
    },
    image(token: Tokens.Image): string {
      const label = token.text || token.title || token.href;
      return `<a href="${escapeHtml(token.href)}">${escapeHtml(label)}</a>`;
    },
  },
});

const ALLOWED_URI = /^(?:https?:|mailto:)/i;

type Purifier = ReturnType<typeof createDOMPurify>;
let purifier: Purifier | null = null;

function purify(): Purifier {
  if (purifier) return purifier;
  const p = createDOMPurify(window);
  p.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A') {
      const href = node.getAttribute('href');
      if (!href || !ALLOWED_URI.test(href.trim())) node.removeAttribute('href');
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer nofollow');
    }
  });
  purifier = p;
  return p;
}

export interface MarkdownOptions {
  /** Label of the copy buttons on code blocks. */
  copyLabel: string;
}

/** Renders `text` (markdown, untrusted) into a new, sanitised <div>. */
export function renderMarkdown(text: string, options: MarkdownOptions): HTMLDivElement {
  const html = marked.parse(text) as string;
  const fragment = purify().sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    ALLOWED_URI_REGEXP: ALLOWED_URI,
    FORBID_TAGS: ['style', 'img', 'svg', 'math', 'form', 'input', 'button', 'textarea', 'select', 'option', 'iframe', 'object', 'embed', 'video', 'audio', 'source', 'picture', 'link', 'meta', 'base', 'dialog', 'template'],
    FORBID_ATTR: ['id', 'name', 'style', 'srcset', 'action', 'formaction', 'xlink:href', 'src'],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
  });
  const root = document.createElement('div');
  root.className = 'markdown';
  root.append(fragment);
  for (const pre of root.querySelectorAll('pre')) {
    const wrap = document.createElement('div');
    wrap.className = 'code';
    wrap.setAttribute('part', 'code-block');
    pre.replaceWith(wrap);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.setAttribute('part', 'copy-button');
    button.dataset['copy'] = '';
    button.textContent = options.copyLabel;
    const language = /language-([\w+-]+)/.exec(pre.querySelector('code')?.className ?? '')?.[1];
    button.setAttribute('aria-label', language ? `${options.copyLabel} (${language})` : options.copyLabel);
    wrap.append(button, pre);
  }
  return root;
}

/**
 * Splits an answer written with thinking on into its thought and its reply: the
 * `<|channel>thought\n…<channel|>` block (still open while streaming) and the rest.
 */
export function splitThinking(text: string): { thinking: string; answer: string; thinkingOpen: boolean } {
  const open = '<|channel>';
  const close = '<channel|>';
  const start = text.indexOf(open);
  if (start < 0 || text.slice(0, start).trim() !== '') return { thinking: '', answer: text, thinkingOpen: false };
  const body = text.slice(start + open.length).replace(/^thought\n?/, '');
  const end = body.indexOf(close);
  if (end < 0) return { thinking: body, answer: '', thinkingOpen: true };
  return { thinking: body.slice(0, end).trim(), answer: body.slice(end + close.length).replace(/^\s+/, ''), thinkingOpen: false };
}
