/**
 * A keyed cache of compute pipelines: each (name, dtype, override constants) is compiled once per
 * device and shared by every weight and call that needs it. A shader is composed from named WGSL
 * parts (an op body, shared helpers, a dtype snippet); when it fails to compile, the cache throws
 * a {@link ShaderCompileError} carrying the compiler's messages, each pointed at the part and line
 * it came from (getCompilationInfo), instead of leaving a silent invalid pipeline behind.
 */

/** A named piece of WGSL; a shader is its parts joined by newlines, in order. */
export interface ShaderPart {
  /** Where the text came from, for error messages (e.g. 'weights/q4_k.wgsl'). */
  readonly name: string;
  readonly source: string;
}

/** What identifies a pipeline in the cache. Requests with equal keys must mean the same shader and layout. */
export interface PipelineKey {
  /** The op, e.g. 'matvec'. */
  readonly name: string;
  /** The variant, e.g. the weight dtype 'Q4_K'. */
  readonly dtype?: string;
  /** Values for the shader's `override` declarations. */
  readonly constants?: Readonly<Record<string, number>>;
}

export interface PipelineRequest extends PipelineKey {
  readonly parts: readonly ShaderPart[];
  /** An explicit layout (needed for dynamic offsets and for sharing bind group layouts), or 'auto'. */
  readonly layout: GPUPipelineLayout | 'auto';
  readonly entryPoint?: string;
}

/** One message of the WGSL compiler, mapped back to the part it points into. */
export interface ShaderMessage {
  readonly type: GPUCompilationMessageType;
  readonly message: string;
  /** The part's name, or '' when the compiler gave no position. */
  readonly part: string;
  /** 1-based line within the part (0 when unknown). */
  readonly line: number;
  /** 1-based column (0 when unknown). */
  readonly column: number;
  /** The offending source line, when known. */
  readonly text: string;
}

/** A shader that did not compile (or a pipeline the device refused), with the compiler's messages. */
export class ShaderCompileError extends Error {
  readonly label: string;
  readonly messages: readonly ShaderMessage[];

  constructor(label: string, summary: string, messages: readonly ShaderMessage[] = [], options?: { cause?: unknown }) {
    const lines = messages.map((m) => {
      const where = m.part ? `${m.part}:${m.line}:${m.column}: ` : '';
      return `  ${where}${m.type}: ${m.message}${m.text ? `\n      ${m.text.trim()}` : ''}`;
    });
    super([`${label}: ${summary}`, ...lines].join('\n'), options);
    this.name = 'ShaderCompileError';
    this.label = label;
    this.messages = messages;
  }
}

/** The cache key string of a pipeline: 'name/dtype{A=1,B=2}' (constants sorted). */
export function pipelineKey(key: PipelineKey): string {
  const constants = Object.entries(key.constants ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return `${key.name}${key.dtype ? `/${key.dtype}` : ''}${constants ? `{${constants}}` : ''}`;
}

/** Joins parts with newlines and maps a 1-based line of the result back to its part. */
export function composeShader(parts: readonly ShaderPart[]): { code: string; locate(line: number): { part: string; line: number; text: string } } {
  const starts: number[] = []; // first line (1-based) of each part in the joined text
  const lines: string[] = [];
  for (const part of parts) {
    starts.push(lines.length + 1);
    lines.push(...part.source.split('\n'));
  }
  return {
    code: lines.join('\n'),
    locate(line: number) {
      let i = starts.length - 1;
      while (i > 0 && starts[i]! > line) i--;
      const part = parts[i];
      if (!part || line < 1) return { part: '', line: 0, text: '' };
      return { part: part.name, line: line - starts[i]! + 1, text: lines[line - 1] ?? '' };
    },
  };
}

export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(readonly device: GPUDevice) {}

  /** Pipelines compiled or being compiled. */
  get size(): number {
    return this.pipelines.size;
  }

  /** Whether this key was requested before (its pipeline may still be compiling). */
  has(key: PipelineKey): boolean {
    return this.pipelines.has(pipelineKey(key));
  }

  /**
   * The pipeline for `request`, compiled on first use and shared afterwards. Rejects with a
   * ShaderCompileError when the WGSL has errors or the device refuses the pipeline; a failed key
   * is forgotten, so a later request tries again.
   */
  get(request: PipelineRequest): Promise<GPUComputePipeline> {
    const key = pipelineKey(request);
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      pipeline = this.compile(key, request);
      this.pipelines.set(key, pipeline);
      pipeline.catch(() => {
        if (this.pipelines.get(key) === pipeline) this.pipelines.delete(key);
      });
    }
    return pipeline;
  }

  private async compile(label: string, request: PipelineRequest): Promise<GPUComputePipeline> {
    const { device } = this;
    const shader = composeShader(request.parts);
    // The scope keeps a bad shader's validation error from also surfacing as an uncaptured error.
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label, code: shader.code });
    const scope = device.popErrorScope();
    const info = await module.getCompilationInfo();
    const validation = await scope;
    const messages: ShaderMessage[] = info.messages.map((m) => {
      const at = m.lineNum > 0 ? shader.locate(m.lineNum) : { part: '', line: 0, text: '' };
      return { type: m.type, message: m.message, part: at.part, line: at.line, column: m.linePos, text: at.text };
    });
    const errors = messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      throw new ShaderCompileError(label, `WGSL compilation failed with ${errors.length} error(s)`, errors);
    }
    if (validation) throw new ShaderCompileError(label, `the shader module is invalid: ${validation.message}`);
    const compute: GPUProgrammableStage = { module, entryPoint: request.entryPoint ?? 'main' };
    if (request.constants && Object.keys(request.constants).length > 0) compute.constants = { ...request.constants };
    try {
      return await device.createComputePipelineAsync({ label, layout: request.layout, compute });
    } catch (cause) {
      const message = cause instanceof Error ? cause.message : String(cause);
      throw new ShaderCompileError(label, `the device refused the pipeline: ${message}`, [], { cause });
    }
  }
}
