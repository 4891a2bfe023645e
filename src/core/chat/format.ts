/**
 * Gemma 4's text notation for tool declarations, calls and results (written from the layout
 * that the official chat template produces): keys are bare, strings are wrapped in `<|"|>`,
 * objects print their keys sorted case-insensitively (Jinja's `dictsort`).
 */

export const Q = '<|"|>';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys sorted as Jinja's `dictsort` does by default: case-insensitive, stable. */
export function sortedKeys(o: Record<string, unknown>): string[] {
  return Object.keys(o)
    .map((k, i) => ({ k, i, low: k.toLowerCase() }))
    .sort((a, b) => (a.low < b.low ? -1 : a.low > b.low ? 1 : a.i - b.i))
    .map((x) => x.k);
}

/** A value as the template's `format_argument` writes it. */
export function formatArgument(value: unknown, escapeKeys = true): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return Q + value + Q;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (Array.isArray(value)) return '[' + value.map((v) => formatArgument(v, escapeKeys)).join(',') + ']';
  if (isObject(value)) {
    const parts = sortedKeys(value).map((k) => (escapeKeys ? Q + k + Q : k) + ':' + formatArgument(value[k], escapeKeys));
    return '{' + parts.join(',') + '}';
  }
  return String(value);
}

/** Jinja's `upper` filter applied to a schema `type` (a list prints as Python would). */
function upperType(t: unknown): string {
  if (t === undefined || t === null) return '';
  if (Array.isArray(t)) return ('[' + t.map((x) => `'${String(x)}'`).join(', ') + ']').toUpperCase();
  return String(t).toUpperCase();
}

const STANDARD_KEYS = new Set(['description', 'type', 'properties', 'required', 'nullable']);

const quotedList = (xs: unknown): string => (Array.isArray(xs) ? xs.map((x) => Q + String(x) + Q).join(',') : '');

/** The template's `format_parameters`: a JSON-schema `properties` object. */
export function formatParameters(properties: Record<string, unknown>, filterKeys = false): string {
  let out = '';
  let first = true;
  for (const key of sortedKeys(properties)) {
    if (filterKeys && STANDARD_KEYS.has(key)) continue;
    const value = properties[key];
    const v: Record<string, unknown> = isObject(value) ? value : {};
    if (!first) out += ',';
    first = false;
    out += key + ':{';
    let comma = false;
    const sep = (): void => {
      if (comma) out += ',';
      comma = true;
    };
    if (v.description) {
      out += 'description:' + Q + String(v.description) + Q;
      comma = true;
    }
    const type = upperType(v.type);
    if (type === 'STRING') {
      if (Array.isArray(v.enum) ? v.enum.length > 0 : Boolean(v.enum)) {
        sep();
        out += 'enum:' + formatArgument(v.enum);
      }
    } else if (type === 'ARRAY') {
      const items = v.items;
      if (isObject(items) && Object.keys(items).length > 0) {
        sep();
        out += 'items:{';
        let firstItem = true;
        for (const ik of sortedKeys(items)) {
          const iv = items[ik];
          if (iv === null || iv === undefined) continue;
          if (!firstItem) out += ',';
          firstItem = false;
          if (ik === 'properties') {
            out += 'properties:{' + (isObject(iv) ? formatParameters(iv) : '') + '}';
          } else if (ik === 'required') {
            out += 'required:[' + quotedList(iv) + ']';
          } else if (ik === 'type') {
            out += 'type:' + (typeof iv === 'string' ? formatArgument(iv.toUpperCase()) : formatArgument(Array.isArray(iv) ? iv.map((x) => String(x).toUpperCase()) : iv));
          } else {
            out += ik + ':' + formatArgument(iv);
          }
        }
        out += '}';
      }
    }
    if (v.nullable) {
      sep();
      out += 'nullable:true';
    }
    if (type === 'OBJECT') {
      if (isObject(v.properties)) {
        sep();
        out += 'properties:{' + formatParameters(v.properties) + '}';
      } else {
        sep();
        out += 'properties:{' + formatParameters(v, true) + '}';
      }
      if (Array.isArray(v.required) ? v.required.length > 0 : Boolean(v.required)) {
        sep();
        out += 'required:[' + quotedList(v.required) + ']';
      }
    }
    sep();
    out += 'type:' + Q + type + Q + '}';
  }
  return out;
}

/** A function a model may call. `parameters` is a JSON schema of type object. */
export interface ChatFunction {
  name: string;
  description?: string;
  parameters?: {
    type?: string;
    properties?: Record<string, unknown>;
    required?: string[];
    [key: string]: unknown;
  };
  /** Optional description of what the function returns. */
  response?: { description?: string; type?: string };
}

/** A tool: a bare function, or the OpenAI-style `{type: 'function', function}` wrapper. */
export type ChatTool = ChatFunction | { type: 'function'; function: ChatFunction };

export const toolFunction = (t: ChatTool): ChatFunction => ('function' in t && isObject(t.function) ? t.function : (t as ChatFunction));

/** `declaration:NAME{…}` — the text between `<|tool>` and `<tool|>`. */
export function formatDeclaration(tool: ChatTool): string {
  const fn = toolFunction(tool);
  let out = 'declaration:' + fn.name + '{description:' + Q + (fn.description ?? '') + Q;
  const p = fn.parameters;
  if (p && Object.keys(p).length > 0) {
    out += ',parameters:{';
    if (isObject(p.properties) && Object.keys(p.properties).length > 0) out += 'properties:{' + formatParameters(p.properties) + '},';
    if (Array.isArray(p.required) && p.required.length > 0) out += 'required:[' + quotedList(p.required) + '],';
    if (p.type) out += 'type:' + Q + String(p.type).toUpperCase() + Q + '}';
  }
  if (fn.response !== undefined) {
    out += ',response:{';
    if (fn.response.description) out += 'description:' + Q + fn.response.description + Q + ',';
    if (String(fn.response.type ?? '').toUpperCase() === 'OBJECT') out += 'type:' + Q + 'OBJECT' + Q + '}';
  }
  out += '}';
  return out.trim();
}

/** `<|tool_call>call:NAME{k:v,…}<tool_call|>` — argument keys bare, sorted. */
export function formatToolCall(name: string, args: Record<string, unknown> | null | undefined): string {
  let out = '<|tool_call>call:' + name + '{';
  if (isObject(args)) out += sortedKeys(args).map((k) => k + ':' + formatArgument(args[k], false)).join(',');
  return out + '}<tool_call|>';
}

/**
 * `<|tool_response>response:NAME{…}<tool_response|>`: an object response prints its fields,
 * anything else (a string result) prints as `{value:…}`.
 */
export function formatToolResponse(name: string, response: unknown): string {
  let out = '<|tool_response>response:' + name + '{';
  if (isObject(response)) out += sortedKeys(response).map((k) => k + ':' + formatArgument(response[k], false)).join(',');
  else out += 'value:' + formatArgument(response, false);
  return out + '}<tool_response|>';
}
