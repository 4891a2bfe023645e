export { parseDataset, packExamples, splitDataset, type TrainingExample, type DataProblem, type ParsedDataset, type ParseOptions } from './data.js';
export { AdamW, learningRateFactor, clipByGlobalNorm, type AdamWOptions, type AdamWState, type ScheduleOptions } from './optimizer.js';
