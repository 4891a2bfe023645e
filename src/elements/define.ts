import { RullamaChat } from './chat/chat.js';
import { RullamaInspect } from './inspect/inspect.js';
import { RullamaModel } from './model/model.js';
import { RullamaTrainer } from './trainer/trainer.js';

/** Registers every rullama element under its tag (safe to call more than once). */
export function defineElements(): void {
  if (!customElements.get('rullama-inspect')) customElements.define('rullama-inspect', RullamaInspect);
  if (!customElements.get('rullama-model')) customElements.define('rullama-model', RullamaModel);
  if (!customElements.get('rullama-chat')) customElements.define('rullama-chat', RullamaChat);
  if (!customElements.get('rullama-trainer')) customElements.define('rullama-trainer', RullamaTrainer);
}

declare global {
  interface HTMLElementTagNameMap {
    'rullama-inspect': RullamaInspect;
    'rullama-model': RullamaModel;
    'rullama-chat': RullamaChat;
    'rullama-trainer': RullamaTrainer;
  }
}
