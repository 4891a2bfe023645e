/**
 * Deterministic text corpus for comparing the tokenizer with llama.cpp, and English-like text
 * for the benchmark. No network, no files: a seeded PRNG over small built-in word lists.
 *
 *   generateCorpus(seed, count) → strings in many categories (see CATEGORIES)
 *   englishText(seed, bytes)    → about `bytes` bytes of English-like prose
 */

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
const many = (r: Rand, lo: number, hi: number, f: () => string, sep = ' '): string => {
  const n = int(r, lo, hi);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(f());
  return out.join(sep);
};

const EN_WORDS = (
  'the of and to in is was for that on with as it by at from his he be this are or an which ' +
  'not but had have one were they their all been has more can when who would there its into ' +
  'time only new other some could about these first also after two than them most then over ' +
  'model token language people world between through during because water system number ' +
  'government general history school children however several following example program ' +
  'international development university information different important political national ' +
  'quickly slowly brown fox jumps lazy dog river mountain computer network browser graphics ' +
  'weather morning evening beautiful strange remarkable ordinary question answer problem ' +
  "isn't don't can't we've they're I'm you'll she'd it's o'clock well-known state-of-the-art"
).split(' ');
const EN_CAPS = ['The', 'A', 'In', 'When', 'However,', 'Today', 'It', 'We', 'They', 'This', 'Our', 'Some', 'Many', 'I'];
const PUNCT_END = ['.', '.', '.', '!', '?', '...', ':', ';'];

const SYLLABLES = ['an', 'ber', 'cal', 'dor', 'en', 'fra', 'gus', 'hel', 'in', 'jor', 'kev', 'lin', 'mar', 'nor', 'ost', 'pra', 'quin', 'ril', 'son', 'tra', 'ul', 'ven', 'wick', 'xan', 'yor', 'zel', 'tion', 'ment', 'ous', 'ing', 'ed', 'ly'];

/** A made-up word (names, rare words), so that not every word is a cache hit. */
function rareWord(r: Rand): string {
  let w = '';
  for (let i = int(r, 2, 4); i > 0; i--) w += pick(r, SYLLABLES);
  return r() < 0.3 ? w[0]!.toUpperCase() + w.slice(1) : w;
}

const englishWord = (r: Rand): string => (r() < 0.12 ? rareWord(r) : pick(r, EN_WORDS));

function englishSentence(r: Rand): string {
  let s = pick(r, EN_CAPS) + ' ' + many(r, 3, 18, () => englishWord(r));
  if (r() < 0.3) s = s.replace(/ (\w+) /, ' $1, ');
  if (r() < 0.1) s += ` (${pick(r, EN_WORDS)} ${int(r, 1, 2026)})`;
  if (r() < 0.1) s = s.replace(/ (\w+)/, ' "$1"');
  return s + pick(r, PUNCT_END);
}

/** About `bytes` bytes (UTF-8 ≈ UTF-16 length for this ASCII text) of English-like prose. */
export function englishText(seed: number, bytes: number): string {
  const r = rng(seed);
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const para = many(r, 2, 7, () => englishSentence(r));
    parts.push(para);
    n += para.length + 2;
  }
  return parts.join('\n\n');
}

