/**
 * The live loss chart of <rullama-trainer>: training and validation loss per step, drawn with
 * uPlot (a small, maintained canvas charting library) inside the element's shadow root. Colours
 * come from the element's CSS custom properties, read again when the chart is rebuilt.
 */
import uPlot from 'uplot';

export interface LossPoint {
  step: number;
  loss: number;
  valLoss?: number | null;
}

export interface ChartLabels {
  train: string;
  validation: string;
  step: string;
  loss: string;
}

export class LossChart {
  private plot: uPlot | null = null;
  private readonly steps: number[] = [];
  private readonly losses: number[] = [];
  private readonly valLosses: (number | null)[] = [];
  private observer: ResizeObserver | null = null;

  constructor(
    private readonly host: HTMLElement,
    private readonly labels: () => ChartLabels,
  ) {}

  /** Draws into `target` (again, when it changed: a re-render, a theme change). */
  attach(target: HTMLElement): void {
    if (this.plot && this.plot.root.parentElement === target) return;
    this.detach();
    // Custom properties may hold light-dark() or var(): a probe's computed colour is plain rgb().
    const probe = document.createElement('span');
    target.append(probe);
    const color = (name: string, fallback: string) => {
      probe.style.color = `var(${name}, ${fallback})`;
      return getComputedStyle(probe).color || fallback;
    };
    const fg = getComputedStyle(this.host).color || 'black';
    const grid = color('--rullama-chart-grid-color', 'rgba(128,128,128,0.3)');
    const train = color('--rullama-train-loss-color', '#3451c7');
    const validation = color('--rullama-validation-loss-color', '#c75a34');
    probe.remove();
    const labels = this.labels();
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const size = () => ({ width: Math.max(120, target.clientWidth), height: Math.max(100, target.clientHeight || 180) });
    this.plot = new uPlot(
      {
        ...size(),
        legend: { show: false },
        cursor: { show: false },
        select: { show: false, left: 0, top: 0, width: 0, height: 0 },
        scales: { x: { time: false } },
        series: [
          { label: labels.step },
          { label: labels.train, stroke: train, width: 2 },
          { label: labels.validation, stroke: validation, width: 2, dash: [6, 4], spanGaps: true, points: { show: true, size: 5 } },
        ],
        axes: [
          { ...axis, label: labels.step },
          { ...axis, label: labels.loss, size: 56 },
        ],
      },
      this.data(),
      target,
    );
    this.observer = new ResizeObserver(() => this.plot?.setSize(size()));
    this.observer.observe(target);
  }

  detach(): void {
    this.observer?.disconnect();
    this.observer = null;
    this.plot?.destroy();
    this.plot = null;
  }

  /** Replaces the curve (a restored checkpoint's history, or a new run). */
  reset(points: readonly LossPoint[] = []): void {
    this.steps.length = this.losses.length = this.valLosses.length = 0;
    for (const p of points) this.push(p, false);
    this.plot?.setData(this.data());
  }

  /** Adds a finished step. */
  add(point: LossPoint): void {
    this.push(point, true);
  }

  /** The curve: one point per step. */
  get points(): LossPoint[] {
    return this.steps.map((step, i) => ({ step, loss: this.losses[i]!, valLoss: this.valLosses[i] ?? null }));
  }

  private push(p: LossPoint, redraw: boolean): void {
    const at = this.steps.indexOf(p.step);
    if (at >= 0) {
      this.losses[at] = p.loss;
      this.valLosses[at] = p.valLoss ?? this.valLosses[at] ?? null;
    } else {
      this.steps.push(p.step);
      this.losses.push(p.loss);
      this.valLosses.push(p.valLoss ?? null);
    }
    if (redraw) this.plot?.setData(this.data());
  }

  private data(): uPlot.AlignedData {
    return [this.steps, this.losses, this.valLosses];
  }
}

/** uPlot's own stylesheet (uplot/dist/uPlot.min.css, MIT), for the shadow root. */
export const UPLOT_CSS = `.uplot, .uplot *, .uplot *::before, .uplot *::after {box-sizing: border-box;}.uplot {font-family: inherit;line-height: 1.5;width: min-content;}.u-title {text-align: center;font-size: 18px;font-weight: bold;}.u-wrap {position: relative;user-select: none;}.u-over, .u-under {position: absolute;}.u-under {overflow: hidden;}.uplot canvas {display: block;position: relative;width: 100%;height: 100%;}.u-axis {position: absolute;}.u-legend {font-size: 14px;margin: auto;text-align: center;}.u-inline {display: block;}.u-inline * {display: inline-block;}.u-inline tr {margin-right: 16px;}.u-legend th {font-weight: 600;}.u-legend th > * {vertical-align: middle;display: inline-block;}.u-legend .u-marker {width: 1em;height: 1em;margin-right: 4px;background-clip: padding-box !important;}.u-inline.u-live th::after {content: ":";vertical-align: middle;}.u-inline:not(.u-live) .u-value {display: none;}.u-series > * {padding: 4px;}.u-series th {cursor: pointer;}.u-legend .u-off > * {opacity: 0.3;}.u-select {background: rgba(0,0,0,0.07);position: absolute;pointer-events: none;}.u-cursor-x, .u-cursor-y {position: absolute;left: 0;top: 0;pointer-events: none;will-change: transform;}.u-hz .u-cursor-x, .u-vt .u-cursor-y {height: 100%;border-right: 1px dashed #607D8B;}.u-hz .u-cursor-y, .u-vt .u-cursor-x {width: 100%;border-bottom: 1px dashed #607D8B;}.u-cursor-pt {position: absolute;top: 0;left: 0;border-radius: 50%;border: 0 solid;pointer-events: none;will-change: transform;background-clip: padding-box !important;}.u-axis.u-off, .u-select.u-off, .u-cursor-x.u-off, .u-cursor-y.u-off, .u-cursor-pt.u-off {display: none;}`;
