export { parseDataset, packExamples, splitDataset, type TrainingExample, type DataProblem, type ParsedDataset, type ParseOptions } from './data.js';
export { AdamW, learningRateFactor, clipByGlobalNorm, type AdamWOptions, type AdamWState, type ScheduleOptions } from './optimizer.js';
export { LoraTrainer, type TrainOptions, type TrainData, type TrainProgress, type TrainPhase, type TrainResult } from './trainer.js';
export { LoraLayout, type LoraConfig, type LoraSlot } from './lora-params.js';
export { TrainingGraph, type TrainingGraphOptions, type GraphPhase } from './graph.js';
export { encodeCheckpoint, decodeCheckpoint, type TrainingCheckpoint } from './checkpoint.js';
export { GpuAdamW, GpuGlobalNorm } from './gpu-adamw.js';