const SCRIPTS: Record<string, readonly string[]> = {
  latinAccents: ['café', 'résumé', 'naïve', 'Ångström', 'über', 'Straße', 'façade', 'crème brûlée', 'São Paulo', 'jalapeño', 'Dvořák', 'Łódź', 'ğüşöç', 'Øresund', 'Þórr', 'Æsir', 'cañón', 'àéîõü', 'Ĳsselmeer', 'Čeština'],
  cyrillic: ['Привет', 'мир', 'как дела', 'Москва', 'хорошо', 'Ёжик', 'большой', 'язык', 'Україна', 'щастя', 'съешь же ещё этих мягких'],
  greek: ['Καλημέρα', 'κόσμε', 'Ελλάδα', 'φιλοσοφία', 'ΑΒΓΔ', 'λόγος', 'ψυχή'],
  arabic: ['مرحبا', 'بالعالم', 'اللغة العربية', 'كتاب', 'شكرا جزيلا', 'السَّلَامُ عَلَيْكُمْ', '١٢٣٤٥'],
  hebrew: ['שלום', 'עולם', 'עברית', 'תודה רבה', 'בְּרֵאשִׁית'],
  devanagari: ['नमस्ते', 'दुनिया', 'हिन्दी', 'भारत', 'क्षत्रिय', 'धन्यवाद', '१२३'],
  thai: ['สวัสดี', 'ภาษาไทย', 'ขอบคุณครับ', 'กรุงเทพมหานคร', 'ประเทศไทย'],
  cjk: ['你好', '世界', '中文', '我想在apple工作', '日本語', 'こんにちは', 'カタカナ', '東京都', '漢字', '谢谢你', '龘靐齉', '𠜎𠜱𠝹'],
  hangul: ['안녕하세요', '세계', '한국어', '감사합니다', '서울특별시', 'ㄱㄴㄷ'],
  other: ['Ⅻ', '∀x∈ℝ', '½ ¾ ⅓', '°C', '™®©', '←→↑↓', '♠♣♥♦', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', 'ﬁﬂ', 'ｆｕｌｌｗｉｄｔｈ', 'Ⓐⓑⓒ', '\u00a0nbsp\u00a0', 'zero\u200bwidth', 'e\u0301', 'a\u0308\u0301', '\ufeffBOM'],
};

const EMOJI = ['😀', '👋', '🦙', '🚀', '❤️', '✅', '🎉', '🔥', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🧑🏿‍🚀', '👋🏻', '👋🏿', '🇫🇷', '🇯🇵', '1️⃣', '#️⃣', '🫠', '🤌🏼', '😶‍🌫️', '🐕‍🦺', '🧔‍♀️'];

const CODE = [
  'function add(a, b) {\n  return a + b;\n}',
  'for (let i = 0; i < n; i++) {\n\tsum += xs[i];\n}',
  'def main():\n    print("hello, world")\n\nif __name__ == "__main__":\n    main()',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '<div class="box"><span>Hi</span></div>',
  '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b"}}',
  'const re = /^[a-z0-9_-]{3,16}$/i;',
  'x = [i**2 for i in range(10) if i % 2 == 0]',
  '    indented_line = True  # comment',
  'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }',
  'a<b && c>d || e!=f; x+=1; y->z; p::q',
  '<?php echo $x; ?> // end',
  '> </div> </span> <br/>',
  'matrix[0][1] = -0.000123;',
];

const SPECIALS = ['<|turn>', '<turn|>', '<bos>', '<eos>', '<pad>', '<unk>', '<mask>', '<|"|>', '<|think|>', '<|channel>', '<channel|>', '<|tool>', '<tool|>', '<|tool_call>', '<tool_call|>', '<|tool_response>', '<tool_response|>', '<|image|>', '<|audio|>', '<|video|>', '<|image>', '<image|>', '</s>', '<start_of_turn>', '<|turn|>', '<|turn', 'turn|>', '<0x41>', '<<|turn>>'];

const WS_PIECES = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', ' \n', '\n ', ' \t ', '\u3000', '\v', '\f'];

function whitespaceRun(r: Rand): string {
  let s = '';
  const n = int(r, 1, 6);
  for (let i = 0; i < n; i++) s += pick(r, WS_PIECES).repeat(int(r, 1, 3));
  return s;
}

function number(r: Rand): string {
  switch (int(r, 0, 6)) {
    case 0: return String(int(r, 0, 9));
    case 1: return String(int(r, 0, 99999999));
    case 2: return (r() * 1000).toFixed(int(r, 1, 5));
    case 3: return `${int(r, 1, 31)}/${int(r, 1, 12)}/${int(r, 1900, 2100)}`;
    case 4: return `-${int(r, 1, 1e6).toLocaleString('en-US')}`;
    case 5: return `${int(r, 0, 255)}.${int(r, 0, 255)}.${int(r, 0, 255)}.${int(r, 0, 255)}`;
    default: return `${(r() * 1e6).toExponential(3)}`;
  }
}

const allScriptWords = Object.values(SCRIPTS).flat();

/** One string of the given category. */
function make(category: string, r: Rand): string {
  switch (category) {
    case 'english':
      return many(r, 1, 4, () => englishSentence(r));
    case 'script': {
      const words = pick(r, Object.values(SCRIPTS));
      return many(r, 1, 8, () => pick(r, words), pick(r, [' ', ' ', '', ', ', '\n']));
    }
    case 'mixedScripts':
      return many(r, 2, 10, () => (r() < 0.5 ? pick(r, allScriptWords) : pick(r, EN_WORDS)));
    case 'emoji':
      return many(r, 1, 8, () => (r() < 0.5 ? pick(r, EMOJI) : pick(r, EN_WORDS)), pick(r, [' ', '', ' ', '  ']));
    case 'code':
      return many(r, 1, 3, () => pick(r, CODE), pick(r, ['\n', '\n\n', ' ']));
    case 'numbers':
      return many(r, 1, 8, () => (r() < 0.6 ? number(r) : pick(r, EN_WORDS)));
    case 'whitespace':
      return many(r, 1, 6, () => (r() < 0.5 ? whitespaceRun(r) : pick(r, EN_WORDS)), '');
    case 'specials':
      return many(r, 1, 6, () => (r() < 0.4 ? pick(r, SPECIALS) : r() < 0.5 ? pick(r, EN_WORDS) : whitespaceRun(r)), pick(r, ['', ' ', '\n']));
    case 'accentPunct': {
      // " Café" style: accented words after punctuation and spaces (llama.cpp issue #23252)
      const w = pick(r, SCRIPTS.latinAccents!);
      const cap = r() < 0.5 ? w[0]!.toUpperCase() + w.slice(1) : w;
      return `${pick(r, ['', ' ', '. ', ', ', '"', '(', '¿', '¡', ': ', '- '])}${cap}${pick(r, ['', '.', ',', '!', ' ', '?'])}`;
    }
    case 'random': {
      // Random code points from assorted blocks, including ones that need byte fallback.
      const blocks: Array<[number, number]> = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x20000, 0x2a6df], [0xe000, 0xf8ff], [0x2500, 0x27bf], [0x1d400, 0x1d7ff]];
      let s = '';
      const n = int(r, 1, 40);
      for (let i = 0; i < n; i++) {
        const [lo, hi] = pick(r, blocks);
        s += String.fromCodePoint(int(r, lo, hi));
      }
      return s;
    }
    case 'long':
      return englishText(int(r, 0, 1e9), int(r, 500, 3000));
    default:
      throw new Error(`unknown category ${category}`);
  }
}

