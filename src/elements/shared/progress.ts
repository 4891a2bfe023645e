import { html } from 'lit';
import { styleMap } from 'lit/directives/style-map.js';
import type { LoadProgressDetail } from '../../worker/protocol.js';
import type { ChatStrings } from '../chat/strings.js';

export type ProgressStrings = Pick<ChatStrings, 'loading' | 'phases' | 'bytes' | 'timeLeft' | 'speed'>;

/** A labelled progress bar for a model load: the phase, bytes and time left. */
export function progressTemplate(p: LoadProgressDetail | null, s: ProgressStrings) {
  const phase = p ? s.phases[p.phase] ?? p.phase : s.loading;
  const fraction = p && p.total > 0 ? Math.min(1, p.loaded / p.total) : null;
  const details = [
    p && p.total > 0 ? s.bytes(p.loaded, p.total) : '',
    p?.bytesPerSecond ? s.speed(p.bytesPerSecond) : '',
    p?.secondsLeft !== undefined && p.secondsLeft > 0.5 ? s.timeLeft(p.secondsLeft) : '',
  ].filter(Boolean);
  const text = [phase, ...details].join(' · ');
  return html`
    <div part="progress" class="progress">
      <div
        class="bar"
        role="progressbar"
        aria-label=${s.loading}
        aria-valuemin="0"
        aria-valuemax="100"
        aria-valuenow=${fraction === null ? '0' : String(Math.round(fraction * 100))}
        aria-valuetext=${text}
      >
        <div class=${fraction === null ? 'fill indeterminate' : 'fill'} style=${styleMap(fraction === null ? {} : { width: `${(fraction * 100).toFixed(1)}%` })}></div>
      </div>
      <p class="muted">${text}</p>
    </div>
  `;
}
