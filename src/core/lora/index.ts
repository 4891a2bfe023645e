export {
  LORA_TARGETS,
  loraBaseName,
  loraScale,
  readLoraGGUF,
  writeLoraGGUF,
  checkAdapterFits,
  type LoraAdapter,
  type LoraTarget,
  type LoraTensor,
} from './adapter.js';
export { readPeftAdapter, readSafetensors } from './peft.js';