/** Categories and their weights. */
export const CATEGORIES: ReadonlyArray<readonly [string, number]> = [
  ['english', 14],
  ['script', 14],
  ['mixedScripts', 8],
  ['emoji', 10],
  ['code', 8],
  ['numbers', 8],
  ['whitespace', 10],
  ['specials', 10],
  ['accentPunct', 8],
  ['random', 8],
  ['long', 2],
];

/** Fixed strings that are always in the corpus (edge cases). */
export const FIXED_CASES: readonly string[] = [
  '', ' ', '  ', '\n', '\n\n', '\n\n\n\n\n', '\t', '\t\t', '\r\n', ' Café', 'Café', '"Café"', '. Café', 'hello', 'Hello, World!',
  '你好世界', 'hello 👋 world', '👨‍👩‍👧‍👦', '<|turn>user\nHi<turn|>\n<|turn>model\n', '<bos><bos>', '<|"|>x<|"|>', '<|turn><turn|>',
  '\n'.repeat(40), ' '.repeat(40), '\t'.repeat(40), '▁', '▁▁ ▁', 'a▁b', '> </div>', '\ufeff', '\u0000', '\u0000\u0001\u001f',
  'x'.repeat(200), 'ab'.repeat(150), '🦙'.repeat(30), '\uffff', '\ud7ff', '𝔘', 'I\'ve been \'told he\'s there',
];

/** `count` strings (after the fixed cases), deterministic for a seed. */
export function generateCorpus(seed: number, count: number): string[] {
  const r = rng(seed);
  const total = CATEGORIES.reduce((s, [, w]) => s + w, 0);
  const out = [...FIXED_CASES];
  for (let i = 0; i < count; i++) {
    let x = r() * total;
    let cat = CATEGORIES[0]![0];
    for (const [c, w] of CATEGORIES) {
      if ((x -= w) < 0) {
        cat = c;
        break;
      }
    }
    out.push(make(cat, r));
  }
  return out;
}
